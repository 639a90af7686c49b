"""The shared-server deployment in infra/, checked with what runs without a Docker engine.

The compose file is read as YAML and held to its contract (services, databases, auth,
secrets only from the environment, names that agree with prefect.yaml and the Makefile);
the Dockerfiles are parsed with ``dockerfile-parse``; the MLflow start script is checked by
``sh -n``. None of the images is built here.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{(\w+)\}")


def _example_env() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return dict(pairs)


def _makefile_value(name: str) -> str:
    (value,) = re.findall(rf"^{name} := (.+)$", (REPO / "Makefile").read_text(), re.M)
    return value.strip()


def test_the_stack_has_every_server_and_the_worker():
    assert set(SERVICES) == {
        "postgres",
        "minio",
        "buckets",
        "mlflow",
        "prefect-server",
        "worker",
    }
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_every_variable_the_stack_reads_is_in_the_example_env():
    used = set(VARIABLE.findall((INFRA / "docker-compose.yml").read_text()))
    assert used <= set(_example_env()), used - set(_example_env())


def test_no_secret_is_written_in_the_compose_file():
    text = (INFRA / "docker-compose.yml").read_text()
    for name, value in _example_env().items():
        if "PASSWORD" in name or "SECRET" in name:
            assert value not in text
            assert f"${{{name}}}" in text  # passed through from the environment


def test_mlflow_runs_on_postgres_with_s3_artifacts_and_basic_auth():
    mlflow = SERVICES["mlflow"]
    env = mlflow["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql://")
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    script = (INFRA / "mlflow" / "serve.sh").read_text()
    assert "--app-name basic-auth" in script
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"' in script
    assert "admin_password" not in script  # never written to the config file
    subprocess.run(["sh", "-n", str(INFRA / "mlflow" / "serve.sh")], check=True)
    # The auth app signs its CSRF tokens with a key that must come from the environment.
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "${MLFLOW_FLASK_SERVER_SECRET_KEY}"
    assert ': "${MLFLOW_FLASK_SERVER_SECRET_KEY:?' in script


def test_the_server_tests_run_mlflow_as_the_compose_file_does():
    from tests.servers.conftest import MLFLOW_SERVER_SETTINGS

    env = SERVICES["mlflow"]["environment"]
    assert MLFLOW_SERVER_SETTINGS.items() <= env.items()


def test_every_database_the_servers_use_is_created():
    created = set(re.findall(r"CREATE DATABASE (\w+);", (INFRA / "postgres/init.sql").read_text()))
    urls = [
        SERVICES["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
        SERVICES["mlflow"]["environment"]["MLFLOW_AUTH_DATABASE_URI"],
        SERVICES["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
    ]
    assert {url.rsplit("/", 1)[1] for url in urls} == created


def test_the_worker_serves_the_pool_of_prefect_yaml_against_the_stack():
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    command = SERVICES["worker"]["command"]
    assert command[command.index("--pool") + 1] in pools
    env = SERVICES["worker"]["environment"]
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["WIKILM_HOME"] == "/app"  # prefect.yaml's working directory
    prefect = SERVICES["prefect-server"]["environment"]
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_the_images_install_the_locks_and_nothing_else(name):
    with (INFRA / name).open("rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        structure = parser.structure
    installs = [
        command.strip()
        for i in structure
        if i["instruction"] == "RUN"
        for command in i["value"].split("&&")
        if "pip install" in command
    ]
    lock = "locks/cuda.txt" if name.endswith(".cuda") else _makefile_value("LOCK")
    locked = "--require-hashes --no-deps"
    assert any(locked in c and f"-r {lock}" in c for c in installs), installs
    assert any(locked in c and f"-r {_makefile_value('DATA_LOCK')}" in c for c in installs)
    # The rest is the project itself, with no dependencies and no build environment fetched.
    others = [c for c in installs if "-r locks/" not in c]
    assert others == ["pip install --no-cache-dir --no-deps --no-build-isolation -e ."]
    users = [i["value"] for i in structure if i["instruction"] == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1] != "root"


def test_the_server_extra_has_the_clients_the_stack_needs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=]", spec)[0] for spec in project["optional-dependencies"]["server"]}
    # PostgreSQL's driver, the auth app of `mlflow server --app-name basic-auth`, and S3 for
    # MLflow's artifacts (boto3) and the DVC remote (dvc-s3, through aiobotocore).
    assert names == {"psycopg[binary]", "mlflow[auth]", "dvc-s3", "aiobotocore", "boto3"}


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_the_build_context_leaves_local_state_out(name):
    ignored = (INFRA / f"{name}.dockerignore").read_text().splitlines()
    assert {".venv", "data", "models", "mlflow.db", ".git"} <= set(ignored)
