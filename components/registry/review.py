"""A reviewer's decisions: approve or reject a challenger, roll back the champion.

On the embedded store (or a server without the wikilm app) they are checked here: the gate,
the pending state, the four-eyes rule of ``promote:`` and the reviewer's MANAGE permission.
Where the tracking server runs the wikilm app, the server decides: each call goes to its
endpoints as the signed-in account, and its rules, not params.yaml's, apply.
"""

from __future__ import annotations

from components.core.paths import Paths
from components.registry.access import acting_reviewer, require_manage
from components.registry.params import RegistrySections
from components.registry.remote import ServerApp
from components.registry.store import (
    APPROVAL_TAG,
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    TRIGGER_TAG,
    Registry,
    RegistryError,
    replaced_champion,
)


def who_decides(paths: Paths, requested: str | None) -> str:
    """The reviewer a decision is recorded for: with the wikilm app, the signed-in account.

    Raises:
        RegistryError: ``requested`` is not the account signed in to the tracking server.
    """
    registry = Registry(paths)
    if registry.server is None:
        return acting_reviewer(requested)
    return _signed_in_as(registry.server, requested)


def _signed_in_as(server: ServerApp, requested: str | None) -> str:
    if requested and requested != server.user:
        raise RegistryError(
            f"signed in to the tracking server as {server.user}: a decision cannot be "
            f"recorded as {requested} (leave out --reviewer, or sign in as {requested})"
        )
    return server.user


def approve(
    paths: Paths, params: RegistrySections, model: str, version: str, reviewer: str, comment: str
) -> None:
    """A reviewer's approval: checks gate, pending state and four-eyes, then promotes.

    Raises:
        RegistryError: unknown version, gate failed, not awaiting approval, the reviewer
            triggered the run while the four-eyes rule is on, or the server does not let
            the reviewer decide (see ``access``).
    """
    registry = Registry(paths)
    if registry.server is not None:
        _signed_in_as(registry.server, reviewer)
        registry.server.post("approve", model=model, version=str(version), reason=comment)
        return
    reviewer = authorised(registry, model, reviewer)
    target = registry.version(model, version)
    if target.tags.get(GATE_TAG) != "passed":
        raise RegistryError(f"{model} v{version} did not pass the gate: it cannot be approved")
    if target.tags.get(APPROVAL_TAG) != "pending":
        state = target.tags.get(APPROVAL_TAG, "not submitted for approval")
        raise RegistryError(f"{model} v{version} is not awaiting approval ({state})")
    if params.promote.four_eyes and reviewer == target.tags.get(TRIGGER_TAG):
        raise RegistryError(
            f"four-eyes rule: {reviewer} triggered the run of {model} v{version} and cannot "
            "approve it; another reviewer must (promote.four_eyes)"
        )
    _check_still_current(registry, model, str(version))
    # The move first: should it fail, the version is still pending, and can be approved.
    registry.move_champion(model, version, "approved", comment, reviewer)
    for key, value in {APPROVAL_TAG: "approved", "wikilm.approval.by": reviewer}.items():
        registry.client.set_model_version_tag(model, version, key, value)
    registry.client.set_model_version_tag(model, version, "wikilm.approval.comment", comment)


def _check_still_current(registry: Registry, model: str, version: str) -> None:
    """A pending version may be approved only as gated: the challenger, same champion.

    Raises:
        RegistryError: a newer version was registered since, or the champion changed since
            the gate compared the version with it.
    """
    challenger = registry.alias(model, CHALLENGER)
    if challenger is None or str(challenger.version) != version:
        newer = f"v{challenger.version} is" if challenger else "none is"
        raise RegistryError(
            f"{model} v{version} is no longer the challenger ({newer}): approve the newest "
            "version, or rerun the pipeline"
        )
    gated = [e for e in registry.history(model) if e.action == "gate_passed"]
    gate = next((e for e in reversed(gated) if e.version == version), None)
    champion = registry.alias(model, CHAMPION)
    now = str(champion.version) if champion else None
    if gate is not None and gate.champion_before != now:
        raise RegistryError(
            f"the champion of {model} changed since v{version} was gated (v"
            f"{gate.champion_before or '-'} then, v{now or '-'} now): rerun the pipeline to "
            "gate it against the current champion"
        )


def reject(paths: Paths, model: str, version: str, reviewer: str, comment: str) -> None:
    """A reviewer's rejection: the version leaves ``challenger`` and is recorded as rejected.

    Raises:
        RegistryError: the version is the champion (roll it back instead), was already
            approved or rejected, or the server does not let the reviewer decide.
    """
    registry = Registry(paths)
    if registry.server is not None:
        _signed_in_as(registry.server, reviewer)
        registry.server.post("reject", model=model, version=str(version), reason=comment)
        return
    reviewer = authorised(registry, model, reviewer)
    target = registry.version(model, version)
    decided = target.tags.get(APPROVAL_TAG)
    if decided in ("approved", "rejected"):
        raise RegistryError(f"{model} v{version} was already {decided}")
    with registry.locked(model):
        champion = registry.alias(model, CHAMPION)
        if champion is not None and str(champion.version) == str(version):
            raise RegistryError(
                f"{model} v{version} is the champion: use 'wikilm rollback {model}' to replace it"
            )
        registry.client.set_model_version_tag(model, version, APPROVAL_TAG, "rejected")
        registry.client.set_model_version_tag(model, version, "wikilm.approval.by", reviewer)
        challenger = registry.alias(model, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            registry.client.delete_registered_model_alias(model, CHALLENGER)
        registry.record(
            model,
            "rejected",
            version,
            comment,
            champion.version if champion else None,
            actor=reviewer,
        )


def rollback(paths: Paths, model: str, actor: str, reason: str) -> str:
    """Restore the champion the current one replaced; returns its version.

    Repeated rollbacks walk further back along the promotions and approvals (a rollback
    is not an arrival to return from), skipping versions rejected since.

    Raises:
        RegistryError: no champion, no earlier champion to return to, or the server does
            not let ``actor`` decide.
    """
    registry = Registry(paths)
    if registry.server is not None:
        _signed_in_as(registry.server, actor)
        return registry.server.post("rollback", model=model, reason=reason)["version"]
    actor = authorised(registry, model, actor)
    current = registry.alias(model, CHAMPION)
    if current is None:
        raise RegistryError(f"{model} has no champion to roll back")
    target = _replaced(registry, model, str(current.version))
    if target is None:
        raise RegistryError(f"{model} v{current.version} has no earlier champion to roll back to")
    registry.move_champion(model, target, "rollback", reason, actor)
    return target


def authorised(registry: Registry, model: str, reviewer: str | None) -> str:
    """The reviewer who may decide on ``model``, checked against the server's accounts."""
    acting = acting_reviewer(reviewer)
    require_manage(registry, model, acting)
    return acting


def _replaced(registry: Registry, model: str, version: str) -> str | None:
    """The champion that ``version`` replaced when promoted or approved, not rejected since."""

    def rejected(number: str) -> bool:
        return registry.version(model, number).tags.get(APPROVAL_TAG) == "rejected"

    return replaced_champion(registry.history(model), version, rejected)
