"""The shared-server deployment in infra/, checked with what runs without a Docker engine.

The compose file is read as YAML and held to its contract (services, databases, auth,
secrets only from the environment, names that agree with prefect.yaml and the Makefile,
admin surfaces on loopback, one object-store key per service); the Dockerfiles are parsed
with ``dockerfile-parse``. The images' build contexts are computed with Docker's ignore rules
(as BuildKit applies them, and as docker-py's classic-builder code does) on a copy of the
repository salted with secret files, and on the checkout itself. The start-up scripts run
for real: ``check-secrets.sh`` under dash and bash, ``mlflow/serve.sh`` and
``minio/init.sh`` with stand-ins for ``mlflow`` and ``mc``; a real ``prefect server start``
runs with the compose file's auth settings. None of the images is built here.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.servers.processes import free_port

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
CHECK = INFRA / "check-secrets.sh"
COMPOSE = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{(\w+)\}")
PLACEHOLDER = "change-me"
EX_CONFIG = 78  # check-secrets.sh's exit status for a refusal
SHELLS = [shell for shell in ("dash", "bash") if shutil.which(shell)]


def _example_env() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return dict(pairs)


def _placeholders() -> dict[str, str]:
    """The secrets of .env.example: the variables it ships with a change-me value."""
    return {name: value for name, value in _example_env().items() if PLACEHOLDER in value}


def _real_env() -> dict[str, str]:
    """An infra/.env as an operator fills it: every placeholder replaced by a random secret."""
    real = {name: secrets.token_urlsafe(24) for name in _placeholders()}
    real["PREFECT_API_AUTH_STRING"] = f"admin:{secrets.token_urlsafe(24)}"
    return {**_example_env(), **real}


def _makefile_value(name: str) -> str:
    (value,) = re.findall(rf"^{name} := (.+)$", (REPO / "Makefile").read_text(), re.M)
    return value.strip()


def _resolved(service: str, dotenv: dict[str, str]) -> dict[str, str]:
    """The environment compose gives ``service`` with ``dotenv`` as its --env-file."""
    env = SERVICES[service].get("environment", {})
    return {k: VARIABLE.sub(lambda m: dotenv.get(m.group(1), ""), str(v)) for k, v in env.items()}


def _base_env(**extra: str) -> dict[str, str]:
    """A clean environment for the scripts: a PATH, a HOME, nothing else of this process."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C", **extra}


# -- the stack ---------------------------------------------------------------------------


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
    example = _example_env()
    # Every secret of the example is a placeholder that start-up refuses, never a default.
    secret_names = [n for n in example if re.search(r"PASSWORD|SECRET|AUTH_STRING", n)]
    assert secret_names
    assert set(secret_names) <= set(_placeholders())
    for name, value in _placeholders().items():
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
    assert 'app="${MLFLOW_APP_NAME:-wikilm}"' in script  # the promotion rules in the server
    assert '--app-name "$app"' in script
    assert "--serve-artifacts" in script  # clients never need the artifact bucket's key
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"' in script
    assert "admin_password" not in script  # never written to the config file
    for path in (INFRA / "mlflow" / "serve.sh", CHECK, INFRA / "minio" / "init.sh"):
        subprocess.run(["sh", "-n", str(path)], check=True)
    # The auth app signs its CSRF tokens with a key that must come from the environment.
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "${MLFLOW_FLASK_SERVER_SECRET_KEY}"
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in _checked_names("mlflow")


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


def _published(service: dict) -> dict[int, str]:
    """Map each published container port to its host address ("" for every interface)."""
    ports = {}
    for spec in service.get("ports", []):
        parts = str(spec).rsplit(":", 2)
        address = parts[0] if len(parts) == 3 else ""
        ports[int(parts[-1])] = address
    return ports


