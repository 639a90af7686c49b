"""MLflow tracking: one run per stage, nested under the pipeline run, with lineage tags.

A pipeline orchestrator hands its parent run to stages through ``WIKILM_PARENT_RUN_ID``;
a resumed stage continues its own run. Params, metrics and tags are sent in batches, never
one call per value, each call patient with a server that stops answering
(:mod:`components.core.tracking_server` says where the store is and how long to wait).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, TypeVar

from components.core.artifacts import META_FILE, file_digest, git_commit
from components.core.distributed import is_global_zero
from components.core.identity import current_user
from components.core.paths import Paths
from components.core.tracking_server import (
    check_reachable,
    patiently,
    tracking_enabled,
    tracking_uri,
    unreachable,
)

log = logging.getLogger(__name__)

EXPERIMENT = "wikilm"
PARENT_RUN_ENV = "WIKILM_PARENT_RUN_ID"
_BATCH = 100  # MLflow accepts at most 100 params (and 1000 metrics) per batch call
RESUMED_TAG = "wikilm.resumed"

T = TypeVar("T")


class Tracker(Protocol):
    """What a stage may record about itself."""

    run_id: str | None

    def log_params(self, params: Mapping[str, Any]) -> None: ...  # noqa: D102

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None: ...  # noqa: D102

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...  # noqa: D102

    def set_tags(self, tags: Mapping[str, str]) -> None: ...  # noqa: D102


class NullTracker:
    """Records nothing (tracking switched off)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Ignore params."""

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Ignore metrics."""

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Ignore artifacts."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Ignore tags."""


class MlflowTracker:
    """Records into one MLflow run through the client API, in batches."""

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.uri = uri

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values as strings, MLflow's type for params)."""
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), _BATCH):
            batch = items[start : start + _BATCH]
            self._patiently(lambda b=batch: self.client.log_batch(self.run_id, params=b), "params")

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numeric metrics at ``step``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        for start in range(0, len(items), 10 * _BATCH):
            batch = items[start : start + 10 * _BATCH]
            self._patiently(
                lambda b=batch: self.client.log_batch(self.run_id, metrics=b), "metrics"
            )

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """Upload a file to the run's artifacts."""
        self._patiently(
            lambda: self.client.log_artifact(self.run_id, str(path), artifact_path=folder),
            f"artifact {path.name}",
        )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set (or replace) tags of the run, in one batch."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._patiently(lambda: self.client.log_batch(self.run_id, tags=batch), "tags")

    def _patiently(self, call: Callable[[], T], what: str) -> T:
        return patiently(call, self.uri, what)


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


