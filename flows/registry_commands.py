"""``wikilm`` commands for reviewers and consumers of the registry.

approve, reject, promote, history, rollback act on the MLflow registry (with the gate and
the four-eyes rule); predict and generate ask the current champions through onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from components.cli import configure_logging
from components.core.config import Params, load_params
from components.core.paths import Paths
from components.registry.access import acting_reviewer
from components.registry.store import (
    CHAMPION,
    CLASSIFIER,
    LM,
    MOVES,
    WAITING_RUN_TAG,
    Registry,
    RegistryError,
)

MODELS = (CLASSIFIER, LM)


def _context(args: argparse.Namespace) -> tuple[Params, Paths]:
    configure_logging()
    params = load_params(args.params)
    return params, Paths.resolve(params.paths, args.params.resolve().parent)


def _add(
    commands: argparse._SubParsersAction,
    name: str,
    help_text: str,
    example: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        epilog=f"example: {example}",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    parser.set_defaults(handler=handler)
    return parser


def _decision_args(parser: argparse.ArgumentParser) -> None:
    """Who decides and why: both recorded in the history."""
    parser.add_argument(
        "--reviewer",
        default=None,
        help=(
            "who decides (default: the account signed in to the tracking server, else "
            "WIKILM_USER, else the login name)"
        ),
    )
    parser.add_argument("--comment", required=True, help="why: recorded in the history")


def _review_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS)
    parser.add_argument("version", help="the model version")
    _decision_args(parser)


def approve_command(args: argparse.Namespace) -> int:
    """Approve a version waiting as challenger: it becomes champion."""
    from components.registry.promotion import approve

    params, paths = _context(args)
    reviewer = acting_reviewer(args.reviewer)
    approve(paths, params, args.model, args.version, reviewer, args.comment)
    print(f"{args.model} v{args.version} approved: now {CHAMPION}")
    _resume_waiting_run(paths, args, approved=True, reviewer=reviewer)
    return 0


def reject_command(args: argparse.Namespace) -> int:
    """Reject a version: it leaves challenger and never becomes champion by approval."""
    from components.registry.promotion import reject

    _, paths = _context(args)
    reviewer = acting_reviewer(args.reviewer)
    reject(paths, args.model, args.version, reviewer, args.comment)
    print(f"{args.model} v{args.version} rejected")
    _resume_waiting_run(paths, args, approved=False, reviewer=reviewer)
    return 0


def _resume_waiting_run(
    paths: Paths, args: argparse.Namespace, approved: bool, reviewer: str
) -> None:
    """End the pause of a Prefect flow run waiting for this decision, if one is."""
    run_id = Registry(paths).version(args.model, args.version).tags.get(WAITING_RUN_TAG)
    if run_id:
        from flows.approval import ApprovalForm, pause_key, resume_waiting_run

        answer = ApprovalForm(approve=approved, reviewer=reviewer, comment=args.comment)
        print(resume_waiting_run(run_id, answer, pause_key(args.model, args.version)))


def promote_command(args: argparse.Namespace) -> int:
    """Register the current export as new versions, gate them, promote or hold them."""
    from components.registry.promotion import register_and_gate

    params, paths = _context(args)
    for outcome in register_and_gate(params, paths):
        print(f"{outcome.model} v{outcome.version}: {outcome.status}")
        for reason in outcome.decision.reasons:
            print(f"  {reason}")
    return 0


def history_command(args: argparse.Namespace) -> int:
    """Every alias move and decision of a model: when, who, what, why, metrics."""
    _, paths = _context(args)
    events = Registry(paths).history(args.model)
    if args.json:
        print(json.dumps([e.__dict__ for e in events], indent=2))
        return 0
    for e in events:
        when = datetime.fromtimestamp(e.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        moved = e.action in MOVES and e.champion_before
        before = f" (champion was v{e.champion_before})" if moved else ""
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in e.metrics.items())
        print(
            f"{when}  v{e.version:<4} {e.action:<12} by {e.actor}{before}: {e.reason}"
            + (f" [{metrics}]" if metrics else "")
        )
    if not events:
        print(f"no history for {args.model}", file=sys.stderr)
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    """Restore the previous champion (and record who did it and why)."""
    from components.registry.promotion import rollback

    _, paths = _context(args)
    version = rollback(paths, args.model, acting_reviewer(args.reviewer), args.comment)
    print(f"{args.model}: champion is v{version} again")
    return 0


def _champion(paths: Paths, model: str):  # noqa: ANN202 - mlflow's PyFuncModel
    import mlflow.pyfunc

    from components.core.tracking import fluent_tracking

    registry = Registry(paths)
    if registry.alias(model, CHAMPION) is None:
        raise _no_alias(model, CHAMPION)
    with fluent_tracking(registry.uri):
        return mlflow.pyfunc.load_model(f"models:/{model}@{CHAMPION}")


def _no_alias(model: str, alias: str) -> RegistryError:
    """The error for a model without ``alias``: where to look for the reason."""
    return RegistryError(
        f"{model} has no {alias}: `wikilm history {model}` shows each decision of the gate "
        "and of reviewers (`wikilm run` registers and gates a new version)"
    )


def predict_command(args: argparse.Namespace) -> int:
    """Classify texts with the champion classifier (onnxruntime)."""
    import pandas as pd

    _, paths = _context(args)
    out = _champion(paths, CLASSIFIER).predict(pd.DataFrame({"text": args.text}))
    for text, row in zip(args.text, out.itertuples(index=False), strict=True):
        print(f"{row.label}\t{row.probability:.3f}\t{text}")
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """Continue a prompt with the champion language model (onnxruntime)."""
    import pandas as pd

    _, paths = _context(args)
    settings = {
        "task": "generate",
        "max_new_tokens": args.max_new_tokens,
        "top_k": args.top_k,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    out = _champion(paths, LM).predict(pd.DataFrame({"text": [args.prompt]}), params=settings)
    print(args.prompt + out["generated"].iloc[0])
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the registry and serving commands on the ``wikilm`` parser."""
    _review_args(
        _add(
            commands,
            "approve",
            "approve a challenger: it becomes champion",
            'wikilm approve wikilm-classifier 3 --reviewer ana --comment "checked"',
            approve_command,
        )
    )
    _review_args(
        _add(
            commands,
            "reject",
            "reject a challenger",
            'wikilm reject wikilm-classifier 3 --comment "regresses on news"',
            reject_command,
        )
    )
    _add(
        commands,
        "promote",
        "register the current export, gate it, promote or hold it",
        "wikilm promote",
        promote_command,
    )
    history = _add(
        commands,
        "history",
        "show a model's promotion history",
        "wikilm history wikilm-classifier",
        history_command,
    )
    history.add_argument("model", choices=MODELS)
    history.add_argument("--json", action="store_true", help="machine-readable output")
    rollback = _add(
        commands,
        "rollback",
        "restore the previous champion",
        'wikilm rollback wikilm-classifier --comment "v4 misroutes tickets"',
        rollback_command,
    )
    rollback.add_argument("model", choices=MODELS)
    _decision_args(rollback)
    predict = _add(
        commands,
        "predict",
        "classify texts with the champion classifier",
        'wikilm predict "A gripping, beautifully acted film."',
        predict_command,
    )
    predict.add_argument("text", nargs="+", help="one or more texts")
    generate = _add(
        commands,
        "generate",
        "continue a prompt with the champion LM",
        'wikilm generate "The history of" --max-new-tokens 40 --top-k 20',
        generate_command,
    )
    generate.add_argument("prompt")
    generate.add_argument("--max-new-tokens", type=int, default=40)
    generate.add_argument("--top-k", type=int, default=0, help="0: greedy")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    add_serve_command(commands)
    add_operations_commands(commands)


