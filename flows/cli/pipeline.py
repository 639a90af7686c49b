"""``wikilm`` commands for who runs the pipeline: run, stage, stages, summary, status, deploy."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from components.cli import add_stage_arguments, configure_logging, execute
from components.core.paths import Paths
from components.core.tracking_server import redacted
from components.params import load_params
from components.registry.gate import Outcome
from components.registry.store import (
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    Registry,
    version_metrics,
)
from components.stages import STAGES, stage_line
from flows.cli.common import MODELS, add_command, load_context, positive_seconds
from flows.pipeline import run_pipeline, this_environment


def run_command(args: argparse.Namespace) -> int:
    """The whole pipeline (under Prefect unless asked not to), then the summary."""
    configure_logging()
    prefect = not args.no_prefect
    outcomes = run_pipeline(args.params, args.force, prefect, args.approval_timeout)
    print_summary(args.params)
    paths = Paths.resolve(load_params(args.params).paths, args.params.resolve().parent)
    print_outcomes(outcomes, paths)
    return 0


def print_outcomes(outcomes: list[Outcome], paths: Paths) -> None:
    """Each model's outcome, the champions, and where to look next."""
    for outcome in outcomes:
        print(f"{outcome.model:<18} v{outcome.version}: {outcome.status}")
    if outcomes:
        print_champions(paths)
    server = os.environ.get("MLFLOW_TRACKING_URI")
    runs = (
        f"runs: {redacted(server)}"
        if server
        else "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    )
    print(
        "more: dvc metrics show | dvc plots show | wikilm history wikilm-classifier | "
        f'wikilm predict "some text" | {runs}'
    )


def print_champions(paths: Paths) -> None:
    """The champion of each model with the metrics it was promoted on."""
    registry = Registry(paths)
    for model in MODELS:
        champion = registry.alias(model, CHAMPION)
        if champion is None:
            print(f"{model:<18} no champion yet")
            continue
        shown = ", ".join(f"{k} {v:.3f}" for k, v in version_metrics(champion).items())
        print(f"{model:<18} champion v{champion.version} ({shown})")


def summary_command(args: argparse.Namespace) -> int:
    """One line per stage that has metrics; exit code 1 when none has."""
    return print_summary(args.params)


def print_summary(params_file: Path) -> int:
    """Print one line per stage that has metrics; 1 when none has, else 0."""
    params = load_params(params_file)
    paths = Paths.resolve(params.paths, params_file.resolve().parent)
    shown = 0
    for stage in STAGES:
        metrics_file = paths.metrics_file(stage)
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            print(f"{stage:<9} {stage_line(stage, metrics, paths)}")
            shown += 1
    if not shown:
        print(f"no metrics under {paths.metrics}: run `dvc repro` first", file=sys.stderr)
    return 0 if shown else 1


def stage_command(args: argparse.Namespace) -> int:
    """One stage, exactly as ``python -m components <stage>`` (what dvc.yaml calls) runs it."""
    return execute(args.stage, args.params, verbose=args.verbose)


def stages_command(args: argparse.Namespace) -> int:
    """The stages in order, one per line."""
    print("\n".join(STAGES))
    return 0


def status_command(args: argparse.Namespace) -> int:
    """What DVC would rerun, and the current champion and challenger of each model."""
    _, paths = load_context(args)
    command = [sys.executable, "-m", "dvc", "status"]
    done = subprocess.run(command, cwd=paths.root, env=this_environment(), check=False)
    registry = Registry(paths)
    for model in MODELS:
        for alias in (CHAMPION, CHALLENGER):
            found = registry.alias(model, alias)
            shown = f"v{found.version} (gate {found.tags.get(GATE_TAG, '?')})" if found else "-"
            print(f"{model:<18} {alias:<10} {shown}")
    return done.returncode


def deploy_command(args: argparse.Namespace) -> int:
    """Serve the pipeline flow on a schedule against the configured Prefect server."""
    from flows.deploy import serve_on_schedule

    load_context(args)
    serve_on_schedule(args.params, args.cron, args.interval, args.name)
    return 0


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    """Register run, stage, stages, summary, status and deploy."""
    _add_run(commands)
    stage = commands.add_parser(
        "stage",
        help="run one pipeline stage (as dvc.yaml does)",
        description="Run one pipeline stage and write metrics/<stage>.json.",
        epilog="example: wikilm stage clean --params params.yaml",
    )
    add_stage_arguments(stage)
    stage.set_defaults(handler=stage_command)
    stages = commands.add_parser(
        "stages",
        help="list the pipeline stages in order",
        description="List the pipeline stages in order.",
        epilog="example: wikilm stages",
    )
    stages.set_defaults(handler=stages_command)
    add_command(
        commands,
        "summary",
        "one line per stage from its metrics/<stage>.json",
        "wikilm summary --params params.yaml",
        summary_command,
        params_help="params file whose paths: section locates metrics/",
    )
    add_command(
        commands,
        "status",
        "show what DVC would rerun and each model's champion and challenger",
        "wikilm status",
        status_command,
    )
    _add_deploy(commands)


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = add_command(
        commands,
        "run",
        "run the whole pipeline (dvc repro), then register, gate and promote",
        "wikilm run --params params.yaml",
        run_command,
        params_help=(
            "the project's params.yaml; the pipeline runs in its folder, whose dvc.yaml "
            "stages read it (default: %(default)s)"
        ),
    )
    run.description = (
        "Run every stage that is out of date with `dvc repro`, then register the exported "
        "models, apply the promotion gate and promote (or hold for approval), all under "
        "one MLflow parent run; then print the summary."
    )
    run.add_argument("--force", action="store_true", help="rerun every stage, even if cached")
    run.add_argument(
        "--no-prefect",
        action="store_true",
        help="plain `dvc repro` and the registry, without the Prefect flow",
    )
    run.add_argument(
        "--approval-timeout",
        type=positive_seconds,
        default=3600,
        metavar="SECONDS",
        help=(
            "with promote.approval: manual, how long the flow waits for a reviewer before "
            "leaving the version challenger (default: %(default)s)"
        ),
    )


def _add_deploy(commands: argparse._SubParsersAction) -> None:
    deploy = add_command(
        commands,
        "deploy",
        "serve the pipeline on a schedule (Prefect)",
        'wikilm deploy --cron "0 3 * * 0"',
        deploy_command,
    )
    schedule = deploy.add_mutually_exclusive_group(required=True)
    schedule.add_argument("--cron", help="cron expression, e.g. '0 3 * * 0'")
    schedule.add_argument(
        "--interval", type=float, metavar="SECONDS", help="run every SECONDS seconds instead"
    )
    deploy.add_argument("--name", default="wikilm-scheduled", help="deployment name")
