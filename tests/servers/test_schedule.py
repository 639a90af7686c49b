"""Scheduled retraining as an operator runs it: ``wikilm deploy`` against a Prefect server.

The server is ``prefect server start`` with its services on, so its scheduler creates the
deployment's runs and ``wikilm deploy`` (the served deployment) picks them up. The checkout
is a copy of one the pipeline has already run in, so a scheduled run finds every stage up to
date and finishes in seconds, as a weekly run with no new dump does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.conftest import environment
from tests.servers.test_pipeline_on_servers import prefect_api

pytestmark = pytest.mark.servers

DEPLOYMENT = "every-minute"
# One minute to the first cron tick, seconds to run it: the "within two minutes".
WAIT_S = 150


@dataclass(frozen=True)
class Deployed:
    """The checkout that serves the deployment, and its output so far."""

    root: Path
    log: Path


@pytest.fixture(scope="module")
def deployed(pipeline_repo, prefect_server, tmp_path_factory) -> Iterator[Deployed]:
    """``wikilm deploy --cron "* * * * *"`` serving from a copy of a checkout already run."""
    folder = tmp_path_factory.mktemp("scheduled")
    root = folder / "repo"
    shutil.copytree(pipeline_repo, root, symlinks=True)
    log = folder / "deploy.log"
    env = environment(
        PREFECT_API_URL=prefect_server.api_url,
        # A store of its own: the copy's mlflow.db records the original's artifact folder.
        MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}",
        DVC_NO_ANALYTICS="1",
    )
    command = ["wikilm", "deploy", "--cron", "* * * * *", "--name", DEPLOYMENT]
    with log.open("w") as output:
        serving = subprocess.Popen(
            command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    yield Deployed(root, log)
    os.killpg(serving.pid, signal.SIGTERM)
    serving.wait(timeout=60)


def _scheduled_runs(prefect_server) -> list[dict]:
    query = {"deployments": {"name": {"any_": [DEPLOYMENT]}}}
    return prefect_api(prefect_server, "flow_runs/filter", query)


@pytest.fixture(scope="module")
def completed_run(deployed, prefect_server) -> dict:
    """The first scheduled run to complete (the test fails if none does in time)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        runs = _scheduled_runs(prefect_server)
        failed = [r for r in runs if r["state_type"] in {"FAILED", "CRASHED"}]
        assert not failed, deployed.log.read_text()
        if done := [r for r in runs if r["state_type"] == "COMPLETED"]:
            return done[0]
        time.sleep(3)
    states = sorted({r["state_name"] for r in _scheduled_runs(prefect_server)})
    log = deployed.log.read_text()[-4000:]
    pytest.fail(f"no scheduled run completed in {WAIT_S} s (runs: {states}):\n{log}")


def test_an_auto_scheduled_run_completes_within_two_minutes(completed_run, prefect_server):
    # Created by the server's scheduler, not by a manual trigger.
    assert completed_run["auto_scheduled"]
    # The scheduler keeps runs ahead: the next ones are already waiting.
    assert any(r["state_type"] == "SCHEDULED" for r in _scheduled_runs(prefect_server))


def _prefect_json(prefect_server, *args: str) -> list[dict]:
    """What ``prefect <args> -o json`` prints, against the server (the command must succeed)."""
    env = environment(PREFECT_API_URL=prefect_server.api_url)
    done = subprocess.run(
        ["prefect", *args, "-o", "json"],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_prefect_lists_the_deployment_and_its_runs(completed_run, prefect_server):
    deployments = _prefect_json(prefect_server, "deployment", "ls")
    assert DEPLOYMENT in [d["name"] for d in deployments]
    runs = _prefect_json(
        prefect_server, "flow-run", "ls", "--flow-name", "wikilm-pipeline", "--limit", "200"
    )
    assert completed_run["id"] in [r["id"] for r in runs]
