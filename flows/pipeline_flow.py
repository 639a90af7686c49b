"""Prefect flow ``wikilm-pipeline``: the dvc.yaml stages, then register, gate and approval.

One ``dvc status`` first: the stages before the first stale one are reported as skipped in
one step. From there, one task per dvc.yaml stage, in dvc.yaml's order, each running its
stage *through DVC* (``dvc repro --single-item``), so that a Prefect run and ``dvc repro``
share the cache and write the same dvc.lock; stages DVC then finds up to date are skipped.
Registration, the gate and the MLflow parent run are the driver's
(:func:`flows.pipeline.run_tracked`); with ``promote.approval: manual`` the flow also
pauses for a typed approval form in the Prefect UI (a reviewer may use ``wikilm approve``
instead, which ends the pause: see flows/approval.py). Each run publishes a summary
artifact: stage status, duration and key metric, and the gate's decision. Prefect result
caching stays off: DVC owns caching. With ``ingest.source: latest`` a (scheduled) run first
asks the mirror for its newest dump and retrains only when that differs from the dump last
ingested.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import State

from components.core.errors import Unreachable, WikilmError
from components.core.paths import Paths
from components.params import load_params
from components.registry.gate import Outcome
from components.stages import STAGES, stage_line
from flows.approval import await_approval
from flows.dag import PIPELINE_PARAMS, check_pipeline_params, dvc_stages, stale_stages
from flows.pipeline import PipelineResult, StageReport, run_tracked, this_environment

SKIPPED_MARK = "didn't change, skipping"
# What DVC advises after every `dvc repro` that writes dvc.lock (git add, autostage, dvc
# push): true once per run, not once per stage, so the run says it once at its end.
_DVC_ADVICE = re.compile(
    r"^(To track the changes with git|To enable auto staging|\s*git add |"
    r"\s*dvc config core\.autostage|Use `dvc push` to send)"
)
SUMMARY_ARTIFACT = "wikilm-pipeline-summary"
LOCK_HINT = "dvc.lock changed: commit it with git (git add dvc.lock); dvc push shares the outputs"
# How DVC reports a stage command's failure, and how a stage reports its own error.
_DVC_EXIT = re.compile(r"failed to run: .*, exited with (-?\d+)")
_STAGE_ERROR = re.compile(r"^error: .*", re.M)


class StageFailed(WikilmError):
    """A stage run through DVC failed; ``transient`` when a retry may succeed."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def stage_failure(stage: str, output: str, returncode: int) -> StageFailed:
    """The failure of a stage from DVC's output: the stage's own error line, when it has one."""
    errors = _STAGE_ERROR.findall(output)
    exit_code = _DVC_EXIT.search(output)
    code = int(exit_code.group(1)) if exit_code else None
    reason = errors[-1] if errors else f"dvc exit code {returncode}"
    return StageFailed(f"stage {stage} failed: {reason}", code == Unreachable.exit_code)


def without_dvc_advice(output: str) -> list[str]:
    """DVC's output for one stage without blank lines and its per-repro advice."""
    return [line for line in output.splitlines() if line.strip() and not _DVC_ADVICE.match(line)]


def _retry_if_transient(task: object, task_run: object, state: State) -> bool:
    """Prefect's retry condition: only failures that a later attempt may not repeat."""
    try:
        state.result()
    except StageFailed as failure:
        return failure.transient
    except Exception:  # noqa: BLE001 - anything else (a crash of DVC itself): retry
        return True
    return False


def _summary(stage: str, paths: Paths) -> str:
    metrics_file = paths.metrics_file(stage)
    if not metrics_file.is_file():
        return ""
    return stage_line(stage, json.loads(metrics_file.read_text(encoding="utf-8")), paths)


