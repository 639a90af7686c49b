"""The promotion rules kept by the server (``mlflow server --app-name wikilm``), for any client.

Every bypass that MLflow's basic auth alone leaves open is tried here as the account that
would try it, with a plain ``MlflowClient`` or HTTP call, and shown refused with the champion
and the history unchanged. The server runs as deployed (infra/mlflow/serve.sh) on PostgreSQL
and S3; its rules (``WIKILM_SERVER_RULES``) are not the params.yaml of the client.
"""

from __future__ import annotations

import threading

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from components.registry.promotion import register_and_gate
from components.registry.store import (
    CHALLENGER,
    CHAMPION,
    CLASSIFIER,
    EVIDENCE_TAG,
    GATE_TAG,
    HISTORY_EXPERIMENT,
    TRIGGER_TAG,
    Registry,
)
from flows.cli import main
from tests.conftest import copy_workspace, make_params
from tests.servers.accounts import act_as, grant

pytestmark = pytest.mark.servers

# The pipeline's own params.yaml would promote at once and skip four-eyes: the server's
# rules (approval: manual, four-eyes) hold regardless.
LAX = {"approval": "auto", "four_eyes": False, "min_margin_over_tfidf": -1.0}


@pytest.fixture(scope="module")
def server(wikilm_mlflow_server):
    """The server, with ``reviewer`` and ``auditor`` in its reviewers' group (by the admin)."""
    with pytest.MonkeyPatch.context() as patch:
        act_as(patch, wikilm_mlflow_server, "admin")
        for user in ("reviewer", "auditor"):
            assert main(["reviewers", "add", user]) == 0
    return wikilm_mlflow_server


@pytest.fixture(scope="module")
def registered(server, exported_root, tmp_path_factory):
    """The pipeline's account registers a run; the server holds it for a reviewer.

    Other modules may have made a champion on the session's server: it is what it was.
    """
    champion_before = state(server)[0]
    with pytest.MonkeyPatch.context() as patch:
        act_as(patch, server, "trainer")
        paths = copy_workspace(exported_root, tmp_path_factory.mktemp("app") / "work")
        outcomes = register_and_gate(make_params(promote=LAX), paths)
    (classifier,) = [o for o in outcomes if o.model == CLASSIFIER]
    (paths.root / "params.yaml").write_text(f"promote: {LAX}\n")
    return paths, classifier, champion_before


@pytest.fixture
def workspace(registered, monkeypatch):
    """The registered workspace, the commands' working directory."""
    monkeypatch.chdir(registered[0].root)
    return registered[0]


@pytest.fixture
def pending(registered, workspace):
    """The classifier version awaiting approval."""
    return registered[1].version


def client_as(server, user: str) -> MlflowClient:
    """An MLflow client signed in as ``user`` (credentials in the URI)."""
    host = server.uri.removeprefix("http://")
    return MlflowClient(tracking_uri=f"http://{user}:{server.passwords[user]}@{host}")


def state(server, user: str = "viewer") -> tuple:
    """The classifier's champion and challenger, and its history, as ``user`` reads them."""
    try:
        aliases = client_as(server, user).get_registered_model(CLASSIFIER).aliases
    except MlflowException:  # not registered yet (MLflow's basic auth answers 403)
        aliases = {}
    history = http(server, user, "GET", "history", params={"model": CLASSIFIER}).json()
    return aliases.get(CHAMPION), aliases.get(CHALLENGER), history


def http(server, user: str, method: str, endpoint: str, **request) -> requests.Response:
    """A plain HTTP call to the server's wikilm endpoints as ``user``."""
    auth = (user, server.passwords[user])
    url = f"{server.uri}/wikilm/api/{endpoint}"
    return requests.request(method, url, auth=auth, timeout=30, **request)


def refused(call, reason: str) -> None:
    """``call()`` raises MLflow's error with ``reason`` in its message."""
    with pytest.raises(MlflowException) as error:
        call()
    assert reason in error.value.message, error.value.message


