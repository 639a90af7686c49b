"""A Prefect run that needs approval waits for the wikilm server's decision, not for a form.

The flow (tests/servers/waiting_flow.py, its own process, on ``prefect server``) registers an
export as the pipeline account on ``mlflow server --app-name wikilm``; a reviewer decides with
``wikilm approve``/``reject`` under their own account; the run resumes on the server's
decision and completes, without ever pausing for Prefect's approval form.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from components.registry.store import CHAMPION, CLASSIFIER, LM
from flows.cli import main
from tests.conftest import copy_workspace
from tests.servers.accounts import act_as
from tests.servers.conftest import environment, prefect_client

pytestmark = pytest.mark.servers
MODELS = (CLASSIFIER, LM)
REPO = Path(__file__).resolve().parents[2]


def versions(server, model: str) -> list[dict]:
    """Every version of ``model`` with where it stands, as the server shows it."""
    answer = requests.get(
        f"{server.uri}/wikilm/api/versions",
        params={"model": model},
        auth=("viewer", server.passwords["viewer"]),
        timeout=30,
    )
    return answer.json() if answer.status_code == 200 else []  # 403: no such model yet


def newest(server) -> dict[str, int]:
    """The newest version number of each model (0: none)."""
    return {m: max((int(v["version"]) for v in versions(server, m)), default=0) for m in MODELS}


def wait_until_pending(server, flow: subprocess.Popen, before: dict[str, int]) -> dict[str, str]:
    """The versions the flow registered, once both await a reviewer."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert flow.poll() is None, flow.communicate()
        pending = {
            m: v["version"]
            for m in MODELS
            for v in versions(server, m)
            if v["status"] == "pending" and int(v["version"]) > before[m]
        }
        if len(pending) == len(MODELS):
            return pending
        time.sleep(1)
    pytest.fail("the flow never registered both models for approval")


def test_the_flow_resumes_on_the_servers_decision(
    wikilm_mlflow_server, prefect_server, exported_root, tmp_path, monkeypatch
):
    server = wikilm_mlflow_server
    act_as(monkeypatch, server, "admin")
    assert main(["reviewers", "add", "reviewer"]) == 0
    paths = copy_workspace(exported_root, tmp_path / "work")
    before = newest(server)  # other modules may have registered versions on this server
    flow = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.waiting_flow", str(paths.root), "600"],
        env=environment(**server.credentials("trainer"), PREFECT_API_URL=prefect_server.api_url),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pending = wait_until_pending(server, flow, before)
    (paths.root / "params.yaml").write_text("promote: {four_eyes: false}\n")  # not the rules
    reviewer = environment(**server.credentials("reviewer"))
    decisions = {CLASSIFIER: "approve", LM: "reject"}
    for model, version in pending.items():
        command = ["wikilm", decisions[model], model, version, "--comment", "reviewed"]
        done = subprocess.run(command, cwd=paths.root, env=reviewer, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    output, _ = flow.communicate(timeout=240)
    assert flow.returncode == 0, output
    assert f"{CLASSIFIER} v{pending[CLASSIFIER]} was approved on the tracking server" in output
    assert "status='approved'" in output
    aliases = requests.get(
        f"{server.uri}/api/2.0/mlflow/registered-models/get",
        params={"name": CLASSIFIER},
        auth=("viewer", server.passwords["viewer"]),
        timeout=30,
    ).json()["registered_model"]["aliases"]
    assert {a["alias"]: a["version"] for a in aliases}[CHAMPION] == pending[CLASSIFIER]
    with prefect_client(prefect_server.api_url) as prefect:
        (run,) = prefect.read_flow_runs()[-1:]
        states = {s.type.value for s in prefect.read_flow_run_states(run.id)}
    assert run.state.type.value == "COMPLETED"
    assert "PAUSED" not in states  # no form: the server's decision resumed it
