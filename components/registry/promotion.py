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
from components.registry.champion import champion_predictor
from components.registry.gate import (
    AWAITING_APPROVAL,
    FP32,
    GATE_FAILED,
    PROMOTED,
    REGISTERED_ALREADY,
    Decision,
    Evidence,
    Graph,
    LmEvidence,
    Outcome,
    classifier_graph,
    decide,
    decide_lm,
    evidence_text,
)
from components.registry.packaging import DIGEST_TAG, GRAPHS, Logged, log_model
from components.registry.params import RegistrySections
from components.registry.store import (
    APPROVAL_TAG,
    CHALLENGER,
    CHAMPION,
    CLASSIFIER,
    EVIDENCE_TAG,
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
    """The current champion's macro-F1 on the challenger's test split (None: no champion).

    Its ONNX graph runs directly, checked against its digest: nothing of it is unpickled.
    """
    if registry.alias(CLASSIFIER, CHAMPION) is None:  # also: no such model yet
        return None
    champion = champion_predictor(registry.uri, CLASSIFIER, CHAMPION, score_untagged=True)
    if champion is None:
        return None
    from sklearn.metrics import f1_score

    predicted = champion.predict(test["text"].astype(str).tolist()).labels
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
    champion = registry.alias(CLASSIFIER, CHAMPION)
    return Evidence(
        accuracy=accuracy,
        macro_f1=macro_f1,
        parity_passed=export["parity"]["classifier"]["passed"],
        p95_latency_ms=gated_latency_ms(export, graph.runtime),
        champion_macro_f1=champion_macro_f1(registry, test, labels),
        tfidf_macro_f1=evaluate["classifier"].get("tfidf_logreg", {}).get("macro_f1"),
        champion_version=str(champion.version) if champion else None,
    )


def gated_latency_ms(export: dict, runtime: str = FP32.runtime) -> float:
    """The classifier's p95 latency the gate judges: one request at a time, on ``runtime``."""
    return export["latency"]["classifier"][runtime]["batch_1"]["p95_ms"]


def lm_evidence(evaluate: dict, export: dict) -> LmEvidence:
    """Gate inputs of the new LM: bits per byte beside the unigram baseline's, and parity."""
    return LmEvidence(
        bits_per_byte=evaluate["lm"]["val"]["bits_per_byte"],
        unigram_bits_per_byte=evaluate["lm"]["val_unigram"]["bits_per_byte"],
        parity_passed=export["parity"]["lm"]["passed"],
    )


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
    lm = lm_evidence(evaluate, export)
    decisions = {
        CLASSIFIER: Decision(gated.passed, [f"ok: {graph.reason}", *gated.reasons]),
        LM: decide_lm(lm, params.promote),
    }
    metrics = {
        CLASSIFIER: {"accuracy": evidence.accuracy, "macro_f1": evidence.macro_f1},
        LM: {"val_bits_per_byte": lm.bits_per_byte},
    }
    measured = {CLASSIFIER: evidence_text(evidence), LM: evidence_text(lm)}
    return [
        _gate_one(
            registry,
            params,
            model,
            logged[model],
            run_id,
            base_tags
            | {GRAPH_TAG: graphs[model], EVIDENCE_TAG: measured[model]}
            | {DIGEST_TAG: logged[model].digest},
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
    if registry.server is not None:
        return _gated_by_server(registry, model, _register(registry, model, logged, run_id, tags))
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


def _gated_by_server(registry: Registry, model: str, version: str) -> Outcome:
    """The server's verdict on a version just registered; promoted where it approves alone.

    A server with the wikilm app judges the recorded evidence by its own rules and writes the
    history; with ``approval: auto`` in its configuration the pipeline asks it to promote.
    """
    server = registry.server
    state = server.get("version", model=model, version=version)
    decision = Decision(state["gate"]["passed"], state["gate"]["reasons"])
    if not decision.passed:
        return Outcome(model, version, decision, GATE_FAILED)
    if server.config["promote"]["approval"] == "auto":
        server.post("promote", model=model, version=version)
        return Outcome(model, version, decision, PROMOTED)
    return Outcome(model, version, decision, AWAITING_APPROVAL)