@contextmanager
def fluent_tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (``mlflow.*``) at ``uri`` for the block only.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` for child processes;
    left in place, it would send every later stage of this process tree to this store.
    """
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # None unsets both the URI and the variable


def get_or_create_experiment(client: Any, name: str, location: str | None = None) -> str:
    """The id of experiment ``name``, created if needed (safe against a concurrent creator)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by another process
        return client.get_experiment_by_name(name).experiment_id


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of the store at ``uri`` keeps its artifacts.

    Beside a SQLite store's file (``mlartifacts/``), whatever the working directory: MLflow's
    own default for it is ``./mlruns`` of the process that creates the experiment. A server
    or a database store decides itself (None).
    """
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///")).resolve()
    return (database.parent / "mlartifacts").as_uri()


def _experiment_id(client: Any, root: Path) -> str:
    # By the URI, not by whether MLFLOW_TRACKING_URI is set: registration sets it (MLflow's
    # fluent API exports it) while it creates the experiment on the embedded store.
    location = artifact_location(tracking_uri(root))
    return get_or_create_experiment(client, EXPERIMENT, location)


_ACTIVE: ContextVar[Tracker | None] = ContextVar("wikilm_active_tracker", default=None)


def active_tracker() -> Tracker:
    """The tracker of the stage run in progress (a :class:`NullTracker` outside one)."""
    return _ACTIVE.get() or NullTracker()


def open_client(paths: Paths) -> Any:
    """An MLflow client for tracking and the registry, with the store ready for use.

    The embedded SQLite store is created on first use; two processes doing that at once
    would race on its schema migrations, so the first use is serialised by a file lock.
    """
    from filelock import FileLock
    from mlflow import MlflowClient

    # The run links MLflow prints on a server would interleave with the commands' own output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow sets its loggers up when imported (after ours): its store chatter is not news.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri(paths.root)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        check_reachable(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    paths.root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(paths.root / ".mlflow.db.lock"), timeout=600):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    return client


def _client(paths: Paths) -> tuple[Any, str]:
    return open_client(paths), tracking_uri(paths.root)


def _reopen(client: Any, run_id: str, stage: str) -> str | None:
    """Mark an earlier run of ``stage`` as running again; None if it cannot be continued."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.info.lifecycle_stage != "active" or run.data.tags.get("wikilm.stage") != stage:
        return None
    resumed = int(run.data.tags.get(RESUMED_TAG, "0")) + 1
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, RESUMED_TAG, str(resumed))
    log.info("%s: continuing MLflow run %s (resumed %d time(s))", stage, run_id, resumed)
    return run_id


def _open_run(
    client: Any, stage: str, paths: Paths, params: Mapping[str, Any], resume: str | None
) -> str:
    if resume and (run_id := _reopen(client, resume, stage)):
        return run_id
    tags = {"wikilm.stage": stage, "mlflow.user": current_user(), **lineage(paths, params)}
    if parent := os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(_experiment_id(client, paths.root), run_name=stage, tags=tags)
    log.debug("tracking %s as MLflow run %s", stage, run.info.run_id)
    return run.info.run_id


@contextmanager
def _terminating(client: Any, run_id: str) -> Iterator[None]:
    """End the run FINISHED with the block, KILLED on interrupt, FAILED on any error."""
    try:
        yield
    except KeyboardInterrupt:
        _end_quietly(client, run_id, "KILLED")
        raise
    except BaseException:
        _end_quietly(client, run_id, "FAILED")
        raise
    patiently(lambda: client.set_terminated(run_id, status="FINISHED"), client.tracking_uri, "end")


def _end_quietly(client: Any, run_id: str, status: str) -> None:
    """End a failing run with ``status``; an unreachable server must not mask the failure."""
    try:
        client.set_terminated(run_id, status=status)
    except Exception as error:
        if not unreachable(error):
            raise
        log.warning(
            "run %s could not be marked %s: the tracking server does not answer", run_id, status
        )


@contextmanager
def stage_run(
    stage: str, paths: Paths, params: Mapping[str, Any], resume: str | None = None
) -> Iterator[Tracker]:
    """A run for one stage execution, ended FINISHED, FAILED or KILLED with the block.

    ``resume`` names the run of an interrupted execution to continue instead of starting a
    new one (when it still exists). Only the global-zero process of a distributed run
    records anything; the others get a :class:`NullTracker`.
    """
    if not tracking_enabled() or not is_global_zero():
        yield NullTracker()
        return
    client, uri = _client(paths)
    tracker = MlflowTracker(client, _open_run(client, stage, paths, params, resume), uri)
    token = _ACTIVE.set(tracker)
    try:
        with _terminating(client, tracker.run_id):
            yield tracker
    finally:
        _ACTIVE.reset(token)


@contextmanager
def pipeline_run(paths: Paths, params: Mapping[str, Any]) -> Iterator[Tracker]:
    """The parent run of one pipeline execution.

    Stage processes started inside the block (``dvc repro``) find its id in
    ``WIKILM_PARENT_RUN_ID`` and nest their runs under it.
    """
    if not tracking_enabled():
        yield NullTracker()
        return
    client, uri = _client(paths)
    tags = {"wikilm.stage": "pipeline", "mlflow.user": current_user(), **lineage(paths, params)}
    run = client.create_run(_experiment_id(client, paths.root), run_name="pipeline", tags=tags)
    tracker = MlflowTracker(client, run.info.run_id, uri)
    previous = os.environ.get(PARENT_RUN_ENV)
    os.environ[PARENT_RUN_ENV] = tracker.run_id
    try:
        with _terminating(client, tracker.run_id):
            yield tracker
    finally:
        if previous is None:
            os.environ.pop(PARENT_RUN_ENV, None)
        else:
            os.environ[PARENT_RUN_ENV] = previous
