"""Real servers for the deployment's integration tests, started as plain processes.

PostgreSQL is the machine's (``WIKILM_TEST_POSTGRES``, by default the local server with trust
auth); each server gets databases of its own, dropped after the session. S3 is moto's server
on a free port; MLflow is ``mlflow server`` on both (plain, and with basic auth started by
``infra/mlflow/serve.sh`` as the compose file does); Prefect is ``prefect server start`` on
PostgreSQL. Without a reachable PostgreSQL the tests here are skipped, with the reason.
"""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers.processes import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
POSTGRES = os.environ.get("WIKILM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "wikilm-test", "AWS_SECRET_ACCESS_KEY": "wikilm-test-secret"}


@dataclass
class Databases:
    """Creates fresh databases on the PostgreSQL server; drops them all at the end."""

    admin: object  # a psycopg connection in autocommit mode
    created: list[str]

    def create(self, purpose: str) -> str:
        """A new, empty database for ``purpose``: its postgresql:// URL."""
        name = f"wikilm_test_{purpose}_{uuid.uuid4().hex[:8]}"
        with self.admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        self.created.append(name)
        return POSTGRES.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """The PostgreSQL server, or a skip naming why it cannot be reached."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {str(error).strip()}")
    made = Databases(admin, [])
    yield made
    with admin.cursor() as cursor:
        for name in made.created:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def environment(**extra: str) -> dict[str, str]:
    """This environment, with this interpreter's folder first on PATH, plus ``extra``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, **MLFLOW_SERVER_SETTINGS, **extra}


# As infra/docker-compose.yml runs it: without the job runner for MLflow's GenAI features,
# a dozen worker processes that wikilm never uses.
MLFLOW_SERVER_SETTINGS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass(frozen=True)
class S3:
    """An S3-compatible endpoint and its credentials."""

    endpoint: str

    def client(self):  # noqa: ANN201 - boto3's client
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """Moto's S3-compatible server, in this process, on a free port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield S3(f"http://127.0.0.1:{port}")
    server.stop()


@dataclass(frozen=True)
class MlflowServer:
    """A running ``mlflow server``: its URI and its artifact bucket."""

    uri: str
    bucket: str


def _mlflow(name: str, command: list[str], env: dict, port: int, folder: Path) -> ServerProcess:
    uri = f"http://127.0.0.1:{port}"
    return ServerProcess(name, command, env, f"{uri}/health", folder / "server.log")


def plain_mlflow(store: str, artifacts: str, env: dict, folder: Path) -> tuple[str, ServerProcess]:
    """``mlflow server`` without auth on a free port, not started yet: its URI and process."""
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store,
        "--artifacts-destination", artifacts,
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    return f"http://127.0.0.1:{port}", _mlflow("mlflow server", command, env, port, folder)


@pytest.fixture(scope="session")
def mlflow_server(
    databases: Databases, s3: S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """``mlflow server`` with its store on PostgreSQL and its artifacts on S3 (no auth)."""
    bucket = "mlflow"
    s3.client().create_bucket(Bucket=bucket)
    env = environment(**S3_KEYS, MLFLOW_S3_ENDPOINT_URL=s3.endpoint)
    folder = tmp_path_factory.mktemp("mlflow")
    uri, server = plain_mlflow(databases.create("mlflow"), f"s3://{bucket}/", env, folder)
    server.start()
    yield MlflowServer(uri, bucket)
    server.stop()


@dataclass(frozen=True)
class AuthMlflowServer:
    """``mlflow server`` with basic auth: its URI, bucket, process and users' passwords."""

    uri: str
    bucket: str
    process: ServerProcess
    passwords: dict[str, str]

    def credentials(self, user: str) -> dict[str, str]:
        """The environment a client acting as ``user`` needs."""
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": self.passwords[user],
        }


# Who works with the authenticated server: the pipeline's account, two reviewers (the admin
# puts them in the group or grants them MANAGE), and two colleagues with less (READ by default).
USERS = ("trainer", "reviewer", "auditor", "editor", "viewer")


