"""Alias and serving digest read without MLflow: from SQLite, and from a real tracking server."""

import secrets
import shutil
import sys

import numpy as np
import pytest

from components.core.errors import Unreachable
from components.core.paths import Paths
from components.core.tracking_server import tracking_uri
from components.registry.champion import champion_predictor
from components.registry.packaging import artifacts
from components.registry.promotion import register_and_gate
from components.registry.resolve import Resolved, auth_headers, from_client, from_sqlite, resolve
from components.registry.store import CHAMPION, CLASSIFIER, LM, RegistryError
from components.serving.predictor import Classifier, ServedFiles
from flows.cli import main
from tests.conftest import MECHANICS_GATE, copy_workspace, make_params, registered_copy
from tests.servers.processes import ServerProcess, free_port

TEXTS = ["A gripping, beautifully acted film.", "Dull and far too long."]
CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No store, credentials or MLflow settings of the machine; a model cache of its own."""
    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING", *CREDENTIALS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.mlflow/credentials
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    monkeypatch.setenv("WIKILM_MODEL_CACHE", str(tmp_path / "cache"))


def _register(paths: Paths) -> None:
    register_and_gate(make_params(promote={**MECHANICS_GATE, "approval": "auto"}), paths)


@pytest.fixture(scope="module")
def registered(tmp_path_factory, exported_root) -> Paths:
    """Both models registered and promoted on the embedded store."""
    return registered_copy(exported_root, tmp_path_factory.mktemp("registered") / "work")


def test_sqlite_answers_as_mlflow_does(registered):
    uri = tracking_uri(registered.root)
    for model, alias in [(CLASSIFIER, CHAMPION), (LM, CHAMPION), (LM, "challenger")]:
        found = from_sqlite(uri, model, alias)
        assert found == from_client(uri, model, alias)
        assert found.version == "1"
        assert len(found.digest) == 64
    assert from_client(uri, CLASSIFIER, "nobody") is None
    assert from_sqlite(uri, CLASSIFIER, "nobody") is None
    assert from_sqlite(uri, "no-such-model", CHAMPION) is None


@pytest.mark.parametrize(
    ("env", "credentials_file", "uri", "expected"),
    [
        ({}, None, "http://h:5000", {}),
        (
            {"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "s3cret"},
            None,
            "http://h:5000",
            {"Authorization": "Basic YW5hOnMzY3JldA=="},
        ),
        (
            {},
            "[mlflow]\nmlflow_tracking_username = ana\nmlflow_tracking_password = s3cret\n",
            "http://h:5000",
            {"Authorization": "Basic YW5hOnMzY3JldA=="},
        ),
        (
            {"MLFLOW_TRACKING_PASSWORD": "other"},  # the environment wins, field by field
            "[mlflow]\nmlflow_tracking_username = ana\nmlflow_tracking_password = s3cret\n",
            "http://h:5000",
            {"Authorization": "Basic YW5hOm90aGVy"},
        ),
        ({"MLFLOW_TRACKING_TOKEN": "tok"}, None, "http://h", {"Authorization": "Bearer tok"}),
        ({}, None, "http://ana:s3cret@h:5000", {"Authorization": "Basic YW5hOnMzY3JldA=="}),
        ({}, None, "http://ana:s%40c@h", {"Authorization": "Basic YW5hOnNAYw=="}),
    ],
    ids=["none", "environment", "file", "environment-over-file", "token", "uri", "uri-quoted"],
)
def test_credentials_are_the_ones_mlflow_would_send(
    monkeypatch, tmp_path, env, credentials_file, uri, expected
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if credentials_file:
        (tmp_path / "home" / ".mlflow").mkdir(parents=True)
        (tmp_path / "home" / ".mlflow" / "credentials").write_text(credentials_file)
    assert auth_headers(uri) == expected


AUTH_CONFIG = """[mlflow]
default_permission = READ
database_uri = sqlite:///{folder}/auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """``mlflow server`` with basic auth, on SQLite and a local artifact folder."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "basic_auth.ini").write_text(AUTH_CONFIG.format(folder=folder))
    password = secrets.token_urlsafe(12)
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--serve-artifacts", "--app-name", "basic-auth",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    uri = f"http://127.0.0.1:{port}"
    server = ServerProcess("mlflow server", command, env, f"{uri}/health", folder / "server.log")
    server.start()
    yield uri, password, folder / "artifacts"
    server.stop()


