"""MLflow tracking: one run per stage, nested under the pipeline run, with lineage tags.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; without it, an embedded SQLite store in
the repository root (``mlflow.db``, artifacts in ``mlartifacts/``), so nothing needs a server.
A pipeline orchestrator hands its parent run to stages through ``WIKILM_PARENT_RUN_ID``.
``WIKILM_TRACKING=off`` turns tracking into a no-op (for benchmarks and quick experiments).
Params, metrics and tags are sent in batches, never one call per value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from components.artifacts import META_FILE, file_digest, git_commit
from components.config import Paths

log = logging.getLogger(__name__)

EXPERIMENT = "wikilm"
PARENT_RUN_ENV = "WIKILM_PARENT_RUN_ID"
SWITCH_ENV = "WIKILM_TRACKING"
_BATCH = 100  # MLflow accepts at most 100 params (and 1000 metrics) per batch call


class Tracker(Protocol):
    """What a stage may record about itself."""

    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...  # noqa: D102

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None: ...  # noqa: D102

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...  # noqa: D102


class NullTracker:
    """Records nothing (tracking switched off)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Ignore params."""

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Ignore metrics."""

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Ignore artifacts."""


class MlflowTracker:
    """Records into one MLflow run through the client API, in batches."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values as strings, MLflow's type for params)."""
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + _BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics at ``step``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), 10 * _BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + 10 * _BATCH])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Upload a file to the run's artifacts."""
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder)


def tracking_enabled() -> bool:
    """False when ``WIKILM_TRACKING`` says off."""
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in {"off", "0", "false", "no"}


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI``, else the embedded SQLite store in ``root``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys (``outcomes.kept``)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numeric(mapping: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are numbers (booleans as 0/1), for metrics."""
    return {k: float(v) for k, v in mapping.items() if isinstance(v, int | float)}


def lineage(paths: Paths, params: Mapping[str, Any]) -> dict[str, str]:
    """Tags that say what produced a run: code, pipeline state, dump and params."""
    tags = {
        "wikilm.git_commit": git_commit() or "unknown",
        "wikilm.params_digest": _digest(json.dumps(params, sort_keys=True, default=str)),
    }
    lock = paths.root / "dvc.lock"
    if lock.is_file():
        tags["wikilm.dvc_lock_digest"] = file_digest(lock)
    ingest_meta = paths.ingest / META_FILE
    if ingest_meta.is_file():
        meta = json.loads(ingest_meta.read_text(encoding="utf-8"))
        tags["wikilm.dump"] = str(meta.get("dump"))
        tags["wikilm.dump_sha1"] = str(meta.get("inputs", {}).get("dump_sha1"))
    return tags


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _experiment_id(client: Any, root: Path) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    # The embedded store keeps artifacts next to it; a server chooses its own location.
    location = None if os.environ.get("MLFLOW_TRACKING_URI") else (root / "mlartifacts").as_uri()
    return client.create_experiment(EXPERIMENT, artifact_location=location)


@contextmanager
def stage_run(stage: str, paths: Paths, params: Mapping[str, Any]) -> Iterator[Tracker]:
    """A run for one stage execution, ended FINISHED, FAILED or KILLED with the block."""
    if not tracking_enabled():
        yield NullTracker()
        return
    from mlflow import MlflowClient

    # MLflow sets its loggers up when imported (after ours): its store chatter is not news.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri(paths.root))
    tags = {"wikilm.stage": stage, **lineage(paths, params)}
    if parent := os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(_experiment_id(client, paths.root), run_name=stage, tags=tags)
    log.debug("tracking %s as MLflow run %s", stage, run.info.run_id)
    try:
        yield MlflowTracker(client, run.info.run_id)
    except KeyboardInterrupt:
        client.set_terminated(run.info.run_id, status="KILLED")
        raise
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
