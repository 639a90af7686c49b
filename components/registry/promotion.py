"""From a pipeline run to a champion: register, gate, approve or reject, roll back.

``register_and_gate`` runs after the DVC stages: it logs both exported models as pyfunc
models, registers them as new versions (alias ``challenger``, lineage tags), applies the
gate of ``promote:`` and, with ``approval: auto``, promotes what passed. With ``approval:
manual`` a passing version waits for ``approve`` by a reviewer other than whoever triggered
the run (four-eyes rule). Every step lands in the registry history.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pandas as pd

from components.core.artifacts import dir_digest, read_meta
from components.core.errors import ArtifactError
from components.core.identity import current_user
from components.core.paths import Paths
from components.core.tracking import fluent_tracking, lineage, stage_run
from components.registry.access import acting_reviewer, require_manage
from components.registry.gate import (
    AWAITING_APPROVAL,
    FP32,
    GATE_FAILED,
    PROMOTED,
    REGISTERED_ALREADY,
    Decision,
    Evidence,
    Graph,
    Outcome,
    classifier_graph,
    decide,
    lm_beats_unigram,
    rule,
)
from components.registry.packaging import GRAPHS, Logged, log_model
from components.registry.params import RegistrySections
from components.registry.store import (
    APPROVAL_TAG,
    ARRIVALS,
    CHALLENGER,
    CHAMPION,
    CLASSIFIER,
    GATE_TAG,
    LM,
    METRIC_TAG,
    TRIGGER_TAG,
    Registry,
    RegistryError,
)

log = logging.getLogger(__name__)

EXPORT_TAG = "wikilm.export_digest"  # the same export is registered once
GRAPH_TAG = "wikilm.graph"  # the ONNX file of the export a version serves


def _metrics_file(paths: Paths, stage: str) -> dict:
    path = paths.metrics_file(stage)
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run the '{stage}' stage first (dvc repro)")
    return json.loads(path.read_text(encoding="utf-8"))


def champion_macro_f1(registry: Registry, test: pd.DataFrame, labels: list[str]) -> float | None:
    """The current champion's macro-F1 on the challenger's test split (None: no champion)."""
    if registry.alias(CLASSIFIER, CHAMPION) is None:
        return None
    import mlflow.pyfunc
    from sklearn.metrics import f1_score

    with fluent_tracking(registry.uri):
        champion = mlflow.pyfunc.load_model(f"models:/{CLASSIFIER}@{CHAMPION}")
    predicted = champion.predict(test[["text"]])["label"]
    actual = [labels[i] for i in test["label"]]
    return float(f1_score(actual, predicted, average="macro", labels=labels, zero_division=0))


def classifier_evidence(
    registry: Registry, paths: Paths, evaluate: dict, export: dict, graph: Graph = FP32
) -> Evidence:
    """Gate inputs of the new classifier, the champion scored on the same test split.

    The scores are the served graph's: evaluate's for fp32 (PyTorch, at parity with it), the
    export stage's own for int8.
    """
    scores = evaluate["classifier"]["model"]
    accuracy, macro_f1 = scores["accuracy"], scores["macro_f1"]
    if graph.runtime != FP32.runtime:
        accuracy = export["int8"]["accuracy"][graph.runtime]
        macro_f1 = export["int8"]["macro_f1"][graph.runtime]
    test = pd.read_parquet(paths.finetune / "splits" / "test.parquet")
    labels = list(scores["per_class"])
    return Evidence(
        accuracy=accuracy,
        macro_f1=macro_f1,
        parity_passed=export["parity"]["classifier"]["passed"],
        p95_latency_ms=gated_latency_ms(export, graph.runtime),
        champion_macro_f1=champion_macro_f1(registry, test, labels),
        tfidf_macro_f1=evaluate["classifier"].get("tfidf_logreg", {}).get("macro_f1"),
    )


def gated_latency_ms(export: dict, runtime: str = FP32.runtime) -> float:
    """The classifier's p95 latency the gate judges: one request at a time, on ``runtime``."""
    return export["latency"]["classifier"][runtime]["batch_1"]["p95_ms"]