def test_the_admin_surfaces_are_published_on_loopback_only():
    published = {port: addr for s in SERVICES.values() for port, addr in _published(s).items()}
    # Prefect's API and UI, MLflow's, MinIO's console: basic auth over plain HTTP.
    for port in (4200, 5000, 9001):
        assert published[port] == "127.0.0.1", port
    # Only the S3 API is reachable from other machines: remote DVC remotes sign their
    # requests with their own key (SigV4), and the file says so.
    assert {p for p, addr in published.items() if addr != "127.0.0.1"} == {9000}
    assert (
        "The S3 API (9000) is published on every interface"
        in (INFRA / "docker-compose.yml").read_text()
    )


# -- the images ---------------------------------------------------------------------------


def _dockerfile(name: str) -> list[dict]:
    with (INFRA / name).open("rb") as handle:
        return DockerfileParser(fileobj=handle).structure


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_the_images_install_the_locks_and_nothing_else(name):
    structure = _dockerfile(name)
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


# -- the build context: Docker's ignore rules ----------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    """One line of a .dockerignore: a cleaned pattern, and whether it is an exception (!)."""

    pattern: str
    exclusion: bool
    regex: re.Pattern[str]


def _go_clean(path: str) -> str:
    """Clean a slash path as Go's filepath.Clean does (posixpath keeps a leading "//")."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate a pattern to a regular expression as moby/patternmatcher does.

    ``*`` and ``?`` stop at "/"; ``**`` crosses folders (``**/`` matches zero or more of
    them); a backslash escapes the next character; ``[...]`` are character classes; the other
    characters match themselves.
    """
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out += ".*" if i == len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char in ".+()|{}$":
            out += "\\" + char
        elif char == "\\":
            out += "\\" + pattern[i] if i < len(pattern) else "\\\\"
            i += 1
        else:
            out += char
    return re.compile(out)


def read_dockerignore(path: Path) -> list[IgnoreRule]:
    """Read a .dockerignore's rules as BuildKit does (moby/patternmatcher's ignorefile).

    "#" starts a comment only at the start of a line; lines are trimmed; "!" makes an
    exception; each pattern is cleaned like Go's filepath.Clean and loses a leading "/".
    """
    rules = []
    for line in path.read_text(encoding="utf-8").removeprefix("\ufeff").splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:].strip()
        assert pattern, f"{path}: '!' alone is an illegal exclusion pattern"
        pattern = _go_clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
        rules.append(IgnoreRule(pattern, exclusion, _pattern_regex(pattern)))
    return rules


def _excluded(
    rules: list[IgnoreRule], path: str, parent: list[bool] | None
) -> tuple[bool, list[bool]]:
    """Whether ``path`` is excluded: patternmatcher's MatchesUsingParentResults.

    The last rule that matches ``path`` or a folder it is in decides; a rule that the
    parent folder matched matches the folder's entries too.
    """
    matched, info = False, [False] * len(rules)
    for i, rule in enumerate(rules):
        match = parent[i] if parent is not None else False
        if not match:
            if rule.exclusion != matched:
                continue  # an exception with nothing to undo, an exclusion with nothing new
            match = rule.regex.fullmatch(path) is not None
            if not match and parent is None:
                folders = path.split("/")[:-1]
                prefixes = ("/".join(folders[: k + 1]) for k in range(len(folders)))
                match = any(rule.regex.fullmatch(prefix) for prefix in prefixes)
        info[i] = match
        if match:
            matched = not rule.exclusion
    return matched, info


def build_context(root: Path, rules: list[IgnoreRule]) -> set[str]:
    """The files BuildKit sends from ``root`` (tonistiigi/fsutil's walk with these rules).

    An excluded folder is skipped unless an exception could match inside it; with exceptions
    that are all literal paths, only those under the folder's path can.
    """
    literal = all(not re.search(r"[*?\[\\]", r.pattern) for r in rules if r.exclusion)
    sent: set[str] = set()

    def walk(folder: Path, prefix: str, parent: list[bool] | None) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = prefix + entry.name
            excluded, info = _excluded(rules, path, parent)
            if entry.is_dir(follow_symlinks=False):
                if excluded and literal:
                    inside = path + "/"
                    if not any(r.exclusion and (r.pattern + "/").startswith(inside) for r in rules):
                        continue
                walk(Path(entry.path), path + "/", info)
            elif not excluded:
                sent.add(path)

    walk(root, "", None)
    return sent


