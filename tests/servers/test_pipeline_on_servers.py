"""The whole pipeline against the team's servers, and a second checkout that uses its results.

``wikilm run`` (the Prefect flow, tiny training) runs in a fresh copy signed in to MLflow
with basic auth (PostgreSQL store, S3 artifacts) as the pipeline's account, recorded on a
Prefect server on PostgreSQL; DVC pushes its outputs to the S3 remote ``shared``. A clone
then pulls them and finds nothing to rerun, and predicts with the champion from the server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.repository import STAGES, quick_clone, run_command
from tests.servers.conftest import S3_KEYS

pytestmark = pytest.mark.servers

DVC_BUCKET = "dvc"  # .dvc/config's remote "shared": s3://dvc/wikilm
# The server run and the embedded run go side by side, on one core's worth of threads each.
ONE_THREAD = ("OMP_NUM_THREADS", "1")


@dataclass(frozen=True)
class ServedRun:
    """The copy that ran against the servers, and what the run printed."""

    root: Path
    output: str
    env: dict[str, str]


def client_env(server, user: str, s3, prefect_server=None) -> dict[str, str]:
    """What a user's shell holds: only the servers' addresses and the user's credentials."""
    env = {
        "HOME": os.environ["HOME"],
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        **server.credentials(user),
        **S3_KEYS,  # the DVC remote's credentials
        "AWS_ENDPOINT_URL": s3.endpoint,
    }
    if prefect_server is not None:
        env["PREFECT_API_URL"] = prefect_server.api_url
    return env


