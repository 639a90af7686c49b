"""The server's decisions on the wikilm models: register, promote, approve, reject, roll back.

Each runs in one database transaction that holds the model's lock (``records.model_lock``):
it reads the history, checks, appends its row, moves the aliases, and commits. The rows are
the record; the ``champion`` alias follows them. Should the alias move succeed and the commit
fail, the next decision on the model puts the alias back where the rows say it is.

The gate is judged again here, by the server's rules, on the evidence the pipeline recorded
at registration (tag ``wikilm.evidence``); the author of a version is the account that
registered it, as the server authenticated it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from components.registry.gate import Decision, judge
from components.registry.server import records
from components.registry.server.config import ServerConfig
from components.registry.store import (
    APPROVAL_TAG,
    CHALLENGER,
    CHAMPION,
    EVIDENCE_TAG,
    GATE_TAG,
    MOVES,
    replaced_champion,
    version_metrics,
)

GATED = ("gate_passed", "gate_failed")
DECIDED = ("approved", "rejected", "promoted")


class Refused(Exception):
    """A decision the server does not take: its HTTP status and a one-line reason."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Context:
    """What every decision needs: the rules, the server's database, MLflow's registry store."""

    config: ServerConfig
    db: sa.Engine
    store: Any  # mlflow's AbstractModelRegistryStore


def gate_decision(version: Any, config: ServerConfig) -> Decision:
    """The server's verdict on a version: its recorded evidence under the server's rules."""
    evidence = version.tags.get(EVIDENCE_TAG)
    if not evidence:
        return Decision(False, ["FAIL: no evidence recorded at registration (wikilm.evidence)"])
    try:
        return judge(evidence, config.promote)
    except (ValueError, TypeError) as error:
        return Decision(False, [f"FAIL: the recorded evidence is unreadable ({error})"])


# --- reading -------------------------------------------------------------------------------


def model_version(ctx: Context, model: str, version: str) -> Any:
    """A version from MLflow's registry, or a 404 refusal."""
    from mlflow.exceptions import MlflowException

    try:
        return ctx.store.get_model_version(model, str(version))
    except MlflowException:
        raise Refused(f"{model} has no version {version}", 404) from None


def alias(ctx: Context, model: str, name: str) -> str | None:
    """The version ``name`` points to, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(ctx.store.get_model_version_by_alias(model, name).version)
    except MlflowException:
        return None


def status(ctx: Context, rows: list[records.Row], model: str, version: Any) -> str:
    """Where a version stands: gate failed, approved, rejected, promoted, pending, superseded."""
    number = str(version.version)
    decided = [r.action for r in rows if r.version == number and r.action in DECIDED]
    if decided:
        return decided[-1]
    if not gate_decision(version, ctx.config).passed:
        return "gate failed"
    if not any(r.version == number and r.action in GATED for r in rows):
        return "not registered through this server"
    if alias(ctx, model, CHALLENGER) != number:
        return "superseded"
    return "pending"


def author(rows: list[records.Row], version: str) -> str | None:
    """The account that registered ``version`` (as the server authenticated it)."""
    return next((r.actor for r in rows if r.version == version and r.action in GATED), None)


def champion_of(rows: list[records.Row]) -> str | None:
    """The champion the rows say: the version of the last move, or None if none moved it."""
    moves = [r for r in rows if r.action in MOVES]
    return moves[-1].version if moves else None


# --- writing -------------------------------------------------------------------------------


def registered(ctx: Context, user: str, model: str, number: str) -> records.Row:
    """Record a new version and the server's gate verdict on it (after MLflow created it)."""
    with records.model_lock(ctx.db, model) as connection:
        version = model_version(ctx, model, number)
        decision = gate_decision(version, ctx.config)
        row = _row(
            model,
            "gate_passed" if decision.passed else "gate_failed",
            number,
            user,
            decision.summary(),
            alias(ctx, model, CHAMPION),
            version_metrics(version),
        )
        records.append(connection, row)
        _tag(ctx, model, number, {GATE_TAG: "passed" if decision.passed else "failed"})
        _tag(ctx, model, number, {"wikilm.gate.reasons": "\n".join(decision.reasons)})
        if decision.passed and ctx.config.promote.approval == "manual":
            _tag(ctx, model, number, {APPROVAL_TAG: "pending"})
    return row


