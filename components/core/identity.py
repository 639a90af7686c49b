"""Who acts: the name recorded on runs, registrations, approvals and rollbacks."""

from __future__ import annotations

import getpass
import os

USER_ENV = "WIKILM_USER"
# The account signed in to a tracking server with auth: who acts, whatever WIKILM_USER says.
SERVER_USER_ENV = "MLFLOW_TRACKING_USERNAME"


def current_user() -> str:
    """Who acts: the account signed in to the tracking server, else ``WIKILM_USER``, else login."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's arbitrary uid)
        login = "unknown"
    return os.environ.get(SERVER_USER_ENV) or os.environ.get(USER_ENV) or login