def _auth_server(
    databases: Databases, s3: S3, folder: Path, app: str, **extra: str
) -> AuthMlflowServer:
    """``infra/mlflow/serve.sh`` with MLflow's app ``app``, on PostgreSQL and S3, with users."""
    bucket = f"mlflow-{app}"
    s3.client().create_bucket(Bucket=bucket)
    port = free_port()
    passwords = {user: secrets.token_urlsafe(16) for user in ("admin", *USERS)}
    env = environment(
        **S3_KEYS,
        MLFLOW_S3_ENDPOINT_URL=s3.endpoint,
        MLFLOW_BACKEND_STORE_URI=databases.create("mlflow"),
        MLFLOW_AUTH_DATABASE_URI=databases.create("mlflow_auth"),
        MLFLOW_ARTIFACTS_DESTINATION=f"s3://{bucket}/",
        MLFLOW_ADMIN_USERNAME="admin",
        MLFLOW_ADMIN_PASSWORD=passwords["admin"],
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(32),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_APP_NAME=app,
        **extra,
    )
    command = ["sh", str(REPO / "infra" / "mlflow" / "serve.sh")]
    server = _mlflow(f"mlflow server ({app})", command, env, port, folder)
    server.start()
    running = AuthMlflowServer(f"http://127.0.0.1:{port}", bucket, server, passwords)
    _create_users(running)
    return running


@pytest.fixture(scope="session")
def auth_mlflow_server(
    databases: Databases, s3: S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthMlflowServer]:
    """``infra/mlflow/serve.sh`` with MLflow's basic-auth app alone (no wikilm rules)."""
    running = _auth_server(databases, s3, tmp_path_factory.mktemp("auth"), "basic-auth")
    yield running
    running.process.stop()


# The rules of the wikilm server in the tests: reviewers approve, four-eyes, and the tiny
# models' classifier may lose to TF-IDF + LR (the mechanics are under test, not the models).
WIKILM_SERVER_RULES = {"approval": "manual", "four_eyes": True, "min_margin_over_tfidf": -1.0}


@pytest.fixture(scope="session")
def wikilm_mlflow_server(
    databases: Databases, s3: S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AuthMlflowServer]:
    """``infra/mlflow/serve.sh`` as deployed: the wikilm app, ``trainer`` its pipeline account."""
    import yaml

    folder = tmp_path_factory.mktemp("wikilm-app")
    config = folder / "wikilm.yaml"
    rules = {"pipeline_account": "trainer", "promote": WIKILM_SERVER_RULES}
    config.write_text(yaml.safe_dump(rules), encoding="utf-8")
    running = _auth_server(databases, s3, folder, "wikilm", WIKILM_SERVER_CONFIG=str(config))
    yield running
    running.process.stop()


def _create_users(server: AuthMlflowServer) -> None:
    from mlflow.server.auth.client import AuthServiceClient

    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.credentials("admin").items():
            patch.setenv(name, value)
        admin = AuthServiceClient(server.uri)
        for user in USERS:
            admin.create_user(user, server.passwords[user])


@dataclass(frozen=True)
class PrefectServer:
    """A running ``prefect server``: its API URL and its process."""

    api_url: str
    process: ServerProcess


@contextmanager
def prefect_client(api_url: str) -> Iterator[object]:
    """A Prefect client of the server at ``api_url`` (whatever this process was set up with)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="session")
def prefect_server(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    """``prefect server start`` with its database on PostgreSQL and its services on.

    As a team runs it: the scheduler creates deployments' runs, and the other services
    (late runs, pause expiry, event persistence) run as they would in production.
    """
    folder = tmp_path_factory.mktemp("prefect")
    port = free_port()
    database = databases.create("prefect").replace("postgresql://", "postgresql+asyncpg://")
    env = environment(
        PREFECT_HOME=str(folder / "home"),
        PREFECT_API_DATABASE_CONNECTION_URL=database,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL="",  # the server is not a client of another one
    )
    command = [
        sys.executable, "-m", "prefect", "server", "start",
        "--host", "127.0.0.1", "--port", str(port), "--no-ui",
    ]  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    server = ServerProcess("prefect server", command, env, f"{api}/health", folder / "server.log")
    server.start()
    yield PrefectServer(api, server)
    server.stop()