def approve(ctx: Context, user: str, model: str, number: str, reason: str) -> records.Row:
    """A reviewer's approval: the version becomes champion.

    Raises:
        Refused: not a reviewer, the version's author (four-eyes), gate failed under the
            server's rules, decided already, superseded, or the champion changed since.
    """
    _require_reviewer(ctx, user)
    with records.model_lock(ctx.db, model) as connection:
        rows = _healed_history(ctx, connection, model)
        version = _undecided(ctx, rows, model, number)
        if ctx.config.promote.four_eyes and user == author(rows, number):
            raise Refused(
                f"four-eyes rule: {user} registered {model} v{number} and cannot approve it; "
                "another reviewer must"
            )
        _require_current(ctx, rows, model, version)
        row = _move(ctx, connection, model, number, "approved", user, reason, version)
        _tag(ctx, model, number, {APPROVAL_TAG: "approved", "wikilm.approval.by": user})
        _tag(ctx, model, number, {"wikilm.approval.comment": reason})
    return row


def promote(ctx: Context, user: str, model: str, number: str) -> records.Row:
    """The pipeline's promotion of a version that passed, where the server approves alone.

    Raises:
        Refused: not the pipeline account, the server asks reviewers (``approval: manual``),
            or the version cannot be champion (as for :func:`approve`).
    """
    if user != ctx.config.pipeline_account:
        raise Refused(f"only the pipeline account promotes without a reviewer, not {user}")
    if ctx.config.promote.approval != "auto":
        raise Refused(
            f"this server asks a reviewer to approve {model} v{number} (approval: manual)", 409
        )
    with records.model_lock(ctx.db, model) as connection:
        rows = _healed_history(ctx, connection, model)
        version = _undecided(ctx, rows, model, number)
        _require_current(ctx, rows, model, version)
        reason = "gate passed; approval: auto (server)"
        return _move(ctx, connection, model, number, "promoted", user, reason, version)


def reject(ctx: Context, user: str, model: str, number: str, reason: str) -> records.Row:
    """A reviewer's rejection: the version leaves ``challenger`` and is never approved.

    Raises:
        Refused: not a reviewer, decided already, or the version is the champion.
    """
    _require_reviewer(ctx, user)
    with records.model_lock(ctx.db, model) as connection:
        rows = _healed_history(ctx, connection, model)
        version = model_version(ctx, model, number)
        _require_undecided(rows, model, number)
        champion = alias(ctx, model, CHAMPION)
        if champion == number:
            raise Refused(f"{model} v{number} is the champion: roll it back instead", 409)
        row = _row(model, "rejected", number, user, reason, champion, version_metrics(version))
        records.append(connection, row)
        _tag(ctx, model, number, {APPROVAL_TAG: "rejected", "wikilm.approval.by": user})
        if alias(ctx, model, CHALLENGER) == number:
            ctx.store.delete_registered_model_alias(model, CHALLENGER)
    return row


def rollback(ctx: Context, user: str, model: str, reason: str) -> records.Row:
    """Restore the champion the current one replaced (skipping versions rejected since).

    Raises:
        Refused: not a reviewer, no champion, or no earlier champion to return to.
    """
    _require_reviewer(ctx, user)
    with records.model_lock(ctx.db, model) as connection:
        rows = _healed_history(ctx, connection, model)
        current = alias(ctx, model, CHAMPION)
        if current is None:
            raise Refused(f"{model} has no champion to roll back", 409)
        target = replaced(rows, current)
        if target is None:
            raise Refused(f"{model} v{current} has no earlier champion to roll back to", 409)
        version = model_version(ctx, model, target)
        return _move(ctx, connection, model, target, "rollback", user, reason, version)


