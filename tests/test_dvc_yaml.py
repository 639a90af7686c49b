"""dvc.yaml: every stage depends on exactly the project code that shapes its outputs."""

import ast
from pathlib import Path

import pytest
import yaml

from components.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
# Modules that read params, report progress or track runs: they never shape a stage's outputs
# (DVC tracks the params values themselves). Package __init__ files hold docstrings only
# (tests/test_layers.py checks that).
INFRASTRUCTURE = {
    "components/core/errors.py",
    "components/core/identity.py",
    "components/core/paths.py",
    "components/core/progress.py",
    "components/core/schema.py",
    "components/core/tracking.py",
    "components/core/tracking_server.py",
    "components/data/params.py",
    "components/export/params.py",
    "components/model/params.py",
    "components/params.py",
    "components/registry/params.py",
}


def module_file(module: str) -> str | None:
    """The file of a ``components`` module, or None for a package (its __init__ is empty)."""
    path = module.replace(".", "/")
    return None if (ROOT / path).is_dir() else f"{path}.py"


def imported_modules(path: str) -> set[str]:
    """The ``components`` modules that the file at ``path`` imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components"):
            found.add(node.module)
            # `from components.data import sources` imports the module components.data.sources
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("components.")}
    return found


def project_imports(module: str) -> set[str]:
    """Files of the ``components`` modules that ``module`` imports, directly or not.

    What only the infrastructure imports is left out.
    """
    seen: set[str] = set()
    pending = [module]
    while pending:
        path = module_file(pending.pop())
        if path is None or path in seen or not (ROOT / path).is_file():
            continue  # a package, a module seen before, or a name imported from a module
        seen.add(path)
        if path not in INFRASTRUCTURE:
            pending.extend(imported_modules(path))
    return seen


def declared_code(stage: str) -> set[str]:
    """The ``components/`` files that dvc.yaml declares as dependencies of ``stage``."""
    deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return {dep for dep in deps if dep.startswith("components/")}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_depends_on_every_module_it_imports(stage):
    needed = project_imports(STAGES[stage].module) - INFRASTRUCTURE
    assert sorted(needed - declared_code(stage)) == []


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_depends_on_no_module_it_does_not_import(stage):
    # A stale path (a module moved or merged) would stop `dvc repro`; an extra one reruns the
    # stage for changes that cannot touch its outputs.
    needed = project_imports(STAGES[stage].module) - INFRASTRUCTURE
    assert sorted(declared_code(stage) - needed) == []


def test_the_walk_follows_imports_of_modules_named_from_packages():
    # components.data.ingest imports `from components.data import sources`.
    assert "components/data/sources.py" in project_imports("components.data.ingest")
