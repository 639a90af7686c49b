"""Real servers for the deployment's integration tests, started as plain processes.

PostgreSQL is the machine's (``WIKILM_TEST_POSTGRES``, by default the local server with trust
auth); each test session gets a database of its own, dropped afterwards. S3 is moto's server
on a free port; MLflow is ``mlflow server`` on both. Without a reachable PostgreSQL the tests
here are skipped, with the reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES = os.environ.get("WIKILM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
S3_KEYS = {"AWS_ACCESS_KEY_ID": "wikilm-test", "AWS_SECRET_ACCESS_KEY": "wikilm-test-secret"}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    """Poll ``url`` until it answers; fail with the server's log if it exits or never does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited ({process.returncode}):\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - a local test server
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this session: its URL."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {str(error).strip()}")
    name = f"wikilm_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


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


@pytest.fixture(scope="session")
def mlflow_server(
    postgres_database: str, s3: S3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowServer]:
    """``mlflow server`` with its store on PostgreSQL and its artifacts on S3."""
    bucket = "mlflow"
    s3.client().create_bucket(Bucket=bucket)
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    env = {**os.environ, **S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", postgres_database,
        "--artifacts-destination", f"s3://{bucket}/",
        "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", process, log)
        yield MlflowServer(uri, bucket)
    finally:
        process.terminate()
        process.wait(timeout=30)
