"""The pipeline's stages: one entry per dvc.yaml stage, naming the module that implements it.

Names line up everywhere: stage = DVC stage = Prefect task = params.yaml section = output
folder. Each implementing module exposes ``run(params, paths) -> Report`` (a resumable stage
also ``resume_run_id(params, paths)``; a stage with settings only the machine can judge also
``preflight(params)``, called before any work) and is imported only when its stage runs:
ingest never pays for torch, and ``python -m components`` reads this table before any heavy
import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Stage:
    """Where a stage is implemented, and what its process needs besides its params section."""

    module: str
    # Params sections the stage reads besides its own (recorded with its run under their name).
    reads: tuple[str, ...] = ()
    # The module of the function its worker processes run (components.core.parallel): the
    # fork server preloads it while the stage starts.
    workers: str | None = None

    def load(self) -> ModuleType:
        """Import the implementing module."""
        return importlib.import_module(self.module)


STAGES: dict[str, Stage] = {
    "ingest": Stage("components.data.ingest", reads=("data",), workers="components.data.render"),
    "clean": Stage("components.data.clean", reads=("data",), workers="components.data.assess"),
    "validate": Stage("components.data.validate", workers="components.data.validate"),
    "tokenize": Stage("components.data.tokenization"),
    "pretrain": Stage("components.model.pretrain", reads=("model", "trainer")),
    "finetune": Stage("components.model.finetune", reads=("trainer",)),
    "evaluate": Stage("components.model.evaluate"),
    "export": Stage("components.export.export"),
}
