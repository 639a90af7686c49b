"""The server's own configuration: who the pipeline is, and the rules that decide promotion.

Read once per worker from the YAML file named by ``WIKILM_SERVER_CONFIG``. The gate's rules
and the four-eyes setting are the server's, not the params.yaml of whoever sends a request.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from components.core.errors import ConfigError
from components.core.schema import Section, format_errors
from components.registry.params import PromoteParams

CONFIG_ENV = "WIKILM_SERVER_CONFIG"


class ServerConfig(Section):
    """What ``WIKILM_SERVER_CONFIG`` holds."""

    # The one account that registers versions of the wikilm models and sets ``challenger``.
    pipeline_account: str
    # The gate's rules and the approval mode; a shared server asks for reviewers by default.
    promote: PromoteParams = PromoteParams(approval="manual")


@lru_cache(maxsize=1)
def server_config() -> ServerConfig:
    """The configuration of this server (read once).

    Raises:
        ConfigError: the variable is unset, the file is missing, or its content is invalid.
    """
    name = os.environ.get(CONFIG_ENV)
    if not name:
        raise ConfigError(
            f"{CONFIG_ENV} is not set: point it at the server's YAML file "
            "(pipeline_account and promote rules; see README, 'A shared server')"
        )
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_ENV}={path}: no such file")
    try:
        return ServerConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as error:
        raise ConfigError(f"{path}: " + "; ".join(format_errors(error))) from None
