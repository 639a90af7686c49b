"""What every ``wikilm`` command shares: its sub-parser, its ``--params``, its context."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from components.cli import configure_logging
from components.core.paths import Paths
from components.params import Params, load_params
from components.registry.store import CLASSIFIER, LM

MODELS = (CLASSIFIER, LM)
Handler = Callable[[argparse.Namespace], int]


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    help_text: str,
    example: str,
    handler: Handler,
    params_help: str = "params file (default: %(default)s)",
) -> argparse.ArgumentParser:
    """A sub-command with its help, an example, ``--params`` and the function that runs it."""
    parser = commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=f"example: {example}",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help=params_help)
    parser.set_defaults(handler=handler)
    return parser


def load_context(args: argparse.Namespace) -> tuple[Params, Paths]:
    """Logging set up, the validated params and the paths they name (relative to the file)."""
    configure_logging()
    params = load_params(args.params)
    return params, Paths.resolve(params.paths, args.params.resolve().parent)


def positive_seconds(text: str) -> int:
    """An argparse type: a whole number of seconds above zero."""
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds above 0")
    return seconds
