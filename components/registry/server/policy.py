"""The guard in front of MLflow's registry endpoints: the wikilm models' rules, per request.

It runs after basic auth has authenticated the request and MLflow's own permissions allowed
it, whatever client sent it (``wikilm``, a plain ``MlflowClient``, ``curl``, the MLflow UI):

- only the pipeline account creates the wikilm models and their versions, and moves
  ``challenger``;
- ``champion`` never moves through an alias call: only the server's approve, promote and
  rollback move it (:mod:`components.registry.server.decisions`);
- ``wikilm.*`` tags are written once, when the pipeline registers a version; after that only
  the server's decisions write them;
- the models are never renamed or deleted, nor their versions: the history refers to them.

A refusal is a 403 in MLflow's error format, with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from flask import Response, g, jsonify, request
from mlflow.protos import model_registry_pb2 as registry

from components.registry.server.config import ServerConfig
from components.registry.store import CHALLENGER, CHAMPION, CLASSIFIER, LM

MODELS = (CLASSIFIER, LM)
SERVER_WRITTEN = ("wikilm.approval", "wikilm.gate")  # tag prefixes only decisions write
Rule = Callable[[dict[str, Any], str, ServerConfig], str | None]


def _owner_only(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    if user == config.pipeline_account:
        return None
    return f"only the pipeline account ({config.pipeline_account}) registers the wikilm models"


def _create_version(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    if refusal := _owner_only(params, user, config):
        return refusal
    written = [t.get("key", "") for t in params.get("tags") or []]
    if any(key.startswith(SERVER_WRITTEN) for key in written):
        return "the gate's verdict and approval tags are written by the server, not at registration"
    return None


def _rename(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    return "the wikilm models keep their names: their history refers to them"


def _delete(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    return "the wikilm models and their versions are never deleted: their history refers to them"


def _tag(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    if not str(params.get("key", "")).startswith("wikilm."):
        return None
    return (
        "wikilm.* tags are written once, when the pipeline registers a version; after that "
        "only the server's decisions write them"
    )


def _alias(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    name = params.get("alias")
    if name == CHAMPION:
        return (
            "champion moves only through the server's approve and rollback "
            "(wikilm approve / wikilm rollback, or the approval page /wikilm/approvals)"
        )
    if name == CHALLENGER and user != config.pipeline_account:
        return f"only the pipeline account ({config.pipeline_account}) sets challenger"
    return None


def _stage(params: dict[str, Any], user: str, config: ServerConfig) -> str | None:
    return "the wikilm models use the aliases challenger and champion, not stages"


RULES: dict[type, Rule] = {
    registry.CreateRegisteredModel: _owner_only,
    registry.CreateModelVersion: _create_version,
    registry.RenameRegisteredModel: _rename,
    registry.DeleteRegisteredModel: _delete,
    registry.DeleteModelVersion: _delete,
    registry.SetModelVersionTag: _tag,
    registry.DeleteModelVersionTag: _tag,
    registry.SetRegisteredModelTag: _tag,
    registry.DeleteRegisteredModelTag: _tag,
    registry.SetRegisteredModelAlias: _alias,
    registry.DeleteRegisteredModelAlias: _alias,
    registry.TransitionModelVersionStage: _stage,
}


@lru_cache(maxsize=1)
def guarded_routes() -> dict[tuple[str, str], type]:
    """(path, method) of every REST and AJAX route of the guarded requests."""
    from mlflow.server.handlers import get_endpoints

    routes = {}
    for path, request_class, methods in get_endpoints(lambda kind: kind if kind in RULES else None):
        if request_class in RULES:
            routes |= {(path, method): request_class for method in methods}
    return routes


def request_params() -> dict[str, Any]:
    """The request's parameters, from its JSON body or its query string."""
    body = request.get_json(silent=True) if request.data else None
    return body if isinstance(body, dict) else request.args.to_dict()


def names_a_wikilm_model(params: dict[str, Any]) -> bool:
    """Whether the request is about a wikilm model (by its name, or the name it would take)."""
    return bool({params.get("name"), params.get("new_name")} & set(MODELS))


def refusal(reason: str, status: int = 403) -> Response:
    """A refusal in MLflow's error format, so every client shows the reason."""
    response = jsonify({"error_code": "PERMISSION_DENIED", "message": reason})
    response.status_code = status
    return response


def guard(config: Callable[[], ServerConfig]) -> Callable[[], Response | None]:
    """The ``before_request`` hook that applies :data:`RULES` (after basic auth's own)."""

    def check() -> Response | None:
        kind = guarded_routes().get((request.path, request.method))
        if kind is None:
            return None
        params = request_params()
        if not names_a_wikilm_model(params):
            return None
        user = getattr(g, "mlflow_authenticated_user", None) or ""
        reason = RULES[kind](params, user, config())
        return None if reason is None else refusal(reason)

    return check
