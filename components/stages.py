"""The pipeline's stages: one entry per dvc.yaml stage, the one table of what each one is.

Names line up everywhere: stage = DVC stage = Prefect task = params.yaml section = output
folder. Each implementing module exposes ``run(params, paths) -> Report`` (a resumable stage
also ``resume_run_id(params, paths)``; a stage with settings only the machine can judge also
``preflight(params)``, called before any work) and is imported only when its stage runs:
ingest never pays for torch, and ``python -m components`` reads this table before any heavy
import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from components import summaries

if TYPE_CHECKING:  # only for annotations: the table stays light to import
    from components.core.paths import Paths


@dataclass(frozen=True)
class Stage:
    """Everything the pipeline knows about one stage besides dvc.yaml.

    Its name is its params.yaml section, its output folder, its DVC stage and its Prefect task.
    """

    module: str
    # The type ``run`` returns (in ``module``), written to metrics/<stage>.json.
    result: str
    # The one line worth reading about a run, from metrics/<stage>.json.
    summary: Callable[[dict, Paths], str]
    # Params sections the stage reads besides its own (recorded with its run under their name).
    reads: tuple[str, ...] = ()
    # The module of the function its worker processes run (components.core.parallel): the
    # fork server preloads it while the stage starts.
    workers: str | None = None
    # Seconds before each retry of a failure the stage reports as transient (exit code 75:
    # a dump download); the Prefect flow retries it, a plain `dvc repro` does not.
    retry_delays_s: tuple[int, ...] = ()

    def load(self) -> ModuleType:
        """Import the implementing module."""
        return importlib.import_module(self.module)


STAGES: dict[str, Stage] = {
    "ingest": Stage(
        "components.data.ingest",
        "IngestResult",
        summaries.ingest_line,
        reads=("data",),
        workers="components.data.render",
        retry_delays_s=(30, 120),
    ),
    "clean": Stage(
        "components.data.clean",
        "CleanResult",
        summaries.clean_line,
        reads=("data",),
        workers="components.data.assess",
    ),
    "validate": Stage(
        "components.data.validate",
        "ValidateResult",
        summaries.validate_line,
        reads=("data",),
        workers="components.data.validate",
    ),
    "tokenize": Stage("components.data.tokenization", "TokenizeResult", summaries.tokenize_line),
    "pretrain": Stage(
        "components.model.pretrain",
        "PretrainResult",
        summaries.pretrain_line,
        reads=("model", "trainer"),
    ),
    "finetune": Stage(
        "components.model.finetune",
        "FinetuneResult",
        summaries.finetune_line,
        reads=("trainer",),
    ),
    "evaluate": Stage("components.model.evaluate", "EvaluateResult", summaries.evaluate_line),
    "export": Stage("components.export.export", "ExportResult", summaries.export_line),
}


def stage_line(stage: str, metrics: dict, paths: Paths) -> str:
    """The one line worth reading about a stage's last run, from its metrics.

    A stage of dvc.yaml that is not in the table (one a user added) gets its flat metrics.
    """
    if stage in STAGES:
        return STAGES[stage].summary(metrics, paths)
    return ", ".join(f"{k}={v}" for k, v in metrics.items() if not isinstance(v, dict))
