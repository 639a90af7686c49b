"""The server's JSON endpoints under ``/wikilm/api``: state, history, decisions, reviewers.

``wikilm approve``/``reject``/``rollback``/``history``, the pipeline's registration and the
Prefect flow's wait call these with the caller's own MLflow credentials; the caller is whoever
basic auth authenticated, never a name in the request. Errors use MLflow's error format.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from components.registry.gate import Decision
from components.registry.server import decisions, records
from components.registry.server.config import server_config
from components.registry.server.decisions import Context, Refused
from components.registry.store import CHAMPION, EVIDENCE_TAG, version_metrics

api = Blueprint("wikilm_api", __name__, url_prefix="/wikilm/api")
ERROR_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "INVALID_STATE",
}


def context() -> Context:
    """The rules, the server's database (the auth database) and MLflow's registry store."""
    from mlflow.server.auth import auth_config
    from mlflow.server.handlers import _get_model_registry_store

    db = records.engine(auth_config.database_uri)
    return Context(server_config(), db, _get_model_registry_store())


def signed_in() -> str:
    """The account basic auth authenticated for this request."""
    return g.mlflow_authenticated_user


def is_admin(user: str) -> bool:
    """Whether ``user`` is an MLflow admin."""
    from mlflow.server.auth import store

    return store.get_user(user).is_admin


def error(message: str, status: int) -> Response:
    """An error in MLflow's format: clients raise it with the message."""
    code = ERROR_CODES.get(status, "INTERNAL_ERROR")
    response = jsonify({"error_code": code, "message": message})
    response.status_code = status
    return response


def answers(view: Callable[..., Any]) -> Callable[..., Response]:
    """JSON out, refusals as MLflow errors; writes must be JSON (no cross-site form posts)."""

    @wraps(view)
    def wrapped() -> Response:
        if request.method != "GET" and not request.is_json:
            return error("send the request as JSON (Content-Type: application/json)", 400)
        try:
            return jsonify(view())
        except Refused as refused:
            return error(refused.message, refused.status)
        except KeyError as missing:
            return error(f"missing parameter {missing}", 400)

    return wrapped


def body() -> dict[str, Any]:
    """The JSON body of a write."""
    return request.get_json(silent=True) or {}


def decision_view(decision: Decision) -> dict[str, Any]:
    """A gate decision as JSON."""
    return {"passed": decision.passed, "reasons": decision.reasons}


def version_view(ctx: Context, rows: list[records.Row], model: str, version: Any) -> dict:
    """What reviewers see of a version: status, gate, author, metrics, evidence, run."""
    number = str(version.version)
    evidence = version.tags.get(EVIDENCE_TAG)
    return {
        "model": model,
        "version": number,
        "status": decisions.status(ctx, rows, model, version),
        "gate": decision_view(decisions.gate_decision(version, ctx.config)),
        "author": decisions.author(rows, number),
        "metrics": version_metrics(version),
        "evidence": json.loads(evidence) if evidence else None,
        "run_id": version.run_id,
        "champion": decisions.alias(ctx, model, CHAMPION) == number,
    }


def model_rows(ctx: Context, model: str) -> list[records.Row]:
    """The decision rows of ``model``."""
    with ctx.db.connect() as connection:
        return records.history(connection, model)


def versions_of(ctx: Context, model: str) -> list[dict]:
    """Every version of ``model``, newest first, as :func:`version_view` shows it."""
    rows = model_rows(ctx, model)
    found = ctx.store.search_model_versions(f"name = '{model.replace(chr(39), '')}'")
    ordered = sorted(found, key=lambda v: int(v.version), reverse=True)
    return [version_view(ctx, rows, model, v) for v in ordered]


@api.get("/config")
@answers
def config_view() -> dict:
    """The server's rules, its pipeline account, and who is signed in."""
    config = server_config()
    return {
        "pipeline_account": config.pipeline_account,
        "promote": config.promote.model_dump(mode="json"),
        "user": signed_in(),
    }


@api.get("/versions")
@answers
def versions_view() -> list[dict]:
    """Every version of a model with where it stands."""
    return versions_of(context(), request.args["model"])


@api.get("/version")
@answers
def one_version_view() -> dict:
    """Where one version stands (the Prefect flow polls this while it waits)."""
    ctx = context()
    model, number = request.args["model"], request.args["version"]
    version = decisions.model_version(ctx, model, number)
    return version_view(ctx, model_rows(ctx, model), model, version)


@api.get("/history")
@answers
def history_view() -> list[dict]:
    """Every decision row of a model, oldest first."""
    return [row.__dict__ for row in model_rows(context(), request.args["model"])]


@api.post("/approve")
@answers
def approve_view() -> dict:
    """A reviewer approves a version: it becomes champion."""
    b = body()
    row = decisions.approve(context(), signed_in(), b["model"], str(b["version"]), b["reason"])
    return row.__dict__


@api.post("/reject")
@answers
def reject_view() -> dict:
    """A reviewer rejects a version."""
    b = body()
    row = decisions.reject(context(), signed_in(), b["model"], str(b["version"]), b["reason"])
    return row.__dict__


@api.post("/promote")
@answers
def promote_view() -> dict:
    """The pipeline account promotes a version that passed (where approval is automatic)."""
    b = body()
    return decisions.promote(context(), signed_in(), b["model"], str(b["version"])).__dict__


@api.post("/rollback")
@answers
def rollback_view() -> dict:
    """A reviewer restores the previous champion."""
    b = body()
    return decisions.rollback(context(), signed_in(), b["model"], b["reason"]).__dict__


@api.get("/reviewers")
@answers
def reviewers_view() -> list[str]:
    """The reviewers' group."""
    with context().db.connect() as connection:
        return records.list_reviewers(connection)


@api.post("/reviewers")
@answers
def add_reviewer_view() -> list[str]:
    """An admin adds a reviewer."""
    return _change_reviewers(lambda c, name: records.add_reviewer(c, name, signed_in()))


@api.delete("/reviewers")
@answers
def remove_reviewer_view() -> list[str]:
    """An admin removes a reviewer."""
    return _change_reviewers(records.remove_reviewer)


def _change_reviewers(change: Callable[[Any, str], None]) -> list[str]:
    if not is_admin(signed_in()):
        raise Refused(f"{signed_in()} is not an admin: only admins change the reviewers' group")
    from mlflow.server.auth import store

    name = body()["username"]
    if not store.has_user(name):
        raise Refused(f"{name} has no account on this server (create it first)", 404)
    with context().db.begin() as connection:
        change(connection, name)
        return records.list_reviewers(connection)