def serve_command(args: argparse.Namespace) -> int:
    """Serve a registered model over REST with ``mlflow models serve`` (onnxruntime inside)."""
    import subprocess

    from components.core.tracking_server import tracking_uri
    from flows.pipeline import this_environment

    _, paths = _context(args)
    if Registry(paths).alias(args.model, args.alias) is None:
        raise _no_alias(args.model, args.alias)
    uri = tracking_uri(paths.root)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{args.model}@{args.alias}",
        "--env-manager",
        "local",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    env = {**this_environment(), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return subprocess.run(command, env=env, check=False).returncode


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    """Register ``wikilm serve``."""
    serve = _add(
        commands,
        "serve",
        "serve a registered model over REST (mlflow models serve)",
        "wikilm serve wikilm-classifier --port 5001",
        serve_command,
    )
    serve.add_argument("model", choices=MODELS)
    serve.add_argument("--alias", default=CHAMPION, help="alias to serve (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001)


def deploy_command(args: argparse.Namespace) -> int:
    """Serve the pipeline flow on a schedule against the configured Prefect server."""
    from flows.deploy import serve_on_schedule

    _context(args)
    serve_on_schedule(args.params, args.cron, args.interval, args.name)
    return 0


def status_command(args: argparse.Namespace) -> int:
    """What DVC would rerun, and the current champion and challenger of each model."""
    import subprocess

    from flows.pipeline import this_environment

    _, paths = _context(args)
    command = [sys.executable, "-m", "dvc", "status"]
    done = subprocess.run(command, cwd=paths.root, env=this_environment(), check=False)
    registry = Registry(paths)
    for model in MODELS:
        for alias in (CHAMPION, "challenger"):
            found = registry.alias(model, alias)
            shown = (
                f"v{found.version} (gate {found.tags.get('wikilm.gate', '?')})" if found else "-"
            )
            print(f"{model:<18} {alias:<10} {shown}")
    return done.returncode


def add_operations_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``wikilm deploy`` and ``wikilm status``."""
    deploy = _add(
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
    _add(
        commands,
        "status",
        "show what DVC would rerun and each model's champion and challenger",
        "wikilm status",
        status_command,
    )
