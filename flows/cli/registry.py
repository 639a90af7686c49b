"""``wikilm`` commands for reviewers: approve, reject, promote, history, rollback, reviewers.

They act on the MLflow registry, with the gate and the four-eyes rule; a decision on a
version that a Prefect flow run waits for also ends that run's pause. Where the tracking
server runs the wikilm app, the server decides, as the account signed in to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from components.core.paths import Paths
from components.registry.review import who_decides
from components.registry.store import CHAMPION, MOVES, WAITING_RUN_TAG, Registry, RegistryError
from flows.cli.common import MODELS, add_command, load_context


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
    from components.registry.review import approve

    params, paths = load_context(args)
    reviewer = who_decides(paths, args.reviewer)
    approve(paths, params, args.model, args.version, reviewer, args.comment)
    print(f"{args.model} v{args.version} approved: now {CHAMPION}")
    _resume_waiting_run(paths, args, approved=True, reviewer=reviewer)
    return 0


def reject_command(args: argparse.Namespace) -> int:
    """Reject a version: it leaves challenger and never becomes champion by approval."""
    from components.registry.review import reject

    _, paths = load_context(args)
    reviewer = who_decides(paths, args.reviewer)
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

    params, paths = load_context(args)
    for outcome in register_and_gate(params, paths):
        print(f"{outcome.model} v{outcome.version}: {outcome.status}")
        for reason in outcome.decision.reasons:
            print(f"  {reason}")
    return 0


def history_command(args: argparse.Namespace) -> int:
    """Every alias move and decision of a model: when, who, what, why, metrics."""
    _, paths = load_context(args)
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
    from components.registry.review import rollback

    _, paths = load_context(args)
    version = rollback(paths, args.model, who_decides(paths, args.reviewer), args.comment)
    print(f"{args.model}: champion is v{version} again")
    return 0


def reviewers_command(args: argparse.Namespace) -> int:
    """List, add or remove the reviewers of a tracking server that runs the wikilm app."""
    if args.action != "list" and not args.username:
        raise RegistryError(f"wikilm reviewers {args.action} needs the account's name")
    _, paths = load_context(args)
    server = Registry(paths).server
    if server is None:
        raise RegistryError(
            "the tracking server does not run the wikilm app (mlflow server --app-name wikilm): "
            "there, reviewers are whoever has MANAGE on the models"
        )
    if args.action == "list":
        group = server.get("reviewers")
    elif args.action == "add":
        group = server.post("reviewers", username=args.username)
    else:
        group = server.delete("reviewers", username=args.username)
    print("\n".join(group) if group else "no reviewers")
    return 0


def add_registry_commands(commands: argparse._SubParsersAction) -> None:
    """Register approve, reject, promote, history, rollback and reviewers."""
    _review_args(
        add_command(
            commands,
            "approve",
            "approve a challenger: it becomes champion",
            'wikilm approve wikilm-classifier 3 --reviewer ana --comment "checked"',
            approve_command,
        )
    )
    _review_args(
        add_command(
            commands,
            "reject",
            "reject a challenger",
            'wikilm reject wikilm-classifier 3 --comment "regresses on news"',
            reject_command,
        )
    )
    add_command(
        commands,
        "promote",
        "register the current export, gate it, promote or hold it",
        "wikilm promote",
        promote_command,
    )
    history = add_command(
        commands,
        "history",
        "show a model's promotion history",
        "wikilm history wikilm-classifier",
        history_command,
    )
    history.add_argument("model", choices=MODELS)
    history.add_argument("--json", action="store_true", help="machine-readable output")
    rollback = add_command(
        commands,
        "rollback",
        "restore the previous champion",
        'wikilm rollback wikilm-classifier --comment "v4 misroutes tickets"',
        rollback_command,
    )
    rollback.add_argument("model", choices=MODELS)
    _decision_args(rollback)
    reviewers = add_command(
        commands,
        "reviewers",
        "list, add or remove the reviewers of a server with the wikilm app (admins)",
        "wikilm reviewers add ana",
        reviewers_command,
    )
    reviewers.add_argument("action", choices=("list", "add", "remove"))
    reviewers.add_argument("username", nargs="?", help="the account to add or remove")