def test_the_server_holds_the_version_whatever_the_pipeline_params_say(registered, server):
    paths, classifier, champion_before = registered
    # params.yaml said approval: auto; the server said manual, and judged by its own rules.
    assert classifier.status == "awaiting approval"
    assert classifier.decision.passed
    version = client_as(server, "viewer").get_model_version(CLASSIFIER, classifier.version)
    assert version.tags[GATE_TAG] == "passed"
    assert version.tags["wikilm.approval"] == "pending"
    champion, challenger, history = state(server)
    assert (champion, challenger) == (champion_before, classifier.version)
    gated = [(e["action"], e["version"], e["actor"]) for e in history][-1]
    assert gated == ("gate_passed", classifier.version, "trainer")


@pytest.mark.parametrize("user", ["trainer", "admin"])
def test_champion_never_moves_through_an_alias_call(pending, server, monkeypatch, user):
    before = state(server)
    act_as(monkeypatch, server, user)
    client = MlflowClient()
    reason = "champion moves only through the server's approve and rollback"
    refused(lambda: client.set_registered_model_alias(CLASSIFIER, CHAMPION, pending), reason)
    refused(lambda: client.delete_registered_model_alias(CLASSIFIER, CHAMPION), reason)
    # The same request through the MLflow UI's AJAX route.
    ajax = requests.post(
        f"{server.uri}/ajax-api/2.0/mlflow/registered-models/alias",
        json={"name": CLASSIFIER, "alias": CHAMPION, "version": pending},
        auth=(user, server.passwords[user]),
        timeout=30,
    )
    assert ajax.status_code == 403
    assert reason in ajax.json()["message"]
    assert state(server) == before


def test_only_the_pipeline_account_registers_and_sets_challenger(pending, server, monkeypatch):
    grant(server, "editor", "registered_model", CLASSIFIER, "MANAGE", monkeypatch)
    before = state(server)
    act_as(monkeypatch, server, "editor")
    client = MlflowClient()
    version = client.get_model_version(CLASSIFIER, pending)
    refused(
        lambda: client.set_registered_model_alias(CLASSIFIER, CHALLENGER, pending),
        "only the pipeline account (trainer) sets challenger",
    )
    refused(
        lambda: client.create_model_version(CLASSIFIER, version.source, run_id=version.run_id),
        "only the pipeline account (trainer) registers the wikilm models",
    )
    refused(lambda: client.delete_model_version(CLASSIFIER, pending), "never deleted")
    refused(lambda: client.rename_registered_model(CLASSIFIER, "mine"), "keep their names")
    assert state(server) == before


@pytest.mark.parametrize(
    ("key", "value"),
    [(TRIGGER_TAG, "someone-else"), (GATE_TAG, "failed"), (EVIDENCE_TAG, "{}")],
    ids=["author", "gate", "evidence"],
)
def test_the_pipeline_cannot_rewrite_what_it_recorded(pending, server, monkeypatch, key, value):
    before = state(server)
    act_as(monkeypatch, server, "trainer")  # MANAGE on the model: it created it
    client = MlflowClient()
    reason = "wikilm.* tags are written once"
    refused(lambda: client.set_model_version_tag(CLASSIFIER, pending, key, value), reason)
    refused(lambda: client.delete_model_version_tag(CLASSIFIER, pending, key), reason)
    assert client.get_model_version(CLASSIFIER, pending).tags[key] != value
    assert state(server) == before


def test_the_pipeline_cannot_promote_where_reviewers_approve(pending, server):
    before = state(server)
    answer = http(
        server, "trainer", "POST", "promote", json={"model": CLASSIFIER, "version": pending}
    )
    assert answer.status_code == 409
    assert "asks a reviewer to approve" in answer.json()["message"]
    assert state(server) == before


@pytest.mark.parametrize("user", ["viewer", "editor"])
def test_only_the_reviewers_group_decides(pending, server, monkeypatch, capsys, user):
    # MANAGE on the model (editor) is not enough: the group is the server's setting.
    grant(server, "editor", "registered_model", CLASSIFIER, "MANAGE", monkeypatch)
    before = state(server)
    act_as(monkeypatch, server, user)
    for command in (["approve", CLASSIFIER, pending], ["reject", CLASSIFIER, pending]):
        assert main([*command, "--comment", "looks fine"]) != 0
        error = capsys.readouterr().err
        assert error.count("\n") == 1, error
        assert f"{user} is not in the reviewers' group" in error
    assert state(server) == before


