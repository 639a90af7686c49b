"""Who may decide on a model: the reviewer's identity and MANAGE permission on the server.

On a tracking server with basic auth (``mlflow server --app-name basic-auth``) the reviewer is
whoever signed in (``MLFLOW_TRACKING_USERNAME``): nobody approves in another's name, so the
four-eyes rule compares authenticated accounts. Approving, rejecting and rolling back also
need MANAGE permission on the registered model (MLflow itself lets EDIT move aliases) and
EDIT on the history experiment; both are asked of the server before any change. Elsewhere
(the embedded store, a server without auth) there are no accounts and both checks pass.
"""

from __future__ import annotations

import os

from components.core.identity import SERVER_USER_ENV, current_user
from components.registry.store import HISTORY_EXPERIMENT, Registry, RegistryError

MANAGE = "MANAGE"
RECORDING = {"EDIT", MANAGE}  # permissions that let a user add runs to an experiment


def acting_reviewer(requested: str | None) -> str:
    """The reviewer who acts: the signed-in account, or ``requested``, or the current user.

    Raises:
        RegistryError: signed in to the tracking server as one account, deciding as another.
    """
    signed_in = os.environ.get(SERVER_USER_ENV)
    if signed_in and requested and requested != signed_in:
        raise RegistryError(
            f"signed in to the tracking server as {signed_in}: a decision cannot be recorded "
            f"as {requested} (leave out --reviewer, or sign in as {requested})"
        )
    return requested or current_user()


def require_manage(registry: Registry, model: str, reviewer: str) -> None:
    """Refuse a decision unless the server lets ``reviewer`` make and record it in full.

    A decision moves aliases of ``model`` (MANAGE on it) and appends an event to the history
    experiment (EDIT on it): both are checked before anything changes, so a refusal leaves
    no half-made decision behind.

    Raises:
        RegistryError: the server has auth and the reviewer lacks either permission.
    """
    permission = server_permission(registry, "registered_model", model, reviewer)
    if permission is not None and permission != MANAGE:
        raise RegistryError(
            f"{reviewer} has {permission} permission on {model}: approving, rejecting and "
            f"rolling back need {MANAGE} (an MLflow admin grants it on the registered model)"
        )
    history = registry.client.get_experiment_by_name(HISTORY_EXPERIMENT)
    if permission is None or history is None:
        return
    permission = server_permission(registry, "experiment", history.experiment_id, reviewer)
    if permission not in RECORDING:
        raise RegistryError(
            f"{reviewer} has {permission} permission on the experiment {HISTORY_EXPERIMENT}: "
            "recording a decision needs EDIT (an MLflow admin grants it on the experiment)"
        )


def server_permission(registry: Registry, kind: str, resource: str, user: str) -> str | None:
    """``user``'s effective permission on a ``kind`` resource; None where there is no auth."""
    if not (registry.uri.startswith(("http://", "https://")) and os.environ.get(SERVER_USER_ENV)):
        return None
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    try:
        return AuthServiceClient(registry.uri).get_user_permission(user, kind, resource).permission
    except MlflowException as error:
        if error.get_http_status_code() == 404:  # no auth app: its routes do not exist
            return None
        raise RegistryError(
            f"the tracking server did not tell {user}'s permission on {kind} {resource}: "
            f"{error.message}"
        ) from None
