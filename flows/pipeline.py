"""The whole pipeline as one tracked execution: ``dvc repro``, then the registry's gate.

Each stage that DVC runs finds the parent's id in ``WIKILM_PARENT_RUN_ID`` and nests its run
under it, as does the ``register`` run that logs the models. The parent gets the pipeline's
lineage (the new ``dvc.lock`` included), every stage's metrics under the stage's name, and
``dvc.lock`` itself as an artifact.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.core.config import Params
from components.core.errors import WikilmError
from components.core.paths import Paths
from components.core.tracking import (
    Tracker,
    flatten,
    lineage,
    numeric,
    pipeline_run,
)
from components.core.tracking_server import tracking_enabled
from components.stages import STAGES
from flows.dag import stale_stages

if TYPE_CHECKING:
    from components.registry.promotion import Outcome

log = logging.getLogger(__name__)


def record_outcome(parent: Tracker, params: Params, paths: Paths) -> None:
    """Lineage after the run, each stage's metrics (``evaluate.lm.val.loss``), dvc.lock."""
    parent.set_tags(lineage(paths, params.model_dump(mode="json", by_alias=True)))
    metrics: dict[str, float] = {}
    for stage in STAGES:
        path = paths.metrics_file(stage)
        if path.is_file():
            metrics |= numeric(flatten(json.loads(path.read_text(encoding="utf-8")), f"{stage}."))
    parent.log_metrics(metrics)
    if (lock := paths.root / "dvc.lock").is_file():
        parent.log_artifact(lock)


def this_environment() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH.

    Commands that DVC or MLflow start (`python`, `uvicorn`) then come from this environment.
    """
    folder = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([folder, os.environ.get("PATH", "")])}


def up_to_date(params: Params, paths: Paths) -> list[Outcome] | None:
    """What a run would find when it has nothing to do: the versions registered already.

    None when there is work: a stage DVC would rerun, an export not registered yet, or a
    ``latest`` source, whose newest dump only the flow asks the mirror for.
    """
    if params.ingest.source == "latest" or stale_stages(paths.root):
        return None
    if not tracking_enabled():
        return []  # without tracking a run registers nothing
    from components.registry.promotion import registered_export  # mlflow: only when used

    return registered_export(paths)


def repro(params: Params, paths: Paths, force: bool = False) -> list[Outcome]:
    """``dvc repro`` in ``paths.root``, then register and gate, all under one parent run.

    Raises:
        WikilmError: a stage failed (its own error line has been printed by then), or a
            registry action was refused.
    """
    with pipeline_run(paths, params.model_dump(mode="json", by_alias=True)) as parent:
        if parent.run_id:
            log.info("pipeline: MLflow parent run %s", parent.run_id)
        command = [sys.executable, "-m", "dvc", "repro", *(["--force"] if force else [])]
        done = subprocess.run(command, cwd=paths.root, env=this_environment(), check=False)
        if done.returncode:
            raise WikilmError(f"dvc repro failed (exit code {done.returncode}); see above")
        from components.registry.promotion import (
            register_and_gate,  # torch and onnx: only when used
        )

        outcomes = []
        if parent.run_id:  # the registry lives in MLflow: nothing to register without it
            outcomes = register_and_gate(params, paths, once=True)
        else:
            log.warning("pipeline: tracking is off, so nothing is registered or promoted")
        record_outcome(parent, params, paths)
    return outcomes