def _docker_py_context(root: Path, ignore_file: Path, dockerfile: str) -> set[str]:
    """The files docker-py's classic-builder code sends (``docker.utils.build``).

    It reads the rules as ``docker build`` without BuildKit does and always adds the
    Dockerfile and the .dockerignore, which this leaves out.
    """
    build = pytest.importorskip("docker.utils.build")
    lines = [line.strip() for line in ignore_file.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    paths = build.exclude_paths(str(root), patterns, dockerfile=dockerfile)
    files = {p for p in paths if not (root / p).is_dir() or (root / p).is_symlink()}
    return files - {dockerfile, ".dockerignore"}


def test_the_ignore_rules_read_as_dockers_documentation_says(tmp_path):
    """The matcher above against the examples of Docker's .dockerignore reference."""
    tree = [
        "README.md", "README-secret.md", "other.md", "temp", "tempa", "tempab",
        "somedir/temporary.txt", "somedir/subdir/temporary.txt", "a/b/c.go", "c.go",
        "foo/bar", "foo/baz", "data/x", "keep/x", "keep/y/z",
    ]  # fmt: skip
    for name in tree:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    cases = {
        "*/temp*": {"somedir/temporary.txt"},
        "*/*/temp*": {"somedir/subdir/temporary.txt"},
        "temp?": {"tempa"},
        "**/*.go": {"a/b/c.go", "c.go"},
        "*.md\n!README*.md\nREADME-secret.md": {"README-secret.md", "other.md"},
        "*.md\nREADME-secret.md\n!README*.md": {"other.md"},
        "/foo/bar": {"foo/bar"},
        "foo/bar/": {"foo/bar"},
        "data": {"data/x"},
        "# a comment\n  .  \n": set(),
        "*\n!keep/y": set(tree) - {"keep/y/z"},
    }
    for rules_text, expected in cases.items():
        ignore = tmp_path.parent / f"{tmp_path.name}.dockerignore"
        ignore.write_text(rules_text + "\n")
        sent = build_context(tmp_path, read_dockerignore(ignore))
        assert set(tree) - sent == expected, rules_text
        if _has_docker_py():
            assert _docker_py_context(tmp_path, ignore, "Dockerfile") == sent, rules_text


def _has_docker_py() -> bool:
    try:
        import docker.utils.build  # noqa: F401
    except ImportError:
        return False
    return True


# Files that must never reach an image, planted in a copy of the repository: where operators
# keep them, and inside the folders the images do take.
PLANTED_SECRETS = [
    "infra/.env",
    "infra/k8s/credentials.env",
    ".dvc/config.local",
    "secrets/x.pem",
    ".env",
    "id_rsa",
    ".aws/credentials",
    "infra/postgres/.pgpass",
    ".netrc",
    ".git-credentials",
    ".mlflow/credentials",
    ".kube/config",
    ".ssh/id_ed25519",
    ".docker/config.json",
    "kubeconfig",
    "infra/secrets.env",
    "infra/mlflow/.env",
    "infra/mlflow/tls.key",
    "components/.env",
    "components/.env.local",
    "components/core/server.key",
    "components/core/.aws/config",
    "flows/tls/cert.pem",
    "flows/secrets/token.txt",
    "locks/.netrc",
    "metrics/.git-credentials",
    "plots/pretrain/.mlflow/credentials",
    "plots/credentials",
]
# Local state that must stay out as well.
PLANTED_STATE = [
    ".venv/bin/python",
    ".git/config",
    "data/ingest/shard-0.parquet",
    "models/export/model.onnx",
    "checkpoints/pretrain/last.ckpt",
    "reports/validate/results.json",
    "mlflow.db",
    "mlruns/0/meta.yaml",
    "mlartifacts/0/model.onnx",
    ".dvc/cache/files/md5/ab/cdef",
    ".dvc/tmp/rwlock",
    ".pytest_cache/v/cache/lastfailed",
    "components/__pycache__/stages.cpython-311.pyc",
    "wikilm.egg-info/PKG-INFO",
]
SECRET_FOLDERS = {".aws", ".ssh", ".kube", ".mlflow", ".docker", ".gnupg", "secrets", ".secrets"}
SECRET_NAMES = {".netrc", "_netrc", ".git-credentials", ".pgpass", ".htpasswd", ".npmrc"}
SECRET_NAMES |= {".pypirc", "credentials", "credentials.json", "config.local"}
SECRET_SUFFIXES = {".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".env"}
CACHES = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".import_linter_cache"}
STATE = {"data", "models", "checkpoints", "reports", "mlruns", "mlartifacts", "mlflow.db"}


def _looks_secret(path: str) -> bool:
    """Whether a repository path looks like it holds a credential (examples do not)."""
    *folders, name = path.split("/")
    if name.endswith(".example"):
        return False
    return (
        any(folder in SECRET_FOLDERS for folder in folders)
        or name in SECRET_NAMES
        or name == ".env"
        or name.startswith(".env.")
        or Path(name).suffix in SECRET_SUFFIXES
        or re.match(r"id_(rsa|dsa|ecdsa|ed25519)", name) is not None
        or name.startswith("kubeconfig")
    )


def _files(root: Path, under: str = "") -> set[str]:
    """The repository's own files under ``under``: no caches, no state, nothing secret."""
    found = set()
    for folder, folders, names in os.walk(root / under):
        top = Path(folder) == root
        folders[:] = [
            f
            for f in folders
            if f not in CACHES and not f.endswith(".egg-info") and not (top and f in STATE)
        ]
        for name in names:
            path = (Path(folder) / name).relative_to(root).as_posix()
            if path.split("/")[0] in STATE or _looks_secret(path) or name.endswith(".pyc"):
                continue
            found.add(path)
    return found


def _needed(dockerfile: str) -> set[str]:
    """What the image's build needs from the context.

    Every COPY source, and for ``COPY .`` what /app must hold for the install and the
    services: the package, its metadata, the pipeline's definitions, the files the compose
    services run from the image.
    """
    needed: set[str] = set()
    for instruction in _dockerfile(dockerfile):
        if instruction["instruction"] not in {"COPY", "ADD"}:
            continue
        sources = [s for s in instruction["value"].split()[:-1] if not s.startswith("--")]
        for source in sources:
            if source != ".":
                files = _files(REPO, source)
                assert files, f"{dockerfile} copies {source}, which holds nothing"
                needed |= files
                continue
            project = tomllib.loads((REPO / "pyproject.toml").read_text())
            needed |= {"pyproject.toml", project["project"]["readme"]}
            for package in project["tool"]["setuptools"]["packages"]["find"]["include"]:
                needed |= _files(REPO, package.rstrip("*"))
            needed |= {"dvc.yaml", "dvc.lock", "params.yaml", ".dvc/config", ".dvcignore"}
            prefect = yaml.safe_load((REPO / "prefect.yaml").read_text())
            needed |= {"prefect.yaml"}
            needed |= {d["entrypoint"].split(":")[0] for d in prefect["deployments"]}
            for service in SERVICES.values():
                if "build" in service:
                    argv = [*service.get("entrypoint", []), *service.get("command", [])]
                    needed |= {arg for arg in argv if (REPO / arg).is_file()}
    return needed


def _salted_copy(tmp_path: Path) -> Path:
    """The repository's files, copied with secret files and local state planted in."""
    root = tmp_path / "repo"
    for path in _files(REPO):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, root / path)
    for path in [*PLANTED_SECRETS, *PLANTED_STATE]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("not-a-real-secret\n")
    return root