def lm_decision(evaluate: dict, export: dict, params: RegistrySections) -> Decision:
    """The LM must match its ONNX graph and beat the unigram baseline on held-out text."""
    val = evaluate["lm"]
    parity = export["parity"]["lm"]["passed"] or not params.promote.require_parity
    beats, compared = lm_beats_unigram(
        val["val"]["bits_per_byte"],
        val["val_unigram"]["bits_per_byte"],
        params.promote.min_bits_per_byte_below_unigram,
    )
    reasons = [f"{'ok' if parity else 'FAIL'}: ONNX parity passed", rule(beats, compared)]
    return Decision(passed=parity and beats, reasons=reasons)


def _register(
    registry: Registry, model: str, logged: Logged, run_id: str, tags: dict[str, str]
) -> str:
    from mlflow.exceptions import MlflowException

    # It may exist already, perhaps created a moment ago by a concurrent run.
    with contextlib.suppress(MlflowException):
        registry.client.create_registered_model(model)
    created = registry.client.create_model_version(
        model, logged.uri, run_id=run_id, tags=tags, model_id=logged.model_id
    )
    version = str(created.version)
    registry.client.set_registered_model_alias(model, CHALLENGER, version)
    return version


def _log_models(
    params: RegistrySections, paths: Paths, graphs: dict[str, str]
) -> tuple[str, dict[str, Logged]]:
    """Log both pyfunc models in a ``register`` run (nested under the pipeline's run).

    Each serves its ONNX file of the export named in ``graphs``.
    """
    import mlflow

    recorded = params.promote.model_dump(mode="json")
    with stage_run("register", paths, recorded) as tracker:
        if tracker.run_id is None:
            raise RegistryError("the registry needs MLflow tracking: unset WIKILM_TRACKING=off")
        with fluent_tracking(tracker.uri), mlflow.start_run(run_id=tracker.run_id):
            logged = {model: log_model(paths.export, model, f) for model, f in graphs.items()}
    return tracker.run_id, logged


def register_and_gate(params: RegistrySections, paths: Paths, once: bool = False) -> list[Outcome]:
    """Register the exported models, gate them, and promote or hold them for approval.

    With ``once`` (pipeline runs), an export registered before is not registered again: a
    scheduled run in which DVC had nothing to redo, or a retried task, adds no version.
    """
    registry = Registry(paths)
    # Registering a logged model resolves its models:/ URI through MLflow's fluent API.
    with fluent_tracking(registry.uri):
        return _register_and_gate(params, paths, registry, once)


def _register_and_gate(
    params: RegistrySections, paths: Paths, registry: Registry, once: bool
) -> list[Outcome]:
    # The models themselves, not only their metrics (committed with dvc.lock) must be here.
    read_meta(paths.finetune, "finetune")
    read_meta(paths.export, "export")
    evaluate, export = _metrics_file(paths, "evaluate"), _metrics_file(paths, "export")
    digest = dir_digest(paths.export)
    if once and (known := _registered(registry, digest)) is not None:
        log.info("register: this export is registered already; nothing new to gate")
        return known
    graph = classifier_graph(export.get("int8"), params.promote)
    graphs = {CLASSIFIER: graph.file, LM: GRAPHS[LM]}
    run_id, logged = _log_models(params, paths, graphs)
    user = current_user()
    base_tags = {**lineage(paths, params.model_dump(mode="json", by_alias=True))}
    base_tags |= {"wikilm.run_id": run_id, TRIGGER_TAG: user, EXPORT_TAG: digest}
    evidence = classifier_evidence(registry, paths, evaluate, export, graph)
    gated = decide(evidence, params.promote)
    decisions = {
        CLASSIFIER: Decision(gated.passed, [f"ok: {graph.reason}", *gated.reasons]),
        LM: lm_decision(evaluate, export, params),
    }
    metrics = {
        CLASSIFIER: {"accuracy": evidence.accuracy, "macro_f1": evidence.macro_f1},
        LM: {"val_bits_per_byte": evaluate["lm"]["val"]["bits_per_byte"]},
    }
    return [
        _gate_one(
            registry,
            params,
            model,
            logged[model],
            run_id,
            base_tags | {GRAPH_TAG: graphs[model]},
            metrics[model],
            d,
        )
        for model, d in decisions.items()
    ]


