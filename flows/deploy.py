"""Scheduled retraining: serve ``wikilm-pipeline`` on a cron or interval schedule.

``wikilm deploy --cron "0 3 * * 0"`` (or ``--interval 3600``) registers a deployment with the
Prefect server that ``PREFECT_API_URL`` names (a local ``prefect server start`` or a remote
one) and runs its scheduled flow runs in this process. The server's scheduler service
creates the runs, so the server must run with its services on (``prefect server start``
does by default). For work pools, ``prefect.yaml`` declares the same deployment
(``prefect deploy --all``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from components.core.errors import WikilmError
from flows.pipeline_flow import wikilm_pipeline

DEFAULT_NAME = "wikilm-scheduled"


def build_deployment(
    params_file: Path,
    cron: str | None = None,
    interval_s: float | None = None,
    name: str = DEFAULT_NAME,
) -> RunnerDeployment:
    """The deployment of the pipeline flow on ``cron`` or every ``interval_s`` seconds.

    Raises:
        WikilmError: not exactly one schedule is given, or Prefect refuses it (an invalid
            cron expression, an interval that is not positive).
    """
    from pydantic import ValidationError

    if (cron is None) == (interval_s is None):
        raise WikilmError("give a schedule: either --cron or --interval")
    if interval_s is not None and interval_s <= 0:
        raise WikilmError(f"--interval {interval_s:g}: must be a positive number of seconds")
    schedule = {"cron": cron} if cron is not None else {"interval": timedelta(seconds=interval_s)}
    try:
        return wikilm_pipeline.to_deployment(
            name=name,
            parameters={"params_file": str(params_file.resolve())},
            description="Retrain from the configured dump; register, gate and promote.",
            tags=["wikilm", "retraining"],
            **schedule,
        )
    except ValidationError as error:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise WikilmError(f"--cron {cron!r}: {reasons}") from None


def serve_on_schedule(
    params_file: Path,
    cron: str | None = None,
    interval_s: float | None = None,
    name: str = DEFAULT_NAME,
) -> None:
    """Register the deployment and run its scheduled flow runs until interrupted."""
    from prefect import serve

    serve(build_deployment(params_file, cron, interval_s, name))
