"""dvc.yaml: every stage depends on the project code that shapes its outputs."""

import ast
from pathlib import Path

import pytest
import yaml

from components.stages import STAGE_MODULES

ROOT = Path(__file__).resolve().parents[1]
# Modules that read params, report progress or track runs: they never shape a stage's outputs
# (DVC tracks the params values themselves).
INFRASTRUCTURE = {
    "components/config.py",
    "components/errors.py",
    "components/progress.py",
    "components/schema.py",
    "components/tracking.py",
    "components/training_params.py",
}


def project_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Files of the ``components`` modules that ``module`` imports, directly or not.

    What only the infrastructure imports (config checks a language with ``stopwords``) is
    left out.
    """
    seen = set() if seen is None else seen
    path = module.replace(".", "/") + ".py"
    if path in seen:
        return seen
    seen.add(path)
    if path in INFRASTRUCTURE:
        return seen
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components."):
            project_imports(node.module, seen)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("components."):
                    project_imports(alias.name, seen)
    return seen


@pytest.mark.parametrize("stage", list(STAGE_MODULES))
def test_a_stage_depends_on_every_module_it_imports(stage):
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    needed = project_imports(STAGE_MODULES[stage]) - INFRASTRUCTURE
    assert sorted(needed - set(declared)) == []
