"""The pipeline driver: the dvc.yaml stages, then register, gate and approval, as one run.

:func:`run_pipeline` is what ``wikilm run`` calls. With Prefect (the default) it runs the
flow ``wikilm-pipeline`` (:mod:`flows.pipeline_flow`), whose tasks run each stage through DVC
and which may pause for a reviewer; without, one ``dvc repro``. Either way
:func:`run_tracked` does the rest alike: one MLflow parent run that each stage's run and the
``register`` run nest under (stages find it in ``WIKILM_PARENT_RUN_ID``), the registry's
gate, and on the parent the pipeline's lineage (the new ``dvc.lock`` included), every
stage's metrics under the stage's name, and ``dvc.lock`` itself as an artifact.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from components.core.checkout_lock import checkout_lock
from components.core.errors import WikilmError
from components.core.paths import Paths
from components.core.tracking import Tracker, flatten, lineage, numeric, pipeline_run
from components.core.tracking_server import check_tracking_store, tracking_enabled
from components.params import Params, load_params
from components.registry.gate import Outcome
from components.stages import STAGES
from flows.dag import check_pipeline_params, dvc_stages, stale_stages

log = logging.getLogger(__name__)
# With a Prefect server of its own (a deployment's worker, a team's server), a run is always
# recorded there, even one with nothing to do; the temporary server is started only for work.
PREFECT_API_ENV = "PREFECT_API_URL"


@dataclass(frozen=True)
class StageReport:
    """How one stage went in this run."""

    stage: str
    status: str  # ran | skipped
    seconds: float
    summary: str


@dataclass(frozen=True)
class PipelineResult:
    """What a run did: each stage's report (Prefect runs only) and each model's outcome."""

    stages: list[StageReport] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    new_dump: bool = False  # ingest.source: latest found a dump it had not trained on


def run_pipeline(
    params_file: Path, force: bool = False, prefect: bool = True, approval_timeout_s: int = 3600
) -> list[Outcome]:
    """``wikilm run``: every stale stage, then register, gate and approval; the outcomes.

    A run with nothing to do (no stage stale, the export registered already) starts no
    Prefect server and opens no MLflow run: the outcomes are those registered before. With
    ``PREFECT_API_URL`` set it is still a flow run on that server, so that a schedule's runs
    all show there.

    Raises:
        WikilmError: bad params or dvc.yaml, an unreachable tracking store (both before any
            stage runs), a stage that failed, or a registry action refused.
    """
    check_pipeline_params(params_file)
    params = load_params(params_file)
    paths = Paths.resolve(params.paths, params_file.resolve().parent)
    check_tracking_store(paths.root)  # before any stage runs or any version is registered
    if not force and not (prefect and os.environ.get(PREFECT_API_ENV)):
        known = up_to_date(params, paths)
        if known is not None:
            log.info("run: every stage is up to date and the export is registered already")
            return known
    if prefect:
        from flows.pipeline_flow import wikilm_pipeline

        dvc_stages(paths.root)  # a missing or misordered dvc.yaml fails before Prefect starts
        result = wikilm_pipeline(str(params_file), force, approval_timeout_s)
        return result.outcomes
    from components.registry.promotion import register_and_gate  # torch and onnx: when used

    def register() -> list[Outcome]:
        return register_and_gate(params, paths, once=True)

    return run_tracked(params, paths, lambda: repro(paths, force), register).outcomes


def run_tracked(
    params: Params,
    paths: Paths,
    run_stages: Callable[[], list[StageReport]],
    register: Callable[[], list[Outcome]],
    approve: Callable[[list[Outcome]], list[Outcome]] | None = None,
) -> PipelineResult:
    """The stages, registration and approval under one MLflow parent run, then its record.

    ``approve`` (the flow's pause for a reviewer) is asked only with
    ``promote.approval: manual``; without it, versions wait for ``wikilm approve``. The
    checkout is held while the stages write to it, not while the run waits for a reviewer.

    Raises:
        CheckoutBusy: another run holds the checkout (before any stage runs).
    """
    # The checkout is taken before the run opens, and let go once the stages are done.
    with ExitStack() as held:
        held.enter_context(checkout_lock(paths.root, "wikilm run"))
        with pipeline_run(paths, params.model_dump(mode="json", by_alias=True)) as parent:
            if parent.run_id:
                log.info("pipeline: MLflow parent run %s", parent.run_id)
            reports = run_stages()  # their processes hold the checkout as part of this run
            held.close()
            outcomes: list[Outcome] = []
            if parent.run_id:  # the registry lives in MLflow: nothing to register without it
                outcomes = register()
            else:
                log.warning("pipeline: tracking is off, so nothing is registered or promoted")
            if approve is not None and params.promote.approval == "manual":
                outcomes = approve(outcomes)
            record_outcome(parent, params, paths)
    return PipelineResult(reports, outcomes)


def repro(paths: Paths, force: bool = False) -> list[StageReport]:
    """``dvc repro`` of every stage, its output on this terminal as it comes.

    Raises:
        WikilmError: a stage failed (its own error line has been printed by then).
    """
    command = [sys.executable, "-m", "dvc", "repro", *(["--force"] if force else [])]
    done = subprocess.run(command, cwd=paths.root, env=this_environment(), check=False)
    if done.returncode:
        raise WikilmError(f"dvc repro failed (exit code {done.returncode}); see above")
    return []  # DVC reports each stage itself


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


def this_environment() -> dict[str, str]:
    """The environment with this interpreter's folder first on PATH.

    Commands that DVC or MLflow start (`python`, `uvicorn`) then come from this environment.
    """
    folder = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([folder, os.environ.get("PATH", "")])}
