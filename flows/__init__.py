"""Prefect flows and the wikilm command line.

Prefect settings, unless the environment sets them, before anything imports Prefect: its
server's usage reports to Prefect's telemetry service are off (without a network they fail
with an error in every run), and the stages' ``components`` loggers reach the flow run's
logs when there is one.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "components")
# The same loggers also run outside flows (a stage run by DVC, a registry command): their
# records stay local there instead of a warning that no flow run is active.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
