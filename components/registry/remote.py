"""The client of a tracking server that runs the wikilm app (``mlflow server --app-name wikilm``).

Where the server keeps the promotion rules, ``wikilm``'s commands and the pipeline ask it to
decide instead of deciding themselves: they call its ``/wikilm/api`` endpoints with the
user's own MLflow credentials (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, the credentials file
``~/.mlflow/credentials``, or ``user:password@`` in the tracking URI), and the server acts as
whoever it authenticated.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from components.core.tracking_server import redacted
from components.registry.store import RegistryError

API = "/wikilm/api"


class ServerApp:
    """The wikilm endpoints of one tracking server, called as the signed-in user."""

    def __init__(self, uri: str, config: dict[str, Any]) -> None:
        self.uri = uri
        self.config = config  # the server's rules, its pipeline account, who is signed in

    @property
    def user(self) -> str:
        """The account the server authenticated."""
        return self.config["user"]

    def get(self, endpoint: str, **params: str) -> Any:
        """GET ``/wikilm/api/<endpoint>``: its JSON answer."""
        return _call(self.uri, endpoint, "GET", params=params)

    def post(self, endpoint: str, **payload: Any) -> Any:
        """POST JSON to ``/wikilm/api/<endpoint>``: its JSON answer.

        Raises:
            RegistryError: the server refused, with its one-line reason.
        """
        return _call(self.uri, endpoint, "POST", json=payload)

    def delete(self, endpoint: str, **payload: Any) -> Any:
        """DELETE with a JSON body at ``/wikilm/api/<endpoint>``: its JSON answer."""
        return _call(self.uri, endpoint, "DELETE", json=payload)


def _call(uri: str, endpoint: str, method: str, **request: Any) -> Any:
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(
        get_default_host_creds(uri), f"{API}/{endpoint}", method, max_retries=0, **request
    )
    if response.status_code == 200:
        return response.json()
    try:
        message = response.json()["message"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {response.status_code} from {redacted(uri)}{API}/{endpoint}"
    raise RegistryError(message)


def server_app(uri: str) -> ServerApp | None:
    """The wikilm app of the tracking server at ``uri``, or None if it does not run one."""
    if not uri.startswith(("http://", "https://")):
        return None
    from mlflow.utils.credentials import read_mlflow_creds

    return _detect(uri, read_mlflow_creds().username)


@lru_cache(maxsize=8)
def _detect(uri: str, username: str | None) -> ServerApp | None:
    """Asked once per server and account: a plain server has no such route (404 or 403)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    response = http_request(get_default_host_creds(uri), f"{API}/config", "GET", max_retries=3)
    if response.status_code == 401:
        raise RegistryError(
            f"the tracking server {redacted(uri)} did not accept the credentials of "
            f"{username or 'nobody'} (MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials)"
        )
    if response.status_code != 200:
        return None
    return ServerApp(uri, response.json())