def replaced(rows: list[records.Row], version: str) -> str | None:
    """The champion that ``version`` replaced when it arrived, not rejected since."""
    rejected = {r.version for r in rows if r.action == "rejected"}
    return replaced_champion(rows, version, rejected.__contains__)


# --- checks and steps ----------------------------------------------------------------------


def _require_reviewer(ctx: Context, user: str) -> None:
    with ctx.db.connect() as connection:
        if records.is_reviewer(connection, user):
            return
    raise Refused(
        f"{user} is not in the reviewers' group of this server: an admin adds reviewers "
        "(wikilm reviewers add NAME)"
    )


def _undecided(ctx: Context, rows: list[records.Row], model: str, number: str) -> Any:
    """The version, registered here, undecided, and passing the server's gate."""
    version = model_version(ctx, model, number)
    if author(rows, number) is None:
        raise Refused(
            f"{model} v{number} was not registered through this server's pipeline account", 409
        )
    _require_undecided(rows, model, number)
    decision = gate_decision(version, ctx.config)
    if not decision.passed:
        raise Refused(
            f"{model} v{number} did not pass the gate under this server's rules: "
            f"{decision.summary()}",
            409,
        )
    return version


def _require_undecided(rows: list[records.Row], model: str, number: str) -> None:
    done = [r.action for r in rows if r.version == number and r.action in DECIDED]
    if done:
        raise Refused(f"{model} v{number} was already {done[-1]}", 409)


def _require_current(ctx: Context, rows: list[records.Row], model: str, version: Any) -> None:
    """Only the challenger, and only against the champion the gate compared it with."""
    number = str(version.version)
    challenger = alias(ctx, model, CHALLENGER)
    if challenger != number:
        newer = f"v{challenger} is" if challenger else "none is"
        raise Refused(f"{model} v{number} is no longer the challenger ({newer})", 409)
    gated = next(r for r in reversed(rows) if r.version == number and r.action in GATED)
    now = alias(ctx, model, CHAMPION)
    if gated.champion_before != now:
        raise Refused(
            f"the champion of {model} changed since v{number} was gated (v"
            f"{gated.champion_before or '-'} then, v{now or '-'} now): rerun the pipeline",
            409,
        )


def _healed_history(ctx: Context, connection: sa.Connection, model: str) -> list[records.Row]:
    """The model's rows, with ``champion`` put back where they say if it is elsewhere."""
    rows = records.history(connection, model)
    recorded = champion_of(rows)
    if recorded is not None and alias(ctx, model, CHAMPION) != recorded:
        ctx.store.set_registered_model_alias(model, CHAMPION, recorded)
    return rows


def _move(
    ctx: Context,
    connection: sa.Connection,
    model: str,
    number: str,
    action: str,
    user: str,
    reason: str,
    version: Any,
) -> records.Row:
    """Append the move, then point ``champion`` at the version (rolled back if that fails)."""
    before = alias(ctx, model, CHAMPION)
    row = _row(model, action, number, user, reason, before, version_metrics(version))
    records.append(connection, row)
    ctx.store.set_registered_model_alias(model, CHAMPION, number)
    return row


def _tag(ctx: Context, model: str, number: str, tags: dict[str, str]) -> None:
    from mlflow.entities.model_registry import ModelVersionTag

    for key, value in tags.items():
        ctx.store.set_model_version_tag(model, number, ModelVersionTag(key, value))


def _row(
    model: str,
    action: str,
    version: str,
    actor: str,
    reason: str,
    champion_before: str | None,
    metrics: dict[str, float],
) -> records.Row:
    return records.Row(
        model=model,
        action=action,
        version=str(version),
        actor=actor,
        reason=reason,
        champion_before=champion_before,
        timestamp_ms=records.now_ms(),
        metrics=metrics,
        sequence=0,
    )