def registered_export(paths: Paths) -> list[Outcome] | None:
    """Both models' versions registered from the current export, or None if either is not.

    What a pipeline run would register is known without logging anything: a run whose
    export is registered already adds no version (see :func:`register_and_gate`).
    """
    if not (paths.export / "meta.json").is_file():
        return None
    return _registered(Registry(paths), dir_digest(paths.export))


def _registered(registry: Registry, digest: str) -> list[Outcome] | None:
    known = {model: _registered_from(registry, model, digest) for model in (CLASSIFIER, LM)}
    if not all(known.values()):
        return None
    return [_known(model, version) for model, version in known.items()]


def _registered_from(registry: Registry, model: str, digest: str) -> Any | None:
    """The version of ``model`` registered from the export with this digest, if any."""
    from mlflow.exceptions import MlflowException

    try:
        versions = registry.client.search_model_versions(f"name = '{model}'")
    except MlflowException:  # no such model yet
        return None
    return next((v for v in versions if v.tags.get(EXPORT_TAG) == digest), None)


def _known(model: str, version: Any) -> Outcome:
    """The outcome of a version registered by an earlier run, as the gate left it."""
    decision = Decision(
        passed=version.tags.get(GATE_TAG) == "passed",
        reasons=version.tags.get("wikilm.gate.reasons", "").splitlines(),
    )
    return Outcome(model, str(version.version), decision, REGISTERED_ALREADY)


def _gate_one(
    registry: Registry,
    params: RegistrySections,
    model: str,
    logged: Logged,
    run_id: str,
    base_tags: dict[str, str],
    metrics: dict[str, float],
    decision: Decision,
) -> Outcome:
    tags = {**base_tags, **{f"{METRIC_TAG}{k}": str(v) for k, v in metrics.items()}}
    tags |= {GATE_TAG: "passed" if decision.passed else "failed"}
    tags["wikilm.gate.reasons"] = "\n".join(decision.reasons)
    version = _register(registry, model, logged, run_id, tags)
    champion = registry.alias(model, CHAMPION)
    before = str(champion.version) if champion else None
    action = "gate_passed" if decision.passed else "gate_failed"
    registry.record(model, action, version, decision.summary(), before, metrics)
    if not decision.passed:
        return Outcome(model, version, decision, GATE_FAILED)
    if params.promote.approval == "auto":
        registry.move_champion(model, version, "promoted", "gate passed; approval: auto", "auto")
        return Outcome(model, version, decision, PROMOTED)
    registry.client.set_model_version_tag(model, version, APPROVAL_TAG, "pending")
    return Outcome(model, version, decision, AWAITING_APPROVAL)


def approve(
    paths: Paths, params: RegistrySections, model: str, version: str, reviewer: str, comment: str
) -> None:
    """A reviewer's approval: checks gate, pending state and four-eyes, then promotes.

    Raises:
        RegistryError: unknown version, gate failed, not awaiting approval, the reviewer
            triggered the run while the four-eyes rule is on, or the server does not let
            the reviewer decide (see ``access``).
    """
    registry = Registry(paths)
    reviewer = authorised(registry, model, reviewer)
    target = registry.version(model, version)
    if target.tags.get(GATE_TAG) != "passed":
        raise RegistryError(f"{model} v{version} did not pass the gate: it cannot be approved")
    if target.tags.get(APPROVAL_TAG) != "pending":
        state = target.tags.get(APPROVAL_TAG, "not submitted for approval")
        raise RegistryError(f"{model} v{version} is not awaiting approval ({state})")
    if params.promote.four_eyes and reviewer == target.tags.get(TRIGGER_TAG):
        raise RegistryError(
            f"four-eyes rule: {reviewer} triggered the run of {model} v{version} and cannot "
            "approve it; another reviewer must (promote.four_eyes)"
        )
    _check_still_current(registry, model, str(version))
    for key, value in {APPROVAL_TAG: "approved", "wikilm.approval.by": reviewer}.items():
        registry.client.set_model_version_tag(model, version, key, value)
    registry.client.set_model_version_tag(model, version, "wikilm.approval.comment", comment)
    registry.move_champion(model, version, "approved", comment, reviewer)


