"""Manual approval in the Prefect flow, and the ``wikilm approve``/``reject`` side of it.

Where the tracking server runs the wikilm app, the flow waits for the server's decision:
it polls the version's state until a reviewer decides on the approval page (or with
``wikilm approve``) or the timeout passes; no form, since the server knows who decides.

Elsewhere, with ``promote.approval: manual`` the flow pauses once per version awaiting
approval, with a typed form for the Prefect UI. A reviewer may instead decide with the
``wikilm`` command: the version carries the id of the flow run waiting for it (tag
``wikilm.approval.flow_run``), so the command resumes that run, which then reports the
decision at once instead of waiting for its timeout. The registry's approval tag is the
decision's one record; the form's answer is applied only when nobody decided with the
command meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import replace
from uuid import UUID

from prefect import get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from components.core.paths import Paths
from components.core.tracking_server import redacted, unreachable
from components.params import Params
from components.registry.gate import AWAITING_APPROVAL, Outcome
from components.registry.remote import ServerApp
from components.registry.store import APPROVAL_TAG, WAITING_RUN_TAG, Registry, RegistryError

REGISTRY_POLL_S = 2.0  # how often a wait without Prefect looks for the reviewer's decision


class ApprovalForm(RunInput):
    """What a reviewer fills in, in the Prefect UI, to decide on a challenger."""

    approve: bool
    reviewer: str
    comment: str


def await_approval(
    params: Params, paths: Paths, outcomes: list[Outcome], timeout_s: int
) -> list[Outcome]:
    """Pause for the Prefect approval form for each version waiting; apply the answer.

    Returns the outcomes with each decision taken meanwhile. Without an answer before the
    timeout the version stays ``challenger``, pending: the ``wikilm approve`` command works
    as well, and ends the pause when it is used during it.
    """
    return [
        _decide(params, paths, o, timeout_s) if o.status == AWAITING_APPROVAL else o
        for o in outcomes
    ]


def _decide(params: Params, paths: Paths, outcome: Outcome, timeout_s: int) -> Outcome:
    """The outcome once the form is answered, a reviewer decided elsewhere, or time ran out."""
    server = Registry(paths).server
    if server is not None:
        return _await_server(server, outcome, timeout_s)
    if decided := _decided_elsewhere(paths, outcome):
        return replace(outcome, status=decided)
    logger = get_run_logger()
    logger.info("waiting for a reviewer: %s v%s", outcome.model, outcome.version)
    answer = _pause(paths, outcome, timeout_s)
    if decided := _decided_elsewhere(paths, outcome):
        return replace(outcome, status=decided)
    if answer is None:
        logger.warning(
            "no decision on %s v%s within %d s: it stays challenger (wikilm approve)",
            outcome.model,
            outcome.version,
            timeout_s,
        )
        return outcome
    return replace(outcome, status=_apply(params, paths, outcome, answer))


def _await_server(server: ServerApp, outcome: Outcome, timeout_s: int) -> Outcome:
    """The outcome once the server records a decision on the version, or time runs out.

    A server that stops answering for a while (restarted, its database down) is waited for
    until the timeout: the decision is the server's to record, whenever it is back.
    """
    logger = get_run_logger()
    model, version = outcome.model, outcome.version
    logger.info(
        "waiting for a reviewer: %s v%s, at %s/wikilm/approvals",
        model,
        version,
        redacted(server.uri),
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _server_status(server, model, version)
        if status not in (None, "pending"):
            logger.info("%s v%s was %s on the tracking server", model, version, status)
            return replace(outcome, status=status)
        time.sleep(REGISTRY_POLL_S)
    logger.warning(
        "no decision on %s v%s within %d s: it stays challenger (the approval page, or "
        "wikilm approve)",
        model,
        version,
        timeout_s,
    )
    return outcome


def _server_status(server: ServerApp, model: str, version: str) -> str | None:
    """The version's state on the server; None while the server does not answer."""
    try:
        return server.get("version", model=model, version=version)["status"]
    except Exception as error:
        if not unreachable(error):
            raise
        return None


def pause_key(model: str, version: str | int) -> str:
    """The key of the pause that waits for ``model`` ``version``: its answers are its own."""
    return f"{model}-v{version}"


def _pause(paths: Paths, outcome: Outcome, timeout_s: int) -> ApprovalForm | None:
    """The form's answer, or None at the timeout; the version names this run meanwhile.

    A Prefect server that stops answering during the pause (restarted, its database down)
    does not end the wait: the decision is then awaited in the registry, its one record,
    where ``wikilm approve`` writes it whether or not Prefect answers.
    """
    client = Registry(paths).client
    model, version = outcome.model, outcome.version
    client.set_model_version_tag(model, version, WAITING_RUN_TAG, str(flow_run.id))
    deadline = time.monotonic() + timeout_s
    try:
        # A key per version: an answer sent to an earlier pause (one whose wait went on in
        # the registry while Prefect was down) is never read as this version's answer.
        return pause_flow_run(
            wait_for_input=ApprovalForm,
            timeout=timeout_s,
            poll_interval=2,
            key=pause_key(model, version),
        )
    except FlowPauseTimeout:
        _running_again()
        return None
    except Exception as error:
        if not _prefect_outage(error):
            raise
        get_run_logger().warning(
            "the Prefect server stopped answering while %s v%s waited (%s): waiting for the "
            "decision in the registry instead",
            model,
            version,
            type(error).__name__,
        )
        _wait_in_registry(paths, outcome, deadline)
        _running_again()
        return None
    finally:
        client.delete_model_version_tag(model, version, WAITING_RUN_TAG)