@task(name="stage", cache_policy=None, persist_result=False)
def run_stage_through_dvc(stage: str, root: str, force: bool = False) -> StageReport:
    """Run one dvc.yaml stage through DVC (skipped when DVC finds it up to date)."""
    logger = get_run_logger()
    command = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    command += ["--force"] if force else []
    started = time.perf_counter()
    # One stream, in the order it was written: DVC's lines and the stage's own log.
    done = subprocess.run(
        command,
        cwd=root,
        env=this_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    for line in without_dvc_advice(done.stdout):
        logger.info(line)
    if done.returncode:
        raise stage_failure(stage, done.stdout, done.returncode)
    status = "skipped" if SKIPPED_MARK in done.stdout else "ran"
    paths = Paths.resolve(load_params(Path(root) / PIPELINE_PARAMS).paths, Path(root))
    return StageReport(
        stage, status, round(time.perf_counter() - started, 1), _summary(stage, paths)
    )


@task(name="dvc-status", cache_policy=None, persist_result=False)
def first_stale(root: str, stages: list[str]) -> int:
    """Index of the first stage DVC would rerun (``len(stages)``: none would)."""
    stale = stale_stages(Path(root))
    get_run_logger().info("dvc status: %s", ", ".join(stale) or "every stage is up to date")
    return stages.index(stale[0]) if stale else len(stages)


@task(
    name="register",
    retries=2,
    retry_delay_seconds=[10, 60],
    cache_policy=None,
    persist_result=False,
)
def register(params_file: str) -> list[Outcome]:
    """Register the exported models, gate them, and promote what passes (approval: auto)."""
    from components.registry.promotion import register_and_gate

    params = load_params(Path(params_file))
    paths = Paths.resolve(params.paths, Path(params_file).resolve().parent)
    return register_and_gate(params, paths, once=True)


@task(name="newest-dump", retries=2, retry_delay_seconds=[30, 120], cache_policy=None)
def newest_dump(params_file: str) -> tuple[bool, str]:
    """For ``ingest.source: latest``: is the mirror's newest dump other than the last ingested?"""
    from components.data.sources import latest_dump

    params = load_params(Path(params_file))
    paths = Paths.resolve(params.paths, Path(params_file).resolve().parent)
    cfg = params.ingest
    _, checksum = latest_dump(cfg.mirror, cfg.wiki, cfg.download_timeout_s)
    return checksum != last_ingested_sha1(paths), checksum


def last_ingested_sha1(paths: Paths) -> str | None:
    """``sha1:<hex>`` of the dump behind the current ingest output, if any."""
    meta = paths.ingest / "meta.json"
    if not meta.is_file():
        return None
    sha1 = json.loads(meta.read_text(encoding="utf-8")).get("inputs", {}).get("dump_sha1")
    return f"sha1:{sha1}" if sha1 else None


def _report(result: PipelineResult) -> str:
    lines = ["# wikilm pipeline", "", "| stage | status | seconds | result |", "|---|---|---|---|"]
    lines += [f"| {r.stage} | {r.status} | {r.seconds} | {r.summary} |" for r in result.stages]
    if result.outcomes:
        lines += ["", "## Promotion gate", ""]
        for o in result.outcomes:
            lines.append(f"**{o.model} v{o.version}: {o.status}**")
            lines += [f"- {reason}" for reason in o.decision.reasons]
    return "\n".join(lines)


def _stages_through_dvc(paths: Paths, force: bool, new_dump: bool) -> list[StageReport]:
    """A task per dvc.yaml stage from the first stale one; those before it skipped at once."""
    stages = dvc_stages(paths.root)
    first = 0 if force or new_dump else first_stale(str(paths.root), stages)
    # Stages before the first stale one are up to date, and stay so: one step for all.
    reports = [StageReport(s, "skipped", 0.0, _summary(s, paths)) for s in stages[:first]]
    for stage in stages[first:]:
        delays = STAGES[stage].retry_delays_s if stage in STAGES else ()
        step = run_stage_through_dvc.with_options(
            name=stage,
            # Only failures the stage reports as transient (Unreachable's exit code).
            retries=len(delays),
            retry_delay_seconds=list(delays) or 0,
            retry_condition_fn=_retry_if_transient,
        )
        # A new dump behind the same "latest" name is invisible to DVC: force ingest.
        reports.append(step(stage, str(paths.root), force or (new_dump and stage == "ingest")))
    return reports


@flow(name="wikilm-pipeline", log_prints=True, persist_result=False)
def wikilm_pipeline(
    params_file: str = "params.yaml", force: bool = False, approval_timeout_s: int = 3600
) -> PipelineResult:
    """Every dvc.yaml stage through DVC, then register, gate, approval and promotion."""
    params_path = Path(params_file).resolve()
    check_pipeline_params(params_path)
    params = load_params(params_path)
    paths = Paths.resolve(params.paths, params_path.parent)
    new_dump = False
    if params.ingest.source == "latest":
        new_dump, checksum = newest_dump(str(params_path))
        if not new_dump and not force:
            get_run_logger().info(
                "the newest dump (%s) is already trained on: nothing to do", checksum
            )
            return PipelineResult()
    result = run_tracked(
        params,
        paths,
        run_stages=lambda: _stages_through_dvc(paths, force, new_dump),
        register=lambda: register(str(params_path)),
        approve=lambda outcomes: await_approval(params, paths, outcomes, approval_timeout_s),
    )
    if any(r.status == "ran" for r in result.stages):
        get_run_logger().info(LOCK_HINT)
    create_markdown_artifact(
        _report(result),
        key=SUMMARY_ARTIFACT,
        description="stage status, duration, key metrics; gate decision",
    )
    return replace(result, new_dump=new_dump)