@pytest.fixture(scope="module")
def on_server(auth_server, tmp_path_factory, exported_root):
    """Both models registered and promoted on the server, by its admin."""
    uri, password, _ = auth_server
    paths = copy_workspace(exported_root, tmp_path_factory.mktemp("on_server") / "work")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WIKILM_PARENT_RUN_ID", raising=False)
        patch.delenv("WIKILM_TRACKING", raising=False)
        for name, value in _admin(uri, password).items():
            patch.setenv(name, value)
        _register(paths)
    return paths


def _admin(uri: str, password: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def test_a_server_answers_as_mlflow_does(auth_server, on_server, monkeypatch):
    uri, password, _ = auth_server
    for name, value in _admin(uri, password).items():
        monkeypatch.setenv(name, value)
    found = resolve(uri, CLASSIFIER, CHAMPION)
    assert found == from_client(uri, CLASSIFIER, CHAMPION)
    assert found == Resolved(CLASSIFIER, CHAMPION, "1", found.digest)
    assert found.digest is not None
    assert len(found.digest) == 64
    assert resolve(uri, CLASSIFIER, "nobody") is None
    assert resolve(uri, "no-such-model", CHAMPION) is None


def test_a_server_refuses_whoever_does_not_sign_in(auth_server, on_server):
    uri, _, _ = auth_server
    with pytest.raises(RegistryError, match=r"\(HTTP 401\): sign in with MLFLOW_TRACKING_USERNAME"):
        resolve(uri, CLASSIFIER, CHAMPION)


def test_the_champion_loads_from_a_server_then_from_the_cache(
    auth_server, on_server, monkeypatch, tmp_path
):
    uri, password, stored = auth_server
    # Signed in through the credentials file: what a reviewer's machine would hold.
    (tmp_path / "home" / ".mlflow").mkdir(parents=True)
    (tmp_path / "home" / ".mlflow" / "credentials").write_text(
        f"[mlflow]\nmlflow_tracking_username = admin\nmlflow_tracking_password = {password}\n"
    )
    champion = champion_predictor(uri, CLASSIFIER)
    assert isinstance(champion, Classifier)
    exported = Classifier(ServedFiles.read(**artifacts(on_server.export, CLASSIFIER)))
    expected = exported.predict(TEXTS).probabilities
    np.testing.assert_array_equal(champion.predict(TEXTS).probabilities, expected)
    # The server's artifacts gone: the second load can only come from the cache.
    shutil.move(stored, tmp_path / "moved")
    try:
        again = champion_predictor(uri, CLASSIFIER)
        with pytest.raises(RegistryError, match="its files cannot be downloaded"):
            champion_predictor(uri, LM)
    finally:
        shutil.move(tmp_path / "moved", stored)
    np.testing.assert_array_equal(again.predict(TEXTS).probabilities, expected)


def test_wikilm_predict_asks_the_server_named_by_the_environment(
    auth_server, on_server, monkeypatch, capsys
):
    uri, password, _ = auth_server
    host = uri.removeprefix("http://")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://admin:{password}@{host}")
    params = on_server.root / "params.yaml"
    params.write_text("{}\n")
    assert main(["predict", *TEXTS, "--params", str(params)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    exported = Classifier(ServedFiles.read(**artifacts(on_server.export, CLASSIFIER)))
    expected = exported.predict(TEXTS)
    assert lines == [
        f"{label}\t{p:.3f}\t{text}"
        for label, p, text in zip(expected.labels, expected.probability, TEXTS, strict=True)
    ]


def test_an_unreachable_server_is_one_line():
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    with pytest.raises(Unreachable) as failed:
        resolve(uri, CLASSIFIER, CHAMPION)
    assert str(failed.value).startswith(f"the tracking server {uri} cannot be reached: ")
    assert "\n" not in str(failed.value)
