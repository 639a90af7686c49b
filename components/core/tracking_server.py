"""The tracking store: where it is, whether it answers, and patience while it does not.

The URI comes from ``MLFLOW_TRACKING_URI``; without it, an embedded SQLite store in the
repository root (``mlflow.db``), so nothing needs a server. ``WIKILM_TRACKING=off`` turns
tracking off. A store that cannot be reached when a run starts is reported at once, in one
line, its password hidden; one that stops answering later is waited for with backoff for
``WIKILM_TRACKING_PATIENCE_S`` seconds (15 minutes by default) beyond MLflow's own retries,
and only then is the error :class:`Unreachable` (exit code 75, which the flow retries).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from components.core.errors import Unreachable

log = logging.getLogger(__name__)

SWITCH_ENV = "WIKILM_TRACKING"
PATIENCE_ENV = "WIKILM_TRACKING_PATIENCE_S"
DEFAULT_PATIENCE_S = 900.0
_MAX_BACKOFF_S = 30.0

T = TypeVar("T")


def redacted(uri: str) -> str:
    """``uri`` with its password, if it has one, shown as ``***``."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the tracking server did not answer (rather than refused)."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    if isinstance(error, RequestsConnectionError):
        return True
    # MLflow reports a connection failure after its own retries as an internal error (500),
    # and a server whose database is down answers 5xx.
    return isinstance(error, MlflowException) and error.get_http_status_code() >= 500


def patiently(call: Callable[[], T], uri: str, what: str) -> T:
    """``call()``, retried with exponential backoff while the tracking server is unreachable.

    Retried calls must be idempotent: batches carry their own timestamps, and the store
    ignores a metric it already holds.

    Raises:
        Unreachable: the server did not answer within the patience.
    """
    patience = float(os.environ.get(PATIENCE_ENV, DEFAULT_PATIENCE_S))
    deadline = time.monotonic() + patience
    delay, outage = 1.0, False
    while True:
        try:
            result = call()
        except Exception as error:
            if not unreachable(error):
                raise
            if time.monotonic() + delay > deadline:
                raise Unreachable(
                    f"the tracking server {redacted(uri)} did not answer for {patience:.0f} s "
                    f"({what}); set {PATIENCE_ENV} to wait longer"
                ) from None
            if not outage:
                log.warning(
                    "the tracking server %s does not answer (%s): retrying for up to %.0f s",
                    redacted(uri),
                    what,
                    patience,
                )
            outage = True
            time.sleep(delay)
            delay = min(2 * delay, _MAX_BACKOFF_S)
            continue
        if outage:
            log.info("the tracking server %s answers again", redacted(uri))
        return result


def tracking_enabled() -> bool:
    """False when ``WIKILM_TRACKING`` says off."""
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in {"off", "0", "false", "no"}


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI``, else the embedded SQLite store in ``root``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def check_reachable(uri: str, timeout_s: float = 10) -> None:
    """Fail at once, in one line, when the tracking store at ``uri`` does not answer.

    A server (http/https) must answer its health check; a database store (PostgreSQL,
    MySQL) must accept a connection. MLflow's own retries would take minutes to say so.

    Raises:
        Unreachable: it does not; the message names ``uri`` with its password hidden.
    """
    scheme = urlsplit(uri).scheme
    if scheme in {"http", "https"}:
        reason = _health(uri, timeout_s)
    elif scheme.split("+")[0] in {"postgresql", "mysql", "mssql"}:
        reason = _connects(uri, timeout_s)
    else:
        return  # a local file or SQLite store: created on first use
    if reason:
        raise Unreachable(f"the tracking store {redacted(uri)} cannot be reached: {reason}")


def check_tracking_store(root: Path) -> None:
    """Before a run: a tracking store named by ``MLFLOW_TRACKING_URI`` must answer.

    Raises:
        Unreachable: it does not (see :func:`check_reachable`).
    """
    if tracking_enabled() and os.environ.get("MLFLOW_TRACKING_URI"):
        check_reachable(tracking_uri(root))


def _health(uri: str, timeout_s: float) -> str | None:
    import urllib.error
    import urllib.request

    parts = urlsplit(uri)
    # Credentials in the URI are for MLflow's client; the health check needs none.
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
    try:
        urllib.request.urlopen(f"{bare.rstrip('/')}/health", timeout=timeout_s)  # noqa: S310
    except urllib.error.HTTPError:
        return None  # it answers (an auth proxy may refuse the unauthenticated check)
    except OSError as error:
        return str(getattr(error, "reason", error))
    return None


def _connects(uri: str, timeout_s: float) -> str | None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": int(timeout_s)})
    try:
        with engine.connect():
            return None
    except sqlalchemy.exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return first.replace(urlsplit(uri).password or "\0", "***")
    finally:
        engine.dispose()
