"""``mlflow server --app-name wikilm``: MLflow's basic-auth app with the wikilm rules.

Registered as the ``mlflow.app`` entry point ``wikilm`` (pyproject.toml). On top of basic
auth it adds the guard of :mod:`.policy` to every request, records each new version of the
wikilm models with the server's gate verdict, and serves the JSON endpoints (:mod:`.api`) and
the reviewers' page (:mod:`.page`). Configured by ``WIKILM_SERVER_CONFIG`` (:mod:`.config`)
and MLflow's own auth settings (``MLFLOW_AUTH_CONFIG_PATH``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request

from components.registry.server import decisions
from components.registry.server.api import api, context
from components.registry.server.config import server_config
from components.registry.server.page import page
from components.registry.server.policy import MODELS, guard, guarded_routes


def create_app(app: Flask | None = None) -> Any:
    """The server app: basic auth, then the wikilm guard, endpoints and page.

    Returns what MLflow's basic-auth factory returns (a FastAPI app under uvicorn).
    """
    from mlflow.protos.model_registry_pb2 import CreateModelVersion
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as basic_auth

    flask_app = app or mlflow_app
    server_config()  # a missing or invalid configuration stops the server at once
    flask_app.register_blueprint(api)
    flask_app.register_blueprint(page)
    served = basic_auth(flask_app)
    # After basic auth's hooks: the guard needs the authenticated user they set.
    flask_app.before_request(guard(server_config))
    flask_app.after_request(_record_new_versions(CreateModelVersion))
    _let_signed_in_users_reach(flask_app)
    return served


def _record_new_versions(kind: type) -> Any:
    """An ``after_request`` hook: each new wikilm version gets the server's gate row."""

    def record(response: Response) -> Response:
        created = guarded_routes().get((request.path, request.method)) is kind
        if not created or response.status_code != 200:
            return response
        version = (response.get_json(silent=True) or {}).get("model_version", {})
        if version.get("name") in MODELS:
            decisions.registered(
                context(), g.mlflow_authenticated_user, version["name"], str(version["version"])
            )
        return response

    return record


def _let_signed_in_users_reach(flask_app: Flask) -> None:
    """Open the wikilm routes to every signed-in user; each view checks its own rules.

    MLflow's basic auth refuses routes it has no validator for (fail-closed), so each route
    gets one that lets any authenticated account through to the view.
    """
    from mlflow.server.auth import BEFORE_REQUEST_VALIDATORS

    for rule in flask_app.url_map.iter_rules():
        if rule.rule.startswith("/wikilm/"):
            for method in rule.methods or ():
                BEFORE_REQUEST_VALIDATORS[(rule.rule, method)] = _signed_in


def _signed_in() -> bool:
    return True
