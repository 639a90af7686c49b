"""Scheduled retraining: serve ``wikilm-pipeline`` on a cron schedule.

``wikilm deploy --cron "0 3 * * 0"`` registers a deployment with the Prefect server that
``PREFECT_API_URL`` names (a local ``prefect server start`` or a remote one) and runs its
scheduled flow runs in this process. For work pools, ``prefect.yaml`` declares the same
deployment (``prefect deploy --all``).
"""

from __future__ import annotations

from pathlib import Path

from prefect.deployments.runner import RunnerDeployment

from components.core.errors import WikilmError
from flows.pipeline_flow import wikilm_pipeline

DEFAULT_NAME = "wikilm-scheduled"


def build_deployment(params_file: Path, cron: str, name: str = DEFAULT_NAME) -> RunnerDeployment:
    """The deployment of the pipeline flow on ``cron`` (validated by Prefect).

    Raises:
        WikilmError: Prefect refuses the schedule (an invalid cron expression).
    """
    from pydantic import ValidationError

    try:
        return wikilm_pipeline.to_deployment(
            name=name,
            cron=cron,
            parameters={"params_file": str(params_file.resolve())},
            description="Retrain from the configured dump; register, gate and promote.",
            tags=["wikilm", "retraining"],
        )
    except ValidationError as error:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise WikilmError(f"--cron {cron!r}: {reasons}") from None


def serve_on_schedule(params_file: Path, cron: str, name: str = DEFAULT_NAME) -> None:
    """Register the deployment and run its scheduled flow runs until interrupted."""
    from prefect import serve

    serve(build_deployment(params_file, cron, name))
