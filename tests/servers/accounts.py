"""Acting as one account or another on a tracking server with basic auth."""

from __future__ import annotations

import pytest


def act_as(monkeypatch: pytest.MonkeyPatch, server, user: str) -> None:
    """This process is a client signed in as ``user``."""
    for name, value in server.credentials(user).items():
        monkeypatch.setenv(name, value)
    for name in ("WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "someone-else")  # the signed-in account wins


def grant(server, user: str, kind: str, resource: str, permission: str, monkeypatch) -> None:
    """The admin grants ``user`` ``permission`` on a resource (or changes it to that)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    with monkeypatch.context() as admin:
        for name, value in server.credentials("admin").items():
            admin.setenv(name, value)
        client = AuthServiceClient(server.uri)
        try:
            client.grant_user_permission(user, kind, resource, permission)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.revoke_user_permission(user, kind, resource)
            client.grant_user_permission(user, kind, resource, permission)
