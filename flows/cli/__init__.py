"""The ``wikilm`` command line (thin: it composes stages and the registry, never computes).

One sub-command per action, grouped by who uses it:

- :mod:`flows.cli.pipeline`: run, stage, stages, summary, status, deploy;
- :mod:`flows.cli.registry`: approve, reject, promote, history, rollback;
- :mod:`flows.cli.serving`: predict, generate, serve.

Errors a user can act on end with one line on stderr and the error's exit code.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version

from components.core.errors import WikilmError
from flows.cli.pipeline import add_pipeline_commands
from flows.cli.registry import add_registry_commands
from flows.cli.serving import add_serving_commands


def build_parser() -> argparse.ArgumentParser:
    """The ``wikilm`` argument parser, one sub-command per action."""
    parser = argparse.ArgumentParser(
        prog="wikilm",
        description="Train language models from Wikipedia dumps, reproducibly.",
        epilog="example: wikilm stage ingest --params params.yaml",
    )
    parser.add_argument("--version", action="version", version=f"wikilm {version('wikilm')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_pipeline_commands(commands)
    add_registry_commands(commands)
    add_serving_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wikilm`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except WikilmError as error:
        print(f"error: {args.command}: {error}", file=sys.stderr)  # noqa: T201
        return error.exit_code
