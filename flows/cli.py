"""The ``wikilm`` command line (thin: it composes stages, it never computes).

Examples:
    wikilm stage ingest
    wikilm stage clean --params params.yaml
    wikilm stages
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from components.cli import execute
from components.stages import STAGE_MODULES


def build_parser() -> argparse.ArgumentParser:
    """The ``wikilm`` argument parser, one sub-command per action."""
    parser = argparse.ArgumentParser(
        prog="wikilm",
        description="Train language models from Wikipedia dumps, reproducibly.",
        epilog="example: wikilm stage ingest --params params.yaml",
    )
    parser.add_argument("--version", action="version", version=f"wikilm {version('wikilm')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stage = commands.add_parser(
        "stage",
        help="run one pipeline stage (as dvc.yaml does)",
        description="Run one pipeline stage and write metrics/<stage>.json.",
        epilog="example: wikilm stage clean --params params.yaml",
    )
    stage.add_argument("name", choices=list(STAGE_MODULES), help="the stage")
    stage.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    stage.add_argument("-v", "--verbose", action="store_true", help="log debug messages")

    commands.add_parser(
        "stages",
        help="list the pipeline stages in order",
        description="List the pipeline stages in order.",
        epilog="example: wikilm stages",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wikilm`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "stages":
        print("\n".join(STAGE_MODULES))  # noqa: T201 - command output
        return 0
    return execute(args.name, args.params, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
