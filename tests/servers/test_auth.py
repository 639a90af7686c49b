"""Reviewers on a tracking server with basic auth: accounts, MANAGE permission, four-eyes."""

from __future__ import annotations

import pytest

from components.registry.promotion import register_and_gate
from components.registry.store import (
    CHALLENGER,
    CHAMPION,
    CLASSIFIER,
    HISTORY_EXPERIMENT,
    Registry,
)
from flows.cli import main
from tests.conftest import MECHANICS_GATE, copy_workspace, make_params
from tests.servers.accounts import act_as, grant

pytestmark = pytest.mark.servers

MANUAL = {**MECHANICS_GATE, "approval": "manual", "four_eyes": True}


@pytest.fixture(scope="module")
def registered(auth_mlflow_server, exported_root, tmp_path_factory):
    """A classifier version awaiting approval, registered once by the pipeline's account.

    The refusals below leave it pending; the one test that approves it runs last.
    """
    with pytest.MonkeyPatch.context() as patch:
        act_as(patch, auth_mlflow_server, "trainer")
        paths = copy_workspace(exported_root, tmp_path_factory.mktemp("auth") / "work")
        outcomes = register_and_gate(make_params(promote=MANUAL), paths)
    (classifier,) = [o for o in outcomes if o.model == CLASSIFIER]
    assert classifier.status == "awaiting approval"
    (paths.root / "params.yaml").write_text(f"promote: {MANUAL}\n")
    return paths, classifier.version


@pytest.fixture
def exported_workspace(registered, monkeypatch):
    """The registered workspace, the commands' working directory."""
    monkeypatch.chdir(registered[0].root)
    return registered[0]


@pytest.fixture
def pending(registered, exported_workspace):
    """The version awaiting approval."""
    return registered[1]


def decide(*args: str) -> int:
    return main([*args, "--comment", "reviewed"])


def aliases(paths) -> tuple[str | None, str | None]:
    registry = Registry(paths)
    found = [registry.alias(CLASSIFIER, alias) for alias in (CHAMPION, CHALLENGER)]
    return tuple(None if v is None else str(v.version) for v in found)


@pytest.mark.parametrize(
    ("user", "permission"), [("viewer", None), ("editor", "EDIT")], ids=["read", "edit"]
)
def test_approve_reject_and_rollback_need_manage(
    pending, exported_workspace, auth_mlflow_server, monkeypatch, capsys, user, permission
):
    if permission:
        grant(auth_mlflow_server, user, "registered_model", CLASSIFIER, permission, monkeypatch)
    act_as(monkeypatch, auth_mlflow_server, user)
    before = aliases(exported_workspace)
    for command in (
        ("approve", CLASSIFIER, pending),
        ("reject", CLASSIFIER, pending),
        ("rollback", CLASSIFIER),
    ):
        assert decide(*command) != 0
        error = capsys.readouterr().err
        assert error.count("\n") == 1, error  # one line, no traceback
        assert f"{user} has {permission or 'READ'} permission on {CLASSIFIER}" in error
        assert "need MANAGE" in error
    assert aliases(exported_workspace) == before == (None, pending)


def test_the_runs_author_cannot_approve_it_even_with_manage(
    pending, exported_workspace, auth_mlflow_server, monkeypatch, capsys
):
    # The pipeline's account created the model, so MLflow gave it MANAGE on it.
    act_as(monkeypatch, auth_mlflow_server, "trainer")
    assert decide("approve", CLASSIFIER, pending) != 0
    assert "four-eyes rule: trainer triggered the run" in capsys.readouterr().err
    assert aliases(exported_workspace) == (None, pending)


def test_a_reviewer_with_manage_approves_as_themselves_only(
    pending, exported_workspace, auth_mlflow_server, monkeypatch, capsys
):
    grant(auth_mlflow_server, "reviewer", "registered_model", CLASSIFIER, "MANAGE", monkeypatch)
    act_as(monkeypatch, auth_mlflow_server, "reviewer")
    assert decide("approve", CLASSIFIER, pending, "--reviewer", "trainer2") != 0
    assert "signed in to the tracking server as reviewer" in capsys.readouterr().err
    # MANAGE on the model, but the decision could not be recorded: refused before any change.
    assert decide("approve", CLASSIFIER, pending) != 0
    error = capsys.readouterr().err
    assert f"reviewer has READ permission on the experiment {HISTORY_EXPERIMENT}" in error
    assert aliases(exported_workspace) == (None, pending)
    history = Registry(exported_workspace).client.get_experiment_by_name(HISTORY_EXPERIMENT)
    grant(auth_mlflow_server, "reviewer", "experiment", history.experiment_id, "EDIT", monkeypatch)

    assert decide("approve", CLASSIFIER, pending) == 0
    assert aliases(exported_workspace)[0] == pending
    approved = Registry(exported_workspace).history(CLASSIFIER)[-1]
    assert (approved.action, approved.actor) == ("approved", "reviewer")
