"""The architecture: imports point downward only (the contracts in pyproject.toml)."""

import ast
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import components
from components.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
CONTRACTS = {c["id"]: c for c in CONFIG["importlinter"]["contracts"]}
LAYERS = CONTRACTS["layers"]["layers"]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """Run import-linter with the project's contracts on the packages found in ``root``."""
    code = (
        "from importlinter.cli import lint_imports; "
        "raise SystemExit(lint_imports(config_filename='pyproject.toml', no_cache=True, "
        "no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def copy_of_the_tree(folder: Path) -> Path:
    """The two packages and the contracts, copied into ``folder`` (to break them there)."""
    for package in ("components", "flows"):
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", folder)
    return folder


def append(path: Path, line: str) -> None:
    """Add ``line`` at the end of the module at ``path``."""
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def layer_names() -> set[str]:
    """Every module or package named in the layers contract."""
    return {name.strip() for layer in LAYERS for name in layer.replace(":", "|").split("|")}


def test_the_project_keeps_its_import_contracts():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken", "reported"),
    [
        (  # infrastructure importing the registry, a layer above it
            "components/core/errors.py",
            "from components.registry import store",
            "layers",
            "components.core.errors -> components.registry.store",
        ),
        (  # a stage importing an orchestrator
            "components/data/clean.py",
            "import prefect",
            "no-orchestrators",
            "components.data.clean -> prefect",
        ),
        (  # a stage reaching into another stage for a helper
            "components/model/evaluate.py",
            "from components.model.finetune import split_frames",
            "stages-independent",
            "components.model.evaluate -> components.model.finetune",
        ),
        (  # ... or through a shared module that imports a stage
            "components/model/model_io.py",
            "from components.data.tokenization import train_tokenizer",
            "stages-independent",
            "components.model.model_io -> components.data.tokenization",
        ),
        (  # infrastructure that knows a stage
            "components/core/paths.py",
            "from components.data import documents",
            "core-knows-no-stage",
            "components.core.paths -> components.data.documents",
        ),
    ],
)
def test_a_planted_import_breaks_its_contract(tmp_path, module, line, broken, reported):
    tree = copy_of_the_tree(tmp_path)
    append(tree / module, line)
    done = lint_imports(tree)
    assert done.returncode == 1
    # import-linter wraps long names: compare the report with white space folded.
    report = " ".join(done.stdout.split())
    assert f"{CONTRACTS[broken]['name']} BROKEN" in report
    assert reported in report


def test_the_independent_modules_are_the_stage_table():
    assert CONTRACTS["stages-independent"]["modules"] == [s.module for s in STAGES.values()]


def test_every_module_of_components_sits_in_a_layer():
    children = {f"components.{m.name}" for m in pkgutil.iter_modules(components.__path__)}
    assert sorted(children - layer_names()) == []
    assert sorted(n for n in layer_names() - children if n.startswith("components")) == []


def test_package_inits_only_say_what_the_package_owns():
    # Importing a module imports its packages: code there would run for every stage.
    for init in sorted((ROOT / "components").rglob("__init__.py")):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1, f"{init.relative_to(ROOT)} holds more than its docstring"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_core_holds_no_stage_params():
    # Each layer owns its params sections; core has only the base and the paths: section.
    import importlib
    import inspect

    import components.core
    from components.core.schema import Section

    sections = set()
    for found in pkgutil.iter_modules(components.core.__path__):
        module = importlib.import_module(f"components.core.{found.name}")
        sections |= {
            name
            for name, value in vars(module).items()
            if inspect.isclass(value)
            and issubclass(value, Section)
            and value.__module__ == module.__name__
        }
    assert sections == {"Section", "PathsParams"}
