"""Prefect flows and the wikilm command line.

Two Prefect settings, unless the environment sets them, before anything imports Prefect:
its server's usage reports to Prefect's telemetry service are off (without a network they
fail with an error in every run), and the stages' ``components`` loggers reach the flow
run's logs.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "components")
