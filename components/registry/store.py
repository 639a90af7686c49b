"""The model registry: versions, the gate's decision, approvals, history and rollback.

Registered models ``wikilm-classifier`` and ``wikilm-lm``; versions carry lineage tags and
the aliases ``challenger`` (newest candidate) and ``champion`` (what serves). MLflow keeps
no history of alias moves, so every move and decision is also written as an event: one
MLflow run per event in the experiment ``wikilm-registry-history``, which is append-only by
construction (concurrent writers each create their own run; none can overwrite another).
Alias moves of one model are serialised by a file lock next to the tracking store.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from components.core.errors import WikilmError
from components.core.identity import current_user
from components.core.paths import Paths
from components.core.tracking import get_or_create_experiment, open_client
from components.core.tracking_server import tracking_uri

log = logging.getLogger(__name__)

CLASSIFIER = "wikilm-classifier"
LM = "wikilm-lm"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_EXPERIMENT = "wikilm-registry-history"
GATE_TAG = "wikilm.gate"
APPROVAL_TAG = "wikilm.approval"
# The Prefect flow run paused for a reviewer's decision on the version (flows/approval.py).
WAITING_RUN_TAG = "wikilm.approval.flow_run"
# History actions that move the champion alias: arrivals of a new champion, then rollbacks.
ARRIVALS = ("promoted", "approved")
MOVES = (*ARRIVALS, "rollback")
TRIGGER_TAG = "wikilm.triggered_by"
METRIC_TAG = "wikilm.metric."  # prefix of the metrics a version was gated on
# What the gate measured, as JSON (gate.evidence_text): a tracking server judges it again.
EVIDENCE_TAG = "wikilm.evidence"


class RegistryError(WikilmError):
    """A registry action is not allowed or refers to something that does not exist."""


@dataclass(frozen=True)
class Event:
    """One entry of a model's promotion history."""

    model: str
    action: str  # registered, gate_passed, gate_failed, promoted, approved, rejected, rollback
    version: str
    actor: str
    reason: str
    champion_before: str | None
    timestamp_ms: int
    metrics: dict[str, float]
    sequence: int = 0  # nanosecond clock: orders events recorded within one millisecond


class Registry:
    """Registry actions over an MLflow client, with history events and per-model locks."""

    def __init__(self, paths: Paths) -> None:
        # Model downloads for scoring the champion are small; their bars are noise in logs.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.client = open_client(paths)
        self.uri = tracking_uri(paths.root)
        self.lock_dir = paths.root

    @property
    def server(self) -> Any | None:
        """The tracking server's wikilm app (a ``remote.ServerApp``), if it runs one.

        Such a server keeps the promotion rules and the history itself.
        """
        from components.registry.remote import server_app

        return server_app(self.uri)

    # --- reading ---------------------------------------------------------------------------

    def version(self, model: str, version: str) -> Any:
        """A model version, or a clear error."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(model, str(version))
        except MlflowException:
            raise RegistryError(f"{model} has no version {version}") from None

    def alias(self, model: str, alias: str) -> Any | None:
        """The version an alias points to, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model, alias)
        except MlflowException:
            return None

    def history(self, model: str) -> list[Event]:
        """Every recorded event of ``model``, oldest first."""
        if self.server is not None:
            return [Event(**row) for row in self.server.get("history", model=model)]
        experiment = self.client.get_experiment_by_name(HISTORY_EXPERIMENT)
        if experiment is None:
            return []
        runs = self.client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`wikilm.event.model` = '{model}'",
            max_results=50_000,
        )
        events = [_event(run) for run in runs]
        return sorted(events, key=lambda e: (e.timestamp_ms, e.sequence))

    # --- writing ---------------------------------------------------------------------------

    @contextmanager
    def locked(self, model: str) -> Iterator[None]:
        """Serialise alias moves of ``model`` (read champion, check, move, record)."""
        from filelock import FileLock

        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_dir / f".wikilm-registry-{model}.lock"), timeout=600):
            yield

    def record(
        self,
        model: str,
        action: str,
        version: str,
        reason: str,
        champion_before: str | None,
        metrics: dict[str, float] | None = None,
        actor: str | None = None,
    ) -> Event:
        """Append one event to the history (a new run; never edits an earlier one)."""
        event = Event(
            model=model,
            action=action,
            version=str(version),
            actor=actor or current_user(),
            reason=reason,
            champion_before=champion_before,
            timestamp_ms=int(time.time() * 1000),
            metrics=metrics or {},
            sequence=time.time_ns(),
        )
        tags = {f"wikilm.event.{k}": _text(v) for k, v in event.__dict__.items()}
        run = self.client.create_run(
            get_or_create_experiment(self.client, HISTORY_EXPERIMENT),
            run_name=f"{model} v{version} {action}",
            tags=tags,
        )
        self.client.set_terminated(run.info.run_id, status="FINISHED")
        log.info("registry: %s v%s %s by %s (%s)", model, version, action, event.actor, reason)
        return event

    def move_champion(
        self, model: str, version: str, action: str, reason: str, actor: str
    ) -> Event:
        """Point ``champion`` at ``version`` and record who, why and what was there before.

        Raises:
            RegistryError: the version did not pass the gate, or was rejected.
        """
        with self.locked(model):
            target = self.version(model, version)
            if target.tags.get(GATE_TAG) != "passed":
                raise RegistryError(
                    f"{model} v{version} did not pass the gate "
                    f"({target.tags.get(GATE_TAG, 'never gated')}): it cannot be champion"
                )
            if target.tags.get(APPROVAL_TAG) == "rejected":
                raise RegistryError(f"{model} v{version} was rejected: it cannot be champion")
            before = self.alias(model, CHAMPION)
            self.client.set_registered_model_alias(model, CHAMPION, str(version))
            return self.record(
                model,
                action,
                version,
                reason,
                str(before.version) if before else None,
                version_metrics(target),
                actor,
            )


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def _event(run: Any) -> Event:
    tags = {k.removeprefix("wikilm.event."): v for k, v in run.data.tags.items()}
    return Event(
        model=tags["model"],
        action=tags["action"],
        version=tags["version"],
        actor=tags["actor"],
        reason=tags["reason"],
        champion_before=tags.get("champion_before") or None,
        timestamp_ms=int(tags["timestamp_ms"]),
        metrics=json.loads(tags.get("metrics") or "{}"),
        sequence=int(tags.get("sequence", "0")),
    )


def replaced_champion(
    events: list[Event], version: str, rejected: Callable[[str], bool]
) -> str | None:
    """The champion that ``version`` replaced when it arrived, skipping ``rejected`` versions.

    Repeated rollbacks walk further back along the arrivals (a rollback is not an arrival to
    return from).
    """
    arrivals = [e for e in events if e.action in ARRIVALS]
    seen = {version}
    while True:
        arrival = next((e for e in reversed(arrivals) if e.version == version), None)
        if arrival is None or arrival.champion_before in (None, *seen):
            return None
        version = arrival.champion_before
        seen.add(version)
        if not rejected(version):
            return version


def version_metrics(version: Any) -> dict[str, float]:
    """The metrics a version was gated on (its ``wikilm.metric.*`` tags)."""
    return {
        k.removeprefix(METRIC_TAG): float(v)
        for k, v in version.tags.items()
        if k.startswith(METRIC_TAG)
    }
