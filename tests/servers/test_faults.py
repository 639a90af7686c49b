"""Faults of the shared servers, with nothing lost: each test fails without its handling."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from components.cli import execute
from components.core.errors import Unreachable
from tests.conftest import CPU_TRAINER, TINY_MODEL
from tests.servers.conftest import environment, plain_mlflow, prefect_client
from tests.servers.own_postgres import OwnPostgres
from tests.servers.processes import ServerProcess, free_port

pytestmark = pytest.mark.servers

PRETRAIN = {
    "batch_size": 8,
    "max_steps": 200,
    "warmup_steps": 5,
    "val_every": 100,
    "val_batches": 2,
    "checkpoint_every": 100,
    "log_every": 5,
}


@dataclass(frozen=True)
class Served:
    """A server this test may kill, and the URI clients use."""

    uri: str
    process: ServerProcess


@pytest.fixture
def mlflow_to_kill(databases, tmp_path) -> Iterator[Served]:
    """An ``mlflow server`` of this test's own, on PostgreSQL: the test kills it."""
    store, artifacts = databases.create("mlflow_fault"), (tmp_path / "artifacts").as_uri()
    uri, server = plain_mlflow(store, artifacts, environment(), tmp_path)
    server.start()
    yield Served(uri, server)
    server.stop()


def _pretrain_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("wikilm")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], "tags.`wikilm.stage` = 'pretrain'")


def _once_logging(uri: str, fault: Callable[[], None], seen: dict) -> None:
    """Cause ``fault`` once the stage's run on ``uri`` has training metrics."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            runs = _pretrain_runs(uri)
        except Exception:  # noqa: BLE001 - the server starting up: ask again
            runs = []
        if runs and "train/loss" in runs[0].data.metrics:
            seen["status_at_fault"] = runs[0].info.status
            fault()
            return
        time.sleep(0.2)


def _outage(kill: Callable[[], None], start: Callable[[], None], seconds: float):
    """A fault: ``kill``, then ``start`` again after ``seconds``."""

    def fault() -> None:
        kill()
        time.sleep(seconds)
        start()

    return fault


def _pretrain_in(root: Path, uri: str, monkeypatch, patience_s: int = 120) -> None:
    """Params for a short pretraining in ``root``, tracked on ``uri``."""
    params = {"model": TINY_MODEL, "trainer": CPU_TRAINER, "pretrain": PRETRAIN}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow's client retries for minutes itself; with its retries off, this outage outlasts
    # them, as a longer one would in production.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("WIKILM_TRACKING_PATIENCE_S", str(patience_s))
    monkeypatch.delenv("WIKILM_PARENT_RUN_ID", raising=False)


def _run_with(fault: Callable[[], None], uri: str, root: Path) -> tuple[int, dict]:
    """Pretrain in ``root`` while ``fault`` strikes once it logs: exit code, what was seen."""
    seen: dict = {}
    striker = threading.Thread(target=_once_logging, args=(uri, fault, seen))
    striker.start()
    code = execute("pretrain", root / "params.yaml", root)
    striker.join()
    assert seen.get("status_at_fault") == "RUNNING"  # it struck while the stage trained
    return code, seen


def _all_logged_once(uri: str, root: Path) -> None:
    """One finished run holding every logged step, as the stage's own plot has them."""
    from mlflow import MlflowClient

    (run,) = _pretrain_runs(uri)  # no second run
    assert run.info.status == "FINISHED"
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "train/loss")
    logged = sorted({m.step for m in history})
    written = [int(row["step"]) for row in csv.DictReader(_plot(root).open())]
    assert len(logged) == len(written) == PRETRAIN["max_steps"] // PRETRAIN["log_every"]


def test_mlflow_killed_mid_pretrain_loses_nothing(trained_workspace, mlflow_to_kill, monkeypatch):
    root = trained_workspace.root
    _pretrain_in(root, mlflow_to_kill.uri, monkeypatch)
    server = mlflow_to_kill.process
    code, _ = _run_with(_outage(server.kill, server.start, 4.0), mlflow_to_kill.uri, root)
    assert code == 0
    _all_logged_once(mlflow_to_kill.uri, root)


