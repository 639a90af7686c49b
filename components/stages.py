"""The stage registry: stage name -> module implementing ``run(params, paths)``.

Names line up everywhere: module, DVC stage, Prefect task, params.yaml section, output folder.
Modules are imported lazily because some stages pull in heavy libraries.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STAGE_MODULES: dict[str, str] = {
    "ingest": "components.ingest",
    "clean": "components.clean",
    "validate": "components.validate",
    "tokenize": "components.tokenization",
    "pretrain": "components.pretrain",
    "finetune": "components.finetune",
    "evaluate": "components.evaluate",
    "export": "components.export",
}

# Params sections a stage reads besides its own (recorded with its run, prefixed by name).
EXTRA_SECTIONS: dict[str, tuple[str, ...]] = {
    "pretrain": ("model", "trainer"),
    "finetune": ("trainer",),
}

# Stages that fan out to worker processes (components.parallel), and the module of the
# function their workers run: the fork server preloads it while the stage starts.
WORKER_MODULES: dict[str, str] = {
    "ingest": "components.render",
    "clean": "components.assess",
    "validate": "components.validate",
}


def load_stage(name: str) -> ModuleType:
    """Import the module of stage ``name``.

    Raises:
        KeyError: no such stage.
    """
    if name not in STAGE_MODULES:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_MODULES)}")
    return importlib.import_module(STAGE_MODULES[name])
