"""The registry on a real MLflow server: PostgreSQL store, S3 artifacts, other checkouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.registry.promotion import register_and_gate
from components.registry.store import CHAMPION, CLASSIFIER, LM
from tests.conftest import MECHANICS_GATE, make_params

pytestmark = pytest.mark.servers


@pytest.fixture
def on_server(mlflow_server, monkeypatch):
    """This process tracks to the server, as a client with only its URI would."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for name in ("WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    return mlflow_server


def test_versions_and_their_artifacts_land_on_the_server(exported_workspace, on_server, s3):
    from mlflow import MlflowClient

    outcomes = register_and_gate(make_params(promote=MECHANICS_GATE), exported_workspace)
    assert [(o.model, o.status) for o in outcomes] == [(CLASSIFIER, "promoted"), (LM, "promoted")]
    client = MlflowClient(on_server.uri)
    champion = client.get_model_version_by_alias(CLASSIFIER, CHAMPION)
    assert champion.version == outcomes[0].version
    assert champion.tags["wikilm.triggered_by"] == "trainer-bot"
    # Artifacts went through the server into its bucket: the client holds no S3 keys.
    listed = s3.client().list_objects_v2(Bucket=on_server.bucket).get("Contents", [])
    names = {Path(item["Key"]).name for item in listed}
    assert {"classifier.onnx", "lm.onnx", "tokenizer.json", "MLmodel"} <= names
    assert not (exported_workspace.root / "mlflow.db").exists()  # nothing tracked locally


def test_another_checkout_with_only_the_uri_predicts_with_the_champion(
    exported_workspace, on_server, tmp_path
):
    register_and_gate(make_params(promote=MECHANICS_GATE), exported_workspace)
    elsewhere = tmp_path / "elsewhere"  # no models, no data, no store: a fresh checkout
    elsewhere.mkdir()
    (elsewhere / "params.yaml").write_text("{}\n")
    env = {
        "HOME": os.environ["HOME"],
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MLFLOW_TRACKING_URI": on_server.uri,
    }
    done = subprocess.run(
        ["wikilm", "predict", "A wonderful, moving film."],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    label, probability, text = done.stdout.strip().split("\t")
    assert label in {"neg", "pos"}
    assert 0.5 <= float(probability) <= 1.0
    assert text == "A wonderful, moving film."
