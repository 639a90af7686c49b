"""``wikilm serve`` (mlflow models serve) answers REST predictions from the champion."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from components.core.tracking_server import tracking_uri
from components.registry.champion import champion_predictor
from components.registry.promotion import register_and_gate
from components.registry.store import CLASSIFIER
from tests.conftest import MECHANICS_GATE, make_params


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail("the server did not come up")


def test_serve_answers_rest_predictions_from_the_champion(
    exported_workspace, monkeypatch, tmp_path
):
    paths = exported_workspace
    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_MODEL_CACHE", str(tmp_path / "cache"))
    register_and_gate(make_params(promote=MECHANICS_GATE), paths)
    # The logged model holds code and data only: what the server loads is never unpickled.
    assert not list((paths.root / "mlartifacts").rglob("*.pkl"))
    (paths.root / "params.yaml").write_text("{}\n")
    port = _free_port()
    command = [sys.executable, "-m", "flows.cli", "serve", "wikilm-classifier", "--port", str(port)]
    server = subprocess.Popen(
        command,
        cwd=paths.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        texts = ["A gripping, beautifully acted film.", "Dull and far too long."]
        answer = _post(
            f"http://127.0.0.1:{port}/invocations",
            {"dataframe_records": [{"text": t} for t in texts]},
        )
        rows = answer["predictions"]
        assert len(rows) == 2
        for row in rows:
            assert row["label"] in {"neg", "pos"}
            assert row["probability_neg"] + row["probability_pos"] == pytest.approx(1.0, abs=1e-5)
            assert row["probability"] == max(row["probability_neg"], row["probability_pos"])
        # The same answers as `wikilm predict`'s, which loads the graph itself.
        expected = champion_predictor(tracking_uri(paths.root), CLASSIFIER).predict(texts)
        assert [row["label"] for row in rows] == expected.labels
        served = [row["probability"] for row in rows]
        assert served == pytest.approx(expected.probability.tolist(), abs=1e-7)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
        server.wait(timeout=30)