IGNORE_FILES = [
    ("Dockerfile", "infra/Dockerfile.dockerignore"),  # BuildKit, docker compose
    ("Dockerfile.cuda", "infra/Dockerfile.cuda.dockerignore"),
    ("Dockerfile", ".dockerignore"),  # the classic builder reads only the root's
    ("Dockerfile.cuda", ".dockerignore"),
]


def test_the_planted_files_are_what_the_check_calls_secrets():
    assert all(_looks_secret(path) for path in PLANTED_SECRETS)
    assert not any(_looks_secret(path) for path in PLANTED_STATE)
    assert not _looks_secret("infra/.env.example")
    assert not _looks_secret("infra/k8s/credentials.env.example")


@pytest.mark.parametrize(("dockerfile", "ignore_file"), IGNORE_FILES)
def test_no_secret_or_local_state_reaches_the_image(tmp_path, dockerfile, ignore_file):
    root = _salted_copy(tmp_path)
    rules = read_dockerignore(REPO / ignore_file)
    readings = {"BuildKit": build_context(root, rules)}
    if _has_docker_py():
        classic = _docker_py_context(root, REPO / ignore_file, f"infra/{dockerfile}")
        readings["docker-py"] = classic
    for reading, sent in readings.items():
        leaked = sorted(p for p in sent if _looks_secret(p))
        assert not leaked, f"{ignore_file} sends secrets ({reading}): {leaked}"
        state = sorted(p for p in sent if p in PLANTED_STATE)
        assert not state, f"{ignore_file} sends local state ({reading}): {state}"
        # ... and still sends everything the build copies and the services run.
        missing = sorted(_needed(dockerfile) - sent)
        assert not missing, f"{ignore_file} leaves out of {dockerfile} ({reading}): {missing}"


