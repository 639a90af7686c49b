"""Prefect flows and the wikilm command line."""