def test_the_author_cannot_approve_even_in_the_group(pending, server, monkeypatch, capsys):
    before = state(server)
    act_as(monkeypatch, server, "admin")
    assert main(["reviewers", "add", "trainer"]) == 0
    try:
        act_as(monkeypatch, server, "trainer")  # its params.yaml says four_eyes: false
        assert main(["approve", CLASSIFIER, pending, "--comment", "mine"]) != 0
        assert "four-eyes rule: trainer registered" in capsys.readouterr().err
    finally:
        act_as(monkeypatch, server, "admin")
        assert main(["reviewers", "remove", "trainer"]) == 0
    assert state(server) == before


def test_the_reviewer_is_who_signed_in_from_any_credential_source(
    pending, server, monkeypatch, capsys, tmp_path
):
    before = state(server)
    act_as(monkeypatch, server, "reviewer")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name)
    # Credentials in the URI ...
    host = server.uri.removeprefix("http://")
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"http://reviewer:{server.passwords['reviewer']}@{host}"
    )
    assert main(["approve", CLASSIFIER, pending, "--reviewer", "auditor", "--comment", "x"]) != 0
    assert "signed in to the tracking server as reviewer" in capsys.readouterr().err
    # ... and in MLflow's credentials file.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text(
        "[mlflow]\nmlflow_tracking_username = reviewer\n"
        f"mlflow_tracking_password = {server.passwords['reviewer']}\n"
    )
    assert main(["approve", CLASSIFIER, pending, "--reviewer", "auditor", "--comment", "x"]) != 0
    assert "signed in to the tracking server as reviewer" in capsys.readouterr().err
    assert state(server) == before


def test_the_history_has_no_endpoint_that_changes_it(pending, server, workspace, monkeypatch):
    before = state(server)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = http(server, "admin", method, "history", json={"model": CLASSIFIER})
        assert answer.status_code == 405, (method, answer.status_code)
    # Runs that look like the embedded store's history events are not the server's record.
    act_as(monkeypatch, server, "trainer")
    client = MlflowClient()
    experiment = client.create_experiment(HISTORY_EXPERIMENT)
    forged = {"model": CLASSIFIER, "action": "approved", "version": pending, "actor": "reviewer"}
    client.create_run(experiment, tags={f"wikilm.event.{k}": v for k, v in forged.items()})
    assert state(server) == before
    assert [e.action for e in Registry(workspace).history(CLASSIFIER)] == [
        e["action"] for e in before[2]
    ]


def test_racing_reviewers_leave_one_decision(pending, registered, server, workspace, monkeypatch):
    """Both race to decide the one pending version: exactly one decision is recorded."""
    answers = {}
    start = threading.Barrier(2)

    def decide(user: str, endpoint: str) -> None:
        start.wait()
        body = {"model": CLASSIFIER, "version": pending, "reason": f"{user} decides"}
        answers[user] = http(server, user, "POST", endpoint, json=body)

    racers = [
        threading.Thread(target=decide, args=("reviewer", "approve")),
        threading.Thread(target=decide, args=("auditor", "reject")),
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    codes = sorted(a.status_code for a in answers.values())
    assert codes == [200, 409], {u: a.text for u, a in answers.items()}
    champion, challenger, history = state(server)
    decided = ("approved", "rejected")
    decisions = [e for e in history if e["action"] in decided and e["version"] == pending]
    assert len(decisions) == 1
    (decision,) = decisions
    if decision["action"] == "approved":
        assert (champion, challenger) == (pending, pending)
        assert decision["actor"] == "reviewer"
    else:
        assert (champion, challenger) == (registered[2], None)
        assert decision["actor"] == "auditor"
    # The one record is what every reader sees.
    act_as(monkeypatch, server, "viewer")
    assert Registry(workspace).history(CLASSIFIER)[-1].action == decision["action"]