@pytest.fixture(scope="module")
def served(auth_mlflow_server, prefect_server, s3, tmp_path_factory, request) -> ServedRun:
    """``wikilm run`` against the servers as ``trainer``, then ``dvc push`` to the remote."""
    s3.client().create_bucket(Bucket=DVC_BUCKET)
    root = quick_clone(tmp_path_factory.mktemp("served") / "repo")
    env = client_env(auth_mlflow_server, "trainer", s3, prefect_server) | dict([ONE_THREAD])
    running = subprocess.Popen(
        ["wikilm", "run"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(*ONE_THREAD)  # the embedded run it is compared with
        request.getfixturevalue("pipeline_repo")
    output = running.communicate(timeout=1800)[0].decode()
    assert running.returncode == 0, output
    run_command(["dvc", "push", "-r", "shared"], root, env)
    run_command(["git", "commit", "-qam", "pipeline run"], root, env)
    return ServedRun(root, output, env)


def test_runs_metrics_and_versions_land_on_the_servers(served, auth_mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    for name, value in auth_mlflow_server.credentials("viewer").items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(auth_mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("wikilm").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["wikilm.stage"] == "pipeline"]
    assert parent.info.status == "FINISHED"
    assert parent.info.user_id == "trainer"  # the signed-in account, not the login name
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["wikilm.stage"] for r in children) == sorted([*STAGES, "register"])
    assert all(r.info.status == "FINISHED" for r in children)
    assert parent.data.metrics["evaluate.lm.val.bits_per_byte"] > 0
    champion = client.get_model_version_by_alias("wikilm-classifier", "champion")
    assert champion.tags["wikilm.triggered_by"] == "trainer"
    assert re.search(rf"wikilm-classifier +v{champion.version}: promoted", served.output)


def test_the_flow_run_is_recorded_on_the_prefect_server(served, prefect_server):
    flows = {
        "flows": {"name": {"any_": ["wikilm-pipeline"]}},
        "flow_runs": {"deployment_id": {"is_null_": True}},  # not a scheduled run
    }
    (run,) = prefect_api(prefect_server, "flow_runs/filter", flows)
    assert run["state_type"] == "COMPLETED"
    # Each stage's task logged its stage's last line there.
    lines = "\n".join(_prefect_logs(prefect_server, {"flow_run_id": {"any_": [run["id"]]}}))
    assert [stage for stage in STAGES if f"{stage} finished in" not in lines] == []


def prefect_api(prefect_server, path: str, body: dict) -> list[dict]:
    """What the Prefect server's REST API answers to a filter query."""
    import httpx

    answer = httpx.post(f"{prefect_server.api_url}/{path}", json={"limit": 200, **body})
    answer.raise_for_status()
    return answer.json()


def _lock(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["stages"]


def _outs(stage: dict) -> list:
    """Outputs, less the metrics files: they hold wall-clock seconds and latencies."""
    return [o for o in stage["outs"] if not o["path"].startswith("metrics/")]


def _threads(metrics_dir: Path) -> int:
    return json.loads((metrics_dir / "pretrain.json").read_text())["threads"]


def test_the_run_leaves_the_same_dvc_lock_as_the_embedded_run(served, pipeline_repo):
    embedded = _lock(pipeline_repo.parent / "dvc.lock.after-run")
    here = _lock(served.root / "dvc.lock")
    assert list(here) == list(embedded) == STAGES
    # The last bits of CPU training depend on torch's thread count: the same here as there,
    # or a test that ran before left its own setting in the environment (Dask does).
    assert _threads(served.root / "metrics") == _threads(pipeline_repo.parent / "metrics.after-run")
    for stage in STAGES:  # the same commands, params, code and data; the same bytes out
        assert here[stage]["cmd"] == embedded[stage]["cmd"], stage
        assert here[stage].get("params") == embedded[stage].get("params"), stage
        assert here[stage]["deps"] == embedded[stage]["deps"], stage
        assert _outs(here[stage]) == _outs(embedded[stage]), stage


def test_a_clone_pulls_the_outputs_and_has_nothing_to_rerun(
    served, auth_mlflow_server, s3, tmp_path
):
    clone = tmp_path / "clone"
    env = client_env(auth_mlflow_server, "viewer", s3)
    run_command(["git", "clone", "-q", str(served.root), str(clone)], tmp_path, env)
    assert not (clone / "models").exists()
    run_command(["dvc", "pull", "-r", "shared"], clone, env)
    assert (clone / "models" / "export" / "classifier.onnx").is_file()
    status = run_command(["dvc", "status"], clone, env).stdout
    assert "Data and pipelines are up to date." in status
    shown = run_command(["wikilm", "status"], clone, env).stdout
    assert "Data and pipelines are up to date." in shown
    champion = next(line for line in shown.splitlines() if "wikilm-classifier  champion" in line)
    assert "(gate passed)" in champion
    predicted = run_command(["wikilm", "predict", "A moving, beautiful film."], clone, env)
    assert predicted.stdout.strip().endswith("\tA moving, beautiful film.")


def test_no_secret_reaches_logs_params_or_tags(
    served, auth_mlflow_server, prefect_server, monkeypatch
):
    secrets = [*auth_mlflow_server.passwords.values(), S3_KEYS["AWS_SECRET_ACCESS_KEY"]]
    texts = [served.output, auth_mlflow_server.process.output(), prefect_server.process.output()]
    texts += [p.read_text(errors="replace") for p in _text_files(served.root)]
    for name, value in auth_mlflow_server.credentials("admin").items():
        monkeypatch.setenv(name, value)
    texts += _tracked_texts(auth_mlflow_server.uri)
    texts += _prefect_logs(prefect_server)
    assert len(texts) > 50  # the run's output, files, every run's data and the flow's logs
    for secret in secrets:
        assert not [text for text in texts if secret in text]


def _text_files(root: Path) -> list[Path]:
    """Files a run leaves that a person might share: params, locks, metrics, meta, configs."""
    patterns = ["*.yaml", "*.lock", "metrics/*.json", "**/meta.json", ".dvc/config*"]
    return [p for pattern in patterns for p in root.glob(pattern) if p.is_file()]


def _tracked_texts(uri: str) -> list[str]:
    """Params and tags of every MLflow run, and tags of every model version."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    texts = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=5000):
            texts += [str(run.data.params), str(run.data.tags)]
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            texts.append(str(version.tags))
    return texts


def _prefect_logs(prefect_server, only: dict | None = None) -> list[str]:
    """The log lines the Prefect server holds (``only``: a log filter), 200 per request."""
    messages: list[str] = []
    query = {"logs": only} if only else {}
    while page := prefect_api(prefect_server, "logs/filter", {**query, "offset": len(messages)}):
        messages += [log["message"] for log in page]
    return messages
