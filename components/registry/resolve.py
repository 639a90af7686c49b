"""Which version an alias names, and the serving digest recorded with it, without MLflow.

``wikilm predict`` needs two facts before it can answer from its model cache: the version
that ``champion`` points to and that version's ``wikilm.serving_digest`` tag. Importing
MLflow for them would cost seconds, so they are read directly where that is simple and
stable: one read-only query of the embedded SQLite store (MLflow's tables
``registered_model_aliases`` and ``model_version_tags``), or one call of the tracking
server's REST API (``GET /api/2.0/mlflow/registered-models/alias``) with the user's MLflow
credentials. Any other store, and a SQLite store whose tables look different, is asked
through MLflow's client.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import sqlite3
import ssl
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from components.core.errors import Unreachable
from components.core.tracking_server import redacted
from components.registry.packaging import DIGEST_TAG
from components.registry.store import RegistryError

ALIAS_API = "/api/2.0/mlflow/registered-models/alias"
TIMEOUT_S = 30.0
# MLflow's workspaces (off by default) scope names; a store with them on is asked by MLflow.
DEFAULT_WORKSPACE = "default"
_SQLITE_QUERY = """
SELECT a.version, t.value
FROM registered_model_aliases AS a
LEFT JOIN model_version_tags AS t
  ON t.workspace = a.workspace AND t.name = a.name AND t.version = a.version AND t.key = ?
WHERE a.workspace = ? AND a.name = ? AND a.alias = ?
"""


@dataclass(frozen=True)
class Resolved:
    """The version an alias of a model points to, and its serving digest (None: untagged)."""

    model: str
    alias: str
    version: str
    digest: str | None


def resolve(uri: str, model: str, alias: str) -> Resolved | None:
    """The version ``alias`` of ``model`` points to in the store at ``uri`` (None: no alias).

    Raises:
        RegistryError: the store refused the request (credentials, permissions).
        Unreachable: the tracking server did not answer.
    """
    scheme = urlsplit(uri).scheme
    workspaces = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in {"1", "true"}
    if scheme == "sqlite" and not workspaces:
        return from_sqlite(uri, model, alias)
    if scheme in {"http", "https"} and not _custom_auth():
        return from_rest(uri, model, alias)
    return from_client(uri, model, alias)


def from_sqlite(uri: str, model: str, alias: str) -> Resolved | None:
    """One read-only query of an embedded store (a missing file: no alias, nothing created)."""
    database = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if not database.is_file():
        return None
    try:
        # mode=ro: reading never creates, locks for writing or migrates the store.
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute(_SQLITE_QUERY, (DIGEST_TAG, DEFAULT_WORKSPACE, model, alias))
            found = rows.fetchone()
    except sqlite3.DatabaseError:  # another schema (or none yet): MLflow knows its own
        return from_client(uri, model, alias)
    if found is None:
        return None
    return Resolved(model, alias, str(found[0]), found[1])


def from_rest(uri: str, model: str, alias: str) -> Resolved | None:
    """One call of the server's REST API, with the user's MLflow credentials."""
    parts = urlsplit(uri)
    base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")
    query = urlencode({"name": model, "alias": alias})
    request = urllib.request.Request(f"{base}{ALIAS_API}?{query}", headers=auth_headers(uri))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=_tls()) as response:  # noqa: S310
            version = json.load(response)["model_version"]
    except urllib.error.HTTPError as error:
        _unless_absent(error, uri, model, alias)
        return None
    except OSError as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(
            f"the tracking server {redacted(uri)} cannot be reached: {reason}"
        ) from None
    tags = {tag["key"]: tag.get("value") for tag in version.get("tags", [])}
    return Resolved(model, alias, str(version["version"]), tags.get(DIGEST_TAG))


def _unless_absent(error: urllib.error.HTTPError, uri: str, model: str, alias: str) -> None:
    """Raise for a refusal, unless it says that the alias (or model) does not exist.

    Raises:
        RegistryError: the server refused the request (credentials, permissions, other).
    """
    try:
        body = json.loads(error.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") or str(error.reason)
    if _absent(body.get("error_code", ""), message):
        return
    if error.code == 401:
        raise RegistryError(
            f"the tracking server {redacted(uri)} refused to say which version is {model}'s "
            f"{alias} (HTTP 401): sign in with MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, or ~/.mlflow/credentials"
        )
    if error.code == 403:  # MLflow's basic auth answers so for a model that does not exist
        raise RegistryError(
            f"the tracking server {redacted(uri)} refused to say which version is {model}'s "
            f"{alias} (HTTP 403): {model} does not exist there yet, or your account may not "
            "read it (an MLflow admin grants READ)"
        )
    raise RegistryError(
        f"the tracking server {redacted(uri)} failed to resolve {model}@{alias} "
        f"(HTTP {error.code}): {message}"
    )


def _absent(error_code: str, message: str) -> bool:
    """Whether MLflow's error says the model or its alias does not exist."""
    # A missing alias is an invalid parameter to MLflow ("Registered model alias x not found").
    return error_code == "RESOURCE_DOES_NOT_EXIST" or (
        error_code == "INVALID_PARAMETER_VALUE" and "not found" in message
    )


def auth_headers(uri: str) -> dict[str, str]:
    """The Authorization header MLflow's client would send to the server at ``uri``.

    Username and password from ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, else from
    ``~/.mlflow/credentials``; else a bearer ``MLFLOW_TRACKING_TOKEN``; else ``user:pass@``
    in the URI itself. None of them: no header.
    """
    user, password = _credentials()
    if not (user and password) and (token := os.environ.get("MLFLOW_TRACKING_TOKEN")):
        return {"Authorization": f"Bearer {token}"}
    if not (user and password):
        parts = urlsplit(uri)
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not (user and password):
        return {}
    pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {pair}"}


def _credentials() -> tuple[str | None, str | None]:
    """Username and password: each from the environment, else from MLflow's credentials file."""
    config = configparser.ConfigParser()
    config.read(Path("~/.mlflow/credentials").expanduser())
    section = config["mlflow"] if config.has_section("mlflow") else {}
    return (
        os.environ.get("MLFLOW_TRACKING_USERNAME") or section.get("mlflow_tracking_username"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD") or section.get("mlflow_tracking_password"),
    )


def _custom_auth() -> bool:
    """Whether MLflow's client is set up to sign requests in a way only it knows."""
    return any(
        os.environ.get(name)
        for name in (
            "MLFLOW_TRACKING_AUTH",
            "MLFLOW_TRACKING_AWS_SIGV4",
            "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        )
    )


def _tls() -> ssl.SSLContext | None:
    """TLS as MLflow's client verifies it: its CA bundle, or no check when told so."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in {"1", "true"}:
        return ssl._create_unverified_context()  # noqa: S323 - the user asked for it
    if cafile := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        return ssl.create_default_context(cafile=cafile)
    return None


def from_client(uri: str, model: str, alias: str) -> Resolved | None:
    """Ask MLflow's client (any store MLflow supports)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = client.get_model_version_by_alias(model, alias)
    except MlflowException as error:
        if _absent(error.error_code, error.message):
            return None
        raise RegistryError(f"{model}@{alias} cannot be resolved: {error.message}") from None
    return Resolved(model, alias, str(version.version), version.tags.get(DIGEST_TAG))
