"""The ``wikilm`` command line (thin: it composes stages, it never computes).

Examples:
    wikilm run
    wikilm stage ingest
    wikilm stage clean --params params.yaml
    wikilm stages
    wikilm summary
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from components.cli import add_stage_arguments, configure_logging, execute
from components.core.config import Params, load_params
from components.core.errors import WikilmError
from components.core.paths import Paths
from components.core.tracking_server import check_tracking_store, redacted
from components.stages import STAGES, stage_line
from flows.dag import check_pipeline_params
from flows.pipeline import repro, up_to_date
from flows.registry_commands import add_commands

if TYPE_CHECKING:
    from components.registry.promotion import Outcome

log = logging.getLogger(__name__)
# With a Prefect server of its own (a deployment's worker, a team's server), a run is always
# recorded there, even one with nothing to do; the temporary server is started only for work.
PREFECT_API_ENV = "PREFECT_API_URL"


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
    add_stage_arguments(stage)

    summary = commands.add_parser(
        "summary",
        help="one line per stage from its metrics/<stage>.json",
        description="Summarise the last run of each stage from its metrics file.",
        epilog="example: wikilm summary --params params.yaml",
    )
    summary.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file whose paths: section locates metrics/",
    )

    run = commands.add_parser(
        "run",
        help="run the whole pipeline (dvc repro), then register, gate and promote",
        description=(
            "Run every stage that is out of date with `dvc repro`, then register the exported "
            "models, apply the promotion gate and promote (or hold for approval), all under "
            "one MLflow parent run; then print the summary."
        ),
        epilog="example: wikilm run --params params.yaml",
    )
    run.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help=(
            "the project's params.yaml; the pipeline runs in its folder, whose dvc.yaml "
            "stages read it (default: %(default)s)"
        ),
    )
    run.add_argument("--force", action="store_true", help="rerun every stage, even if cached")
    run.add_argument(
        "--no-prefect",
        action="store_true",
        help="plain `dvc repro` and the registry, without the Prefect flow",
    )
    run.add_argument(
        "--approval-timeout",
        type=_positive_seconds,
        default=3600,
        metavar="SECONDS",
        help=(
            "with promote.approval: manual, how long the flow waits for a reviewer before "
            "leaving the version challenger (default: %(default)s)"
        ),
    )

    add_commands(commands)
    commands.add_parser(
        "stages",
        help="list the pipeline stages in order",
        description="List the pipeline stages in order.",
        epilog="example: wikilm stages",
    )
    return parser


def _positive_seconds(text: str) -> int:
    """An argparse type: a whole number of seconds above zero."""
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds above 0")
    return seconds


def print_summary(params_file: Path) -> int:
    """Print one line per stage that has metrics; exit code 1 when none has."""
    params = load_params(params_file)
    paths = Paths.resolve(params.paths, params_file.resolve().parent)
    shown = 0
    for stage in STAGES:
        metrics_file = paths.metrics_file(stage)
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            print(f"{stage:<9} {stage_line(stage, metrics, paths)}")  # noqa: T201 - output
            shown += 1
    if not shown:
        print(f"no metrics under {paths.metrics}: run `dvc repro` first", file=sys.stderr)  # noqa: T201
    return 0 if shown else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wikilm`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "stages":
        print("\n".join(STAGES))  # noqa: T201 - command output
        return 0
    if args.command == "stage":
        return execute(args.stage, args.params, verbose=args.verbose)
    try:
        if args.command == "run":
            return run_pipeline(args.params, args.force, not args.no_prefect, args.approval_timeout)
        if args.command == "summary":
            return print_summary(args.params)
        return args.handler(args)
    except WikilmError as error:
        print(f"error: {args.command}: {error}", file=sys.stderr)  # noqa: T201
        return error.exit_code


def print_champions(paths: Paths) -> None:
    """The champion of each model with the metrics it was promoted on."""
    from components.registry.store import CHAMPION, CLASSIFIER, LM, Registry, version_metrics

    registry = Registry(paths)
    for model in (CLASSIFIER, LM):
        champion = registry.alias(model, CHAMPION)
        if champion is None:
            print(f"{model:<18} no champion yet")  # noqa: T201
            continue
        shown = ", ".join(f"{k} {v:.3f}" for k, v in version_metrics(champion).items())
        print(f"{model:<18} champion v{champion.version} ({shown})")  # noqa: T201


def _outcome(outcome: Outcome) -> dict:
    return {"model": outcome.model, "version": outcome.version, "status": outcome.status}


def _outcomes_without_work(
    params: Params, paths: Paths, force: bool, prefect: bool
) -> list[dict] | None:
    """The registry's answer when a run has nothing to do; None when it must run.

    Nothing to do: no stage DVC would rerun and the export registered already. Then no
    Prefect server is started and no MLflow run opened, unless a Prefect server is set, on
    which the run is recorded.
    """
    if force or (prefect and os.environ.get(PREFECT_API_ENV)):
        return None
    known = up_to_date(params, paths)
    if known is not None:
        log.info("run: every stage is up to date and the export is registered already")
    return None if known is None else [_outcome(o) for o in known]


def run_pipeline(
    params_file: Path, force: bool = False, prefect: bool = True, approval_timeout_s: int = 3600
) -> int:
    """``wikilm run``: the pipeline (under Prefect unless asked not to), then the summary."""
    configure_logging()
    check_pipeline_params(params_file)
    params = load_params(params_file)
    paths = Paths.resolve(params.paths, params_file.resolve().parent)
    check_tracking_store(paths.root)  # before any stage runs or any version is registered
    outcomes = _outcomes_without_work(params, paths, force, prefect)
    if outcomes is None and prefect:
        from flows.dag import dvc_stages
        from flows.pipeline_flow import wikilm_pipeline

        dvc_stages(paths.root)  # a missing or misordered dvc.yaml fails before Prefect starts
        result = wikilm_pipeline(
            params_file=str(params_file), force=force, approval_timeout_s=approval_timeout_s
        )
        outcomes = result["promotion"]
    elif outcomes is None:
        outcomes = [_outcome(o) for o in repro(params, paths, force)]
    print_summary(params_file)
    for outcome in outcomes:
        print(f"{outcome['model']:<18} v{outcome['version']}: {outcome['status']}")  # noqa: T201
    if outcomes:
        print_champions(paths)
    server = os.environ.get("MLFLOW_TRACKING_URI")
    runs = (
        f"runs: {redacted(server)}"
        if server
        else "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    )
    print(  # noqa: T201 - command output
        "more: dvc metrics show | dvc plots show | wikilm history wikilm-classifier | "
        f'wikilm predict "some text" | {runs}'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