def _prefect_outage(error: Exception) -> bool:
    """Whether ``error`` says the Prefect server did not answer (rather than refused)."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, PrefectHTTPStatusError) and error.response.status_code >= 500


def _wait_in_registry(paths: Paths, outcome: Outcome, deadline: float) -> None:
    """Poll the version's approval tag until someone decides or the deadline passes."""
    registry = Registry(paths)
    while time.monotonic() < deadline:
        tags = registry.version(outcome.model, outcome.version).tags
        if tags.get(APPROVAL_TAG) not in (None, "pending"):
            return
        time.sleep(REGISTRY_POLL_S)


def _running_again() -> None:
    """Put the run back to Running after a pause that ended without Prefect's answer.

    Prefect leaves it Paused: the next pause would be refused ("not currently running") and
    the run could not complete. Best effort: a server that still does not answer gets the
    run's next state when it is back.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    try:
        with get_client(sync_client=True) as prefect:
            prefect.set_flow_run_state(flow_run.id, Running(), force=True)
    except Exception as error:
        if not _prefect_outage(error):
            raise


def _apply(params: Params, paths: Paths, outcome: Outcome, answer: ApprovalForm) -> str:
    """Apply the form's answer and return the new status.

    A refused answer (four-eyes, a stale gate) leaves the version pending, its status as it was.
    """
    from components.registry.review import approve, reject

    model, version = outcome.model, outcome.version
    try:
        if answer.approve:
            approve(paths, params, model, version, answer.reviewer, answer.comment)
        else:
            reject(paths, model, version, answer.reviewer, answer.comment)
    except RegistryError as refused:
        get_run_logger().warning("%s v%s: the answer was refused: %s", model, version, refused)
        return outcome.status
    return "approved" if answer.approve else "rejected"


def _decided_elsewhere(paths: Paths, outcome: Outcome) -> str | None:
    """The decision a reviewer took with ``wikilm approve``/``reject`` meanwhile, if any.

    The outcome then reports that decision rather than a stale "awaiting approval".
    """
    try:
        version = Registry(paths).version(outcome.model, outcome.version)
    except RegistryError:  # gone from the registry: nothing was decided on it
        return None
    state = version.tags.get(APPROVAL_TAG)
    if state in (None, "pending"):
        return None
    get_run_logger().info(
        "%s v%s was %s with the wikilm command", outcome.model, outcome.version, state
    )
    return state


class PausedForAnother(Exception):
    """The flow run is paused, under another version's key (the exception's argument)."""


def resume_waiting_run(run_id: str, answer: ApprovalForm, key: str) -> str:
    """Resume the flow run paused for a version (its pause ``key``) with the decision on it.

    Called after the decision is recorded: a run that cannot be resumed (finished, timed
    out, waiting for another version, its Prefect server unreachable) changes nothing about
    it, so this never raises. A run that waited for this version in the registry while
    Prefect was down may since have paused for the next version: Prefect would hand this
    answer to whatever pause is current, so a run paused under another key is left alone.

    Returns:
        What happened to the waiting run, for the reviewer.
    """
    from prefect.exceptions import NotPausedError, ObjectNotFound

    try:
        _resume_if_waiting_for(UUID(run_id), answer, key)
    except ObjectNotFound:
        reason = "this Prefect server does not know it"
    except NotPausedError:
        reason = "it is no longer paused"
    except PausedForAnother as error:
        reason = f"it now waits for another version ({error})"
    except FlowPauseTimeout:
        reason = "its pause has timed out"
    except Exception as error:  # noqa: BLE001 - any failure leaves the decision as recorded
        reason = f"{type(error).__name__}: {error}"
    else:
        return f"the Prefect flow run {run_id} waiting for it goes on"
    return f"the Prefect flow run {run_id} waiting for it was not resumed: {reason}"


def _resume_if_waiting_for(run_id: UUID, answer: ApprovalForm, key: str) -> None:
    """Resume ``run_id`` with ``answer`` if it is paused under ``key``.

    Raises:
        NotPausedError: the run is not paused.
        PausedForAnother: it is paused under another key.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import NotPausedError
    from prefect.flow_runs import resume_flow_run

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    if state is None or not state.is_paused():
        raise NotPausedError
    if state.state_details.pause_key != key:
        raise PausedForAnother(state.state_details.pause_key)
    resume_flow_run(run_id, run_input=answer.model_dump())