def _check_still_current(registry: Registry, model: str, version: str) -> None:
    """A pending version may be approved only as gated: the challenger, same champion.

    Raises:
        RegistryError: a newer version was registered since, or the champion changed since
            the gate compared the version with it.
    """
    challenger = registry.alias(model, CHALLENGER)
    if challenger is None or str(challenger.version) != version:
        newer = f"v{challenger.version} is" if challenger else "none is"
        raise RegistryError(
            f"{model} v{version} is no longer the challenger ({newer}): approve the newest "
            "version, or rerun the pipeline"
        )
    gated = [e for e in registry.history(model) if e.action == "gate_passed"]
    gate = next((e for e in reversed(gated) if e.version == version), None)
    champion = registry.alias(model, CHAMPION)
    now = str(champion.version) if champion else None
    if gate is not None and gate.champion_before != now:
        raise RegistryError(
            f"the champion of {model} changed since v{version} was gated (v"
            f"{gate.champion_before or '-'} then, v{now or '-'} now): rerun the pipeline to "
            "gate it against the current champion"
        )


def reject(paths: Paths, model: str, version: str, reviewer: str, comment: str) -> None:
    """A reviewer's rejection: the version leaves ``challenger`` and is recorded as rejected.

    Raises:
        RegistryError: the version is the champion (roll it back instead), was already
            approved or rejected, or the server does not let the reviewer decide.
    """
    registry = Registry(paths)
    reviewer = authorised(registry, model, reviewer)
    target = registry.version(model, version)
    decided = target.tags.get(APPROVAL_TAG)
    if decided in ("approved", "rejected"):
        raise RegistryError(f"{model} v{version} was already {decided}")
    with registry.locked(model):
        champion = registry.alias(model, CHAMPION)
        if champion is not None and str(champion.version) == str(version):
            raise RegistryError(
                f"{model} v{version} is the champion: use 'wikilm rollback {model}' to replace it"
            )
        registry.client.set_model_version_tag(model, version, APPROVAL_TAG, "rejected")
        registry.client.set_model_version_tag(model, version, "wikilm.approval.by", reviewer)
        challenger = registry.alias(model, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            registry.client.delete_registered_model_alias(model, CHALLENGER)
        registry.record(
            model,
            "rejected",
            version,
            comment,
            champion.version if champion else None,
            actor=reviewer,
        )


def rollback(paths: Paths, model: str, actor: str, reason: str) -> str:
    """Restore the champion the current one replaced; returns its version.

    Repeated rollbacks walk further back along the promotions and approvals (a rollback
    is not an arrival to return from), skipping versions rejected since.

    Raises:
        RegistryError: no champion, no earlier champion to return to, or the server does
            not let ``actor`` decide.
    """
    registry = Registry(paths)
    actor = authorised(registry, model, actor)
    current = registry.alias(model, CHAMPION)
    if current is None:
        raise RegistryError(f"{model} has no champion to roll back")
    target = _replaced(registry, model, str(current.version))
    if target is None:
        raise RegistryError(f"{model} v{current.version} has no earlier champion to roll back to")
    registry.move_champion(model, target, "rollback", reason, actor)
    return target


def authorised(registry: Registry, model: str, reviewer: str | None) -> str:
    """The reviewer who may decide on ``model``, checked against the server's accounts."""
    acting = acting_reviewer(reviewer)
    require_manage(registry, model, acting)
    return acting


def _replaced(registry: Registry, model: str, version: str) -> str | None:
    """The champion that ``version`` replaced when promoted or approved, not rejected since."""
    arrivals = [e for e in registry.history(model) if e.action in ARRIVALS]
    seen = {version}
    while True:
        arrival = next((e for e in reversed(arrivals) if e.version == version), None)
        if arrival is None or arrival.champion_before in (None, *seen):
            return None
        version = arrival.champion_before
        seen.add(version)
        if registry.version(model, version).tags.get(APPROVAL_TAG) != "rejected":
            return version