@pytest.fixture
def postgres_to_kill() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own (initdb): the test crashes it."""
    server = OwnPostgres.create()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def mlflow_on_own_postgres(postgres_to_kill, tmp_path) -> Iterator[str]:
    """An ``mlflow server`` whose store is the PostgreSQL server the test crashes: its URI."""
    store, artifacts = postgres_to_kill.create_database("mlflow"), (tmp_path / "artifacts")
    uri, server = plain_mlflow(store, artifacts.as_uri(), environment(), tmp_path)
    server.start()
    yield uri
    server.stop()


def test_postgresql_crashed_mid_pretrain_and_restarted_loses_nothing(
    trained_workspace, postgres_to_kill, mlflow_on_own_postgres, monkeypatch
):
    """SIGKILL to the database under the tracking server, then a restart (crash recovery)."""
    root, uri = trained_workspace.root, mlflow_on_own_postgres
    _pretrain_in(root, uri, monkeypatch)
    crash = _outage(postgres_to_kill.kill, postgres_to_kill.start, 4.0)
    code, _ = _run_with(crash, uri, root)
    assert code == 0
    _all_logged_once(uri, root)


def test_postgresql_gone_for_good_ends_the_stage_clearly_and_a_rerun_finishes(
    trained_workspace, postgres_to_kill, mlflow_on_own_postgres, monkeypatch, capsys
):
    root, uri = trained_workspace.root, mlflow_on_own_postgres
    _pretrain_in(root, uri, monkeypatch, patience_s=5)
    code, _ = _run_with(postgres_to_kill.kill, uri, root)
    assert code == Unreachable.exit_code  # a retry's business: the database may come back
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: pretrain: ")
    assert "127.0.0.1" in errors[0]
    postgres_to_kill.start()
    assert execute("pretrain", root / "params.yaml", root) == 0
    _all_logged_once(uri, root)


def _plot(root: Path) -> Path:
    return root / "plots" / "pretrain" / "train.csv"


def test_an_unreachable_postgresql_stops_the_run_before_anything(tmp_path):
    from tests.repository import quick_clone

    root = quick_clone(tmp_path / "repo")
    closed = free_port()  # nothing listens there
    secret = "s3cret-Pa55word"
    env = {
        "HOME": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MLFLOW_TRACKING_URI": f"postgresql://wikilm:{secret}@127.0.0.1:{closed}/mlflow",
    }
    done = subprocess.run(
        ["wikilm", "run"], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == Unreachable.exit_code
    (line,) = (done.stdout + done.stderr).splitlines()  # one line, no traceback
    assert line.startswith(
        f"error: run: the tracking store postgresql://wikilm:***@127.0.0.1:{closed}/mlflow "
        "cannot be reached: connection"
    )
    assert secret not in line
    # Nothing ran and nothing was recorded: no outputs, no local store, no file changed.
    assert not [p for p in ("data", "models", "mlruns", "mlflow.db") if (root / p).exists()]
    changed = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    )
    assert changed.stdout == ""


def _waiting_run(paths, model: str) -> str | None:
    from components.registry.store import WAITING_RUN_TAG, Registry

    registry = Registry(paths)
    versions = registry.client.search_model_versions(f"name = '{model}'")
    return next((v.tags[WAITING_RUN_TAG] for v in versions if WAITING_RUN_TAG in v.tags), None)


def _wait_for_pause(paths, model: str, flow: subprocess.Popen) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert flow.poll() is None, flow.communicate()
        if run_id := _waiting_run(paths, model):
            return run_id
        time.sleep(0.5)
    pytest.fail(f"the flow never paused for {model}")


def test_an_approval_after_a_prefect_crash_promotes_exactly_one_version(
    exported_workspace, prefect_server, monkeypatch
):
    from components.registry.store import CHAMPION, CLASSIFIER, LM, Registry

    root = exported_workspace.root
    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    flow = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.waiting_flow", str(root), "600"],
        # Prefect's client retries for about a minute itself; with its retries off, the
        # restart outlasts them, as a longer outage would in production.
        env=environment(
            WIKILM_USER="trainer-bot",
            PREFECT_API_URL=prefect_server.api_url,
            PREFECT_CLIENT_MAX_RETRIES="0",
        ),
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_id = _wait_for_pause(exported_workspace, CLASSIFIER, flow)
    prefect_server.process.kill()  # a crash (SIGKILL) while the run waits for approval
    prefect_server.process.start()  # same port, same PostgreSQL database
    (root / "params.yaml").write_text("promote: {approval: manual, min_margin_over_tfidf: -1.0}\n")
    reviewer = environment(WIKILM_USER="ana", PREFECT_API_URL=prefect_server.api_url)
    versions = {}
    for model in (CLASSIFIER, LM):
        _wait_for_pause(exported_workspace, model, flow)
        versions[model] = str(Registry(exported_workspace).alias(model, "challenger").version)
        approve = ["wikilm", "approve", model, versions[model], "--comment", "checked"]
        done = subprocess.run(approve, cwd=root, env=reviewer, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        # A run waiting in the registry may see the decision before the command resumes it,
        # and may even have paused for the LM already: that pause is not the command's to end.
        reports = "goes on|was not resumed: it (is no longer paused|now waits for another version)"
        assert re.search(f"waiting for it ({reports})", done.stdout), done.stdout
    output, _ = flow.communicate(timeout=180)
    assert flow.returncode == 0, output
    registry = Registry(exported_workspace)
    for model in (CLASSIFIER, LM):
        events = [e.action for e in registry.history(model)]
        assert events.count("approved") == 1
        assert events.count("registered") <= 1
        assert str(registry.alias(model, CHAMPION).version) == versions[model]
        assert len(registry.client.search_model_versions(f"name = '{model}'")) == 1
    with prefect_client(prefect_server.api_url) as prefect:
        assert prefect.read_flow_run(run_id).state.type.value == "COMPLETED"