@pytest.mark.parametrize("ignore_file", sorted({f for _, f in IGNORE_FILES}))
def test_no_secret_file_of_this_checkout_reaches_an_image(ignore_file):
    sent = build_context(REPO, read_dockerignore(REPO / ignore_file))
    leaked = sorted(p for p in sent if _looks_secret(p))
    assert not leaked, f"{ignore_file} would send these files of the checkout: {leaked}"
    assert _needed("Dockerfile") <= sent


def test_the_three_ignore_files_hold_the_same_rules():
    rules = {f: read_dockerignore(REPO / f) for _, f in IGNORE_FILES}
    first, *others = rules.values()
    assert all(other == first for other in others)
    # An allow-list: everything out first, so a new file reaches no image unless listed.
    assert (first[0].pattern, first[0].exclusion) == ("*", False)


# -- start-up refuses placeholders ---------------------------------------------------------


def _run(argv: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


@pytest.mark.parametrize("shell", SHELLS)
def test_check_secrets_refuses_every_placeholder_of_the_example_env(shell):
    names = sorted(_placeholders())
    argv = [shell, str(CHECK), *names, "--", "echo", "started"]
    result = _run(argv, _base_env(**_example_env()))
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""  # the command did not run
    lines = result.stderr.splitlines()
    assert len(lines) == len(names)  # one line per variable, each naming it
    for name, line in zip(names, lines, strict=True):
        assert f" {name} " in line, line
        assert "placeholder" in line, line


@pytest.mark.parametrize("shell", SHELLS)
def test_check_secrets_refuses_unset_empty_and_placeholder_values_by_name(shell):
    real = {name: secrets.token_urlsafe(16) for name in ("A_PASSWORD", "B_KEY", "C_TOKEN")}
    cases = {
        "unset": ({k: v for k, v in real.items() if k != "B_KEY"}, "unset or empty"),
        "empty": ({**real, "B_KEY": ""}, "unset or empty"),
        "placeholder": ({**real, "B_KEY": "change-me-now"}, "placeholder"),
        "upper-case placeholder": ({**real, "B_KEY": "CHANGE-ME"}, "placeholder"),
        "inside a URL": ({**real, "B_KEY": "postgresql://u:change-me@db/x"}, "placeholder"),
    }
    for case, (values, reason) in cases.items():
        result = _run([shell, str(CHECK), *real, "--", "echo", "started"], _base_env(**values))
        assert result.returncode == EX_CONFIG, case
        (line,) = result.stderr.splitlines()
        assert "B_KEY" in line, (case, line)
        assert reason in line, (case, line)
        assert not any(value in result.stderr for value in real.values())  # never printed
        assert result.stdout == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_check_secrets_accepts_real_secrets_and_runs_the_command(shell):
    real = {name: secrets.token_urlsafe(16) for name in ("A_PASSWORD", "B_KEY")}
    argv = [shell, str(CHECK), *real, "--", "sh", "-c", 'echo "started with $0 $1"', "x", "y"]
    result = _run(argv, _base_env(**real))
    assert (result.returncode, result.stdout, result.stderr) == (0, "started with x y\n", "")
    # With no command it only checks; "NAME?" may be unset, never a placeholder.
    assert _run([shell, str(CHECK), *real, "OPTIONAL?"], _base_env(**real)).returncode == 0
    refused = _run([shell, str(CHECK), "OPTIONAL?"], _base_env(OPTIONAL="change-me"))
    assert refused.returncode == EX_CONFIG
    assert "OPTIONAL " in refused.stderr
    wrong = _run([shell, str(CHECK), "NOT-A-NAME"], _base_env())
    assert wrong.returncode == 2
    assert "not a variable name" in wrong.stderr


def _script_of(service: str) -> Path | None:
    """The repository script a service's entry point runs (from the image or a mount)."""
    argv = [*SERVICES[service].get("entrypoint", []), *SERVICES[service].get("command", [])]
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = INFRA / source
    for arg in argv[:3]:
        if arg.endswith(".sh") and not arg.endswith("check-secrets.sh"):
            return mounts.get(arg, REPO / arg)
    return None


def _checked_names(service: str) -> list[str]:
    """The variables a service's entry point hands check-secrets.sh before anything else."""
    argv = [*SERVICES[service].get("entrypoint", []), *SERVICES[service].get("command", [])]
    if len(argv) > 1 and argv[1].endswith("check-secrets.sh"):
        return argv[2 : argv.index("--")]
    script = _script_of(service)
    assert script is not None, f"{service} starts without checking its secrets"
    commands = [c for c in script.read_text().replace("\\\n", " ").splitlines() if c.strip()]
    commands = [c for c in commands if not c.lstrip().startswith("#")]
    first = next(i for i, c in enumerate(commands) if "check-secrets.sh" in c)
    # Nothing but setting up the shell comes before the check.
    assert all(re.match(r"(#!|set -|here=)", c) for c in commands[:first]), commands[:first]
    words = shlex.split(commands[first])
    return words[[i for i, w in enumerate(words) if w.endswith("check-secrets.sh")][0] + 1 :]


def test_every_service_checks_each_secret_it_gets_before_it_starts():
    placeholders = set(_placeholders())
    received = set()
    for name, service in SERVICES.items():
        checked = {n.rstrip("?") for n in _checked_names(name)}
        for variable, value in service.get("environment", {}).items():
            secret = set(VARIABLE.findall(str(value))) & placeholders
            received |= secret
            assert not secret or variable in checked, f"{name} does not check {variable}"
    assert received == placeholders  # every secret of .env.example is used, and checked


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_refuses_the_example_env_and_starts_with_real_secrets(service):
    names = _checked_names(service)
    example = _base_env(**_resolved(service, _example_env()))
    result = _run(["sh", str(CHECK), *names], example)
    assert result.returncode == EX_CONFIG
    assert result.stderr.splitlines()
    for line in result.stderr.splitlines():
        assert any(f" {n.rstrip('?')} " in line for n in names), line
    accepted = _run(["sh", str(CHECK), *names], _base_env(**_resolved(service, _real_env())))
    assert (accepted.returncode, accepted.stderr) == (0, "")


def _stand_in(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\n{body}\n")
    (folder / name).chmod(0o755)


def test_mlflow_serve_refuses_placeholders_before_starting_the_server(tmp_path):
    body = 'printf "%s\\n" "$@" > "$RECORD"; cat "$WIKILM_SERVER_CONFIG" > "$RECORD.config"'
    _stand_in(tmp_path / "bin", "mlflow", body)
    record = tmp_path / "mlflow-args"
    serve = ["sh", str(INFRA / "mlflow" / "serve.sh")]
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    env = {**_resolved("mlflow", _example_env()), "RECORD": str(record), "PATH": path}
    refused = _run(serve, env)
    assert refused.returncode == EX_CONFIG
    assert "MLFLOW_ADMIN_PASSWORD" in refused.stderr
    assert not record.exists()  # mlflow never started
    env = {**_resolved("mlflow", _real_env()), "RECORD": str(record), "PATH": path}
    started = _run(serve, env)
    assert (started.returncode, started.stderr) == (0, "")
    args = record.read_text().split()
    assert args[0] == "server"
    assert {"--serve-artifacts", "wikilm"} <= set(args)
    # The wikilm app's rules name the worker's account as the pipeline's.
    account = env["WIKILM_PIPELINE_ACCOUNT"]
    assert (tmp_path / "mlflow-args.config").read_text() == f'pipeline_account: "{account}"\n'


def _run_object_store_setup(tmp_path: Path, dotenv: dict[str, str]):
    """Run infra/minio/init.sh as the `buckets` service does, with a stand-in mc.

    The stand-in records each call and keeps each policy it is given.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    record = tmp_path / "mc-calls"
    body = (
        'printf "%s\\n" "$*" >> "$RECORD"\n'
        'if [ "$1 $2 $3" = "admin policy create" ]; then cp "$6" "$RECORD.$5.json"; fi'
    )
    _stand_in(tmp_path / "bin", "mc", body)
    env = {
        **_resolved("buckets", dotenv),
        "RECORD": str(record),
        "TMPDIR": str(tmp_path),
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    script = _script_of("buckets")
    assert script == INFRA / "minio" / "init.sh"
    result = _run(["sh", str(script)], env)
    calls = record.read_text().splitlines() if record.exists() else []
    kept = tmp_path.glob("mc-calls.*.json")
    policies = {p.name.split(".")[1]: json.loads(p.read_text()) for p in kept}
    return result, calls, policies


def test_the_object_store_gets_one_key_per_service_limited_to_its_bucket(tmp_path):
    dotenv = _real_env()
    result, calls, policies = _run_object_store_setup(tmp_path, dotenv)
    assert result.returncode == 0, result.stderr
    # The root account signs in once, here; no service gets it.
    root = dotenv["MINIO_ROOT_PASSWORD"]
    assert [c for c in calls if root in c] == [
        f"alias set store http://minio:9000 {dotenv['MINIO_ROOT_USER']} {root}"
    ]
    for name, service in SERVICES.items():
        uses_root = any("MINIO_ROOT" in str(v) for v in service.get("environment", {}).values())
        assert uses_root == (name in {"minio", "buckets"}), name
    # Each policy: one bucket, its objects; no wildcard action, no admin action.
    buckets = {}
    for name, policy in policies.items():
        resources = {r for s in policy["Statement"] for r in s["Resource"]}
        actions = {a for s in policy["Statement"] for a in s["Action"]}
        assert all(s["Effect"] == "Allow" for s in policy["Statement"])
        assert all(a.startswith("s3:") and "*" not in a for a in actions), actions
        (bucket,) = {r.removeprefix("arn:aws:s3:::").split("/")[0] for r in resources}
        assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        buckets[name] = bucket
    keys = {}
    for call in calls:
        words = call.split()
        if words[:3] == ["admin", "user", "add"]:
            keys[words[4]] = None
            assert words[5] != root
        if words[:3] == ["admin", "policy", "attach"]:
            keys[words[words.index("--user") + 1]] = buckets[words[4]]
    # The MLflow server's key reaches its artifact bucket, the worker's and the data
    # scientists' the DVC remote's, and nothing else.
    mlflow, worker = _resolved("mlflow", dotenv), _resolved("worker", dotenv)
    artifacts = mlflow["MLFLOW_ARTIFACTS_DESTINATION"].removeprefix("s3://").strip("/")
    assert keys == {
        mlflow["AWS_ACCESS_KEY_ID"]: artifacts,
        worker["AWS_ACCESS_KEY_ID"]: dotenv["DVC_BUCKET"],
        dotenv["DVC_S3_ACCESS_KEY_ID"]: dotenv["DVC_BUCKET"],
    }
    assert len({*keys, dotenv["MINIO_ROOT_USER"]}) == 4  # four different accounts
    assert artifacts != dotenv["DVC_BUCKET"]
    # The DVC remote of .dvc/config is the bucket those keys get.
    remote = (REPO / ".dvc" / "config").read_text()
    assert f"url = s3://{dotenv['DVC_BUCKET']}/" in remote
    assert worker["AWS_SECRET_ACCESS_KEY"] == dotenv["WORKER_S3_SECRET_ACCESS_KEY"]


def test_the_object_store_setup_refuses_placeholders_and_shared_keys(tmp_path):
    result, calls, _ = _run_object_store_setup(tmp_path / "example", _example_env())
    assert result.returncode == EX_CONFIG
    assert "MINIO_ROOT_PASSWORD" in result.stderr
    assert calls == []
    shared = {**_real_env(), "WORKER_S3_ACCESS_KEY_ID": "same", "DVC_S3_ACCESS_KEY_ID": "same"}
    result, calls, _ = _run_object_store_setup(tmp_path / "shared", shared)
    assert result.returncode == EX_CONFIG
    assert "'same' is given twice" in result.stderr
    assert calls == []


# -- Prefect's basic auth ------------------------------------------------------------------


def test_the_prefect_server_and_its_clients_share_one_auth_string():
    server = SERVICES["prefect-server"]["environment"]
    worker = SERVICES["worker"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == "${PREFECT_API_AUTH_STRING}"
    assert worker["PREFECT_API_AUTH_STRING"] == "${PREFECT_API_AUTH_STRING}"
    # The names are Prefect's own settings (Prefect 3).
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_SERVER_API_AUTH_STRING

    assert PREFECT_API_AUTH_STRING.name == "PREFECT_API_AUTH_STRING"
    assert PREFECT_SERVER_API_AUTH_STRING.name == "PREFECT_SERVER_API_AUTH_STRING"


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(auth.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # not listening yet


@pytest.mark.timeout(120)
def test_a_real_prefect_server_refuses_clients_without_the_workers_auth_string(tmp_path):
    """Start ``prefect server start`` as the compose file does, on SQLite and loopback.

    Through check-secrets.sh, with the server's environment: the health check stays open,
    the API answers 401 without the auth string and serves Prefect's client with the
    worker's.
    """
    dotenv = _real_env()
    port = free_port()
    argv = list(SERVICES["prefect-server"]["command"])
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    server_env = {
        **_base_env(**_resolved("prefect-server", dotenv)),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "false",
    }
    api = f"http://127.0.0.1:{port}/api"
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [*argv, "--no-services"], cwd=REPO, env=server_env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 90
        while _get(f"{api}/health") != 200:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not start"
            time.sleep(0.5)
        assert _get(f"{api}/hello") == 401
        assert _get(f"{api}/hello", auth="admin:guessed") == 401
        worker_env = {
            **_base_env(**_resolved("worker", dotenv)),
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "client"),
        }
        client = (
            "from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as client:\n"
            "    print(client.hello().status_code)\n"
        )
        result = _run([sys.executable, "-c", client], worker_env)
        assert (result.returncode, result.stdout.strip()) == (0, "200"), result.stderr[-2000:]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
