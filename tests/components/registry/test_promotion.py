import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import yaml

from components.core.artifacts import write_json
from components.core.errors import ArtifactError
from components.core.paths import Paths, PathsParams
from components.core.tracking_server import tracking_uri
from components.registry.promotion import gated_latency_ms, register_and_gate, registered_export
from components.registry.review import approve, reject, rollback
from components.registry.store import (
    APPROVAL_TAG,
    CHALLENGER,
    CHAMPION,
    CLASSIFIER,
    GATE_TAG,
    LM,
    Registry,
    RegistryError,
)
from tests.conftest import MECHANICS_GATE, make_params


@pytest.fixture(autouse=True)
def local_store(monkeypatch):
    """The embedded store of each workspace; a fixed identity for whoever triggers runs."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WIKILM_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("WIKILM_TRACKING", raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")


def _params(**promote):
    return make_params(promote={**MECHANICS_GATE, **promote})


def _champion(paths, model=CLASSIFIER):
    found = Registry(paths).alias(model, CHAMPION)
    return str(found.version) if found else None


def _actions(paths, model=CLASSIFIER):
    return [(e.action, e.version) for e in Registry(paths).history(model)]


def test_auto_approval_promotes_both_models_with_lineage(exported_workspace):
    paths = exported_workspace
    outcomes = register_and_gate(_params(), paths)
    assert [(o.model, o.version, o.status) for o in outcomes] == [
        (CLASSIFIER, "1", "promoted"),
        (LM, "1", "promoted"),
    ]
    # Logging the models must not redirect this process's later MLflow use (or its children).
    assert "MLFLOW_TRACKING_URI" not in os.environ
    registry = Registry(paths)
    version = registry.version(CLASSIFIER, "1")
    assert version.tags[GATE_TAG] == "passed"
    assert version.tags["wikilm.triggered_by"] == "trainer-bot"
    assert version.tags["wikilm.git_commit"]
    assert version.tags["wikilm.params_digest"]
    assert "no champion yet" in version.tags["wikilm.gate.reasons"]
    assert str(registry.alias(CLASSIFIER, CHALLENGER).version) == "1"
    assert _champion(paths) == _champion(paths, LM) == "1"
    assert _actions(paths) == [("gate_passed", "1"), ("promoted", "1")]
    promoted = registry.history(CLASSIFIER)[-1]
    assert promoted.actor == "auto"
    assert set(promoted.metrics) == {"accuracy", "macro_f1"}


def test_the_champion_serves_through_pyfunc(exported_workspace, monkeypatch):
    paths = exported_workspace
    register_and_gate(_params(), paths)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(paths.root))
    classifier = mlflow.pyfunc.load_model(f"models:/{CLASSIFIER}@{CHAMPION}")
    out = classifier.predict(pd.DataFrame({"text": ["a fine film", "a dull film", "ok"]}))
    assert list(out.columns) == ["label", "probability", "probability_neg", "probability_pos"]
    assert set(out["label"]) <= {"neg", "pos"}
    total = out["probability_neg"] + out["probability_pos"]
    assert np.allclose(total, 1.0, atol=1e-5)
    lm = mlflow.pyfunc.load_model(f"models:/{LM}@{CHAMPION}")
    scored = lm.predict(pd.DataFrame({"text": ["The river runs through the old town."]}))
    assert scored["tokens"].iloc[0] > 2
    assert scored["perplexity"].iloc[0] == pytest.approx(np.exp(scored["loss"].iloc[0]))
    settings = {"task": "generate", "max_new_tokens": 5, "top_k": 0}
    first = lm.predict(pd.DataFrame({"text": ["The"]}), params=settings)["generated"].iloc[0]
    again = lm.predict(pd.DataFrame({"text": ["The"]}), params=settings)["generated"].iloc[0]
    assert first == again  # greedy is deterministic


def test_a_failed_gate_never_reaches_champion(exported_workspace):
    paths = exported_workspace
    outcomes = register_and_gate(_params(min_accuracy=1.0), paths)
    assert outcomes[0].status == "gate failed"
    assert "FAIL: accuracy" in outcomes[0].decision.summary()
    assert _champion(paths) is None
    assert _actions(paths) == [("gate_failed", "1")]
    with pytest.raises(RegistryError, match="did not pass the gate"):
        Registry(paths).move_champion(CLASSIFIER, "1", "promoted", "by hand", "ana")
    with pytest.raises(RegistryError, match="did not pass the gate"):
        approve(paths, _params(), CLASSIFIER, "1", "ana", "looks fine")


def test_manual_approval_needs_a_second_pair_of_eyes(exported_workspace):
    paths = exported_workspace
    params = _params(approval="manual")
    (outcome, _) = register_and_gate(params, paths)
    assert outcome.status == "awaiting approval"
    assert _champion(paths) is None
    with pytest.raises(RegistryError, match="four-eyes rule: trainer-bot triggered"):
        approve(paths, params, CLASSIFIER, "1", "trainer-bot", "my own run")
    approve(paths, params, CLASSIFIER, "1", "ana", "checked the confusion matrix")
    assert _champion(paths) == "1"
    version = Registry(paths).version(CLASSIFIER, "1")
    assert version.tags[APPROVAL_TAG] == "approved"
    assert version.tags["wikilm.approval.by"] == "ana"
    last = Registry(paths).history(CLASSIFIER)[-1]
    assert (last.action, last.actor, last.reason) == (
        "approved",
        "ana",
        "checked the confusion matrix",
    )
    with pytest.raises(RegistryError, match="not awaiting approval"):
        approve(paths, params, CLASSIFIER, "1", "bo", "again")


def test_four_eyes_can_be_switched_off(exported_workspace):
    paths = exported_workspace
    params = _params(approval="manual", four_eyes=False)
    register_and_gate(params, paths)
    approve(paths, params, CLASSIFIER, "1", "trainer-bot", "solo project")
    assert _champion(paths) == "1"


def test_reject_removes_the_challenger_and_blocks_approval(exported_workspace):
    paths = exported_workspace
    params = _params(approval="manual")
    register_and_gate(params, paths)
    reject(paths, CLASSIFIER, "1", "ana", "regresses on negations")
    assert Registry(paths).alias(CLASSIFIER, CHALLENGER) is None
    assert _actions(paths)[-1] == ("rejected", "1")
    with pytest.raises(RegistryError, match=r"not awaiting approval \(rejected\)"):
        approve(paths, params, CLASSIFIER, "1", "bo", "overrule")


def test_rollback_restores_the_previous_champion(exported_workspace):
    paths = exported_workspace
    register_and_gate(_params(), paths)
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(paths, CLASSIFIER, "ana", "nothing to go back to")
    register_and_gate(_params(), paths)
    assert _champion(paths) == "2"
    assert rollback(paths, CLASSIFIER, "ana", "v2 misbehaves") == "1"
    assert _champion(paths) == "1"
    last = Registry(paths).history(CLASSIFIER)[-1]
    assert (last.action, last.version, last.champion_before, last.actor) == (
        "rollback",
        "1",
        "2",
        "ana",
    )
    # The second run was gated against the champion on the same test split.
    reasons = Registry(paths).version(CLASSIFIER, "2").tags["wikilm.gate.reasons"]
    assert "vs champion" in reasons
    assert "on the same test split" in reasons


def test_rollbacks_walk_back_past_rejected_versions_and_never_to_one(exported_workspace, capsys):
    from flows.cli import main

    paths = exported_workspace
    for _ in range(3):
        register_and_gate(_params(), paths)
    with pytest.raises(RegistryError, match=r"v3 is the champion: use 'wikilm rollback"):
        reject(paths, CLASSIFIER, "3", "ana", "serving it is not the way to remove it")
    reject(paths, CLASSIFIER, "2", "ana", "regresses on negations")
    with pytest.raises(RegistryError, match="v2 was already rejected"):
        reject(paths, CLASSIFIER, "2", "ana", "again")
    assert rollback(paths, CLASSIFIER, "ana", "v3 misbehaves") == "1"  # v2 skipped
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(paths, CLASSIFIER, "ana", "and v1 too")  # not back to v3
    with pytest.raises(RegistryError, match="was rejected: it cannot be champion"):
        Registry(paths).move_champion(CLASSIFIER, "2", "rollback", "by hand", "ana")
    assert _champion(paths) == "1"
    (paths.root / "params.yaml").write_text("{}\n")
    assert main(["history", CLASSIFIER, "--params", str(paths.root / "params.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    rejected = next(line for line in lines if " rejected " in line)
    assert "champion was" not in rejected  # not a move: the champion stayed v3
    assert "(champion was v3)" in next(line for line in lines if " rollback " in line)


def test_a_pending_version_is_approved_only_as_it_was_gated(exported_workspace):
    paths = exported_workspace
    manual = _params(approval="manual")
    for params in (_params(), _params(), manual, manual):
        register_and_gate(params, paths)  # v1, v2 promoted; v3, v4 pending against v2
    with pytest.raises(RegistryError, match=r"v3 is no longer the challenger \(v4 is\)"):
        approve(paths, manual, CLASSIFIER, "3", "ana", "the older one")
    assert rollback(paths, CLASSIFIER, "ana", "v2 misbehaves") == "1"
    with pytest.raises(RegistryError, match=r"champion .* changed since v4 was gated \(v2 then"):
        approve(paths, manual, CLASSIFIER, "4", "ana", "gated against v2")
    assert _champion(paths) == "1"


def test_promote_without_the_exported_models_is_one_clear_error(tmp_path):
    paths = Paths.resolve(PathsParams(), tmp_path)
    for stage in ("evaluate", "export"):  # committed with dvc.lock: present in a fresh clone
        write_json(paths.metrics_file(stage), {})
    with pytest.raises(ArtifactError, match=r"models/finetune/meta\.json not found"):
        register_and_gate(_params(), paths)


def test_racing_promotions_lose_no_history_and_keep_a_gated_champion(exported_workspace):
    paths = exported_workspace
    promote = {**MECHANICS_GATE, "approval": "auto"}
    (paths.root / "params.yaml").write_text(yaml.safe_dump({"promote": promote}))
    command = [sys.executable, "-m", "flows.cli", "promote", "--params", "params.yaml"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    racers = [
        subprocess.Popen(
            command,
            cwd=paths.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-2000:]
    registry = Registry(paths)
    actions = sorted(_actions(paths))
    assert actions == [
        ("gate_passed", "1"),
        ("gate_passed", "2"),
        ("promoted", "1"),
        ("promoted", "2"),
    ]
    champion = _champion(paths)
    assert champion in {"1", "2"}
    assert registry.version(CLASSIFIER, champion).tags[GATE_TAG] == "passed"
    # Each move recorded the champion it replaced: the two moves form one chain.
    moves = [e for e in registry.history(CLASSIFIER) if e.action == "promoted"]
    assert moves[0].champion_before is None
    assert moves[1].champion_before == moves[0].version
    assert moves[1].version == champion


def test_history_command_prints_every_move(exported_workspace, capsys):
    from flows.cli import main

    paths = exported_workspace
    register_and_gate(_params(), paths)
    (paths.root / "params.yaml").write_text("{}\n")
    assert main(["history", CLASSIFIER, "--params", str(paths.root / "params.yaml"), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in events] == ["gate_passed", "promoted"]


def test_a_pipeline_run_registers_an_export_once(exported_workspace):
    paths = exported_workspace
    first = register_and_gate(_params(), paths, once=True)
    again = register_and_gate(_params(), paths, once=True)  # DVC had nothing to redo
    assert [(o.version, o.status) for o in again] == [("1", "registered already")] * 2
    assert [o.decision for o in again] == [o.decision for o in first]
    assert _actions(paths) == [("gate_passed", "1"), ("promoted", "1")]
    (paths.export / "meta.json").write_text(  # a new export, as a rerun of the stage writes
        (paths.export / "meta.json").read_text().replace("{", '{"rerun": true, ', 1)
    )
    assert [o.version for o in register_and_gate(_params(), paths, once=True)] == ["2", "2"]


def test_the_gate_judges_the_latency_of_one_request_whatever_the_order():
    runtimes = {"onnxruntime": {"batch_32": {"p95_ms": 10.5}, "batch_1": {"p95_ms": 0.2}}}
    assert gated_latency_ms({"latency": {"classifier": runtimes}}) == 0.2


def test_a_run_knows_the_export_is_registered_without_logging_anything(exported_workspace):
    paths = exported_workspace
    assert registered_export(paths) is None  # no version yet
    first = register_and_gate(_params(), paths, once=True)
    known = registered_export(paths)
    assert [(o.model, o.version, o.status) for o in known] == [
        (CLASSIFIER, "1", "registered already"),
        (LM, "1", "registered already"),
    ]
    assert [o.decision for o in known] == [o.decision for o in first]


def test_serve_int8_registers_the_int8_graph_gated_on_its_own_scores(
    exported_workspace, monkeypatch
):
    paths = exported_workspace
    export = json.loads(paths.metrics_file("export").read_text())
    (outcome, _) = register_and_gate(_params(serve_int8=True, int8_max_macro_f1_drop=1.0), paths)
    assert outcome.decision.reasons[0].startswith("ok: serves int8 (int8 macro-F1")
    version = Registry(paths).version(CLASSIFIER, outcome.version)
    assert version.tags["wikilm.graph"] == "classifier.int8.onnx"
    assert float(version.tags["wikilm.metric.macro_f1"]) == pytest.approx(
        export["int8"]["macro_f1"]["onnxruntime_int8"]
    )
    int8_ms = export["latency"]["classifier"]["onnxruntime_int8"]["batch_1"]["p95_ms"]
    assert any(f"p95 latency {int8_ms:.2f} ms" in r for r in outcome.decision.reasons)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(paths.root))
    model = f"models:/{CLASSIFIER}@{CHAMPION}"
    files = Path(mlflow.artifacts.download_artifacts(artifact_uri=model))
    assert {f.name for f in files.rglob("*.onnx")} == {"classifier.int8.onnx"}
    served = mlflow.pyfunc.load_model(model)
    assert len(served.predict(pd.DataFrame({"text": ["a fine film", "dull"]}))) == 2


def test_by_default_the_fp32_graph_is_registered(exported_workspace):
    (outcome, _) = register_and_gate(_params(), exported_workspace)
    assert outcome.decision.reasons[0] == "ok: serves the fp32 graph"
    version = Registry(exported_workspace).version(CLASSIFIER, outcome.version)
    assert version.tags["wikilm.graph"] == "classifier.onnx"


def test_the_gate_refuses_a_classifier_that_loses_to_tfidf_even_the_first(exported_workspace):
    paths = exported_workspace
    evaluate = json.loads(paths.metrics_file("evaluate").read_text())
    ours = evaluate["classifier"]["model"]["macro_f1"]
    tfidf = evaluate["classifier"]["tfidf_logreg"]["macro_f1"]
    margin = round(ours - tfidf, 6) + 0.01  # what the classifier falls short of, by 0.01
    (outcome, _) = register_and_gate(make_params(promote={"min_margin_over_tfidf": margin}), paths)
    assert outcome.status == "gate failed"
    assert outcome.decision.summary() == (
        f"failed: FAIL: macro-F1 {ours:.4f} vs TF-IDF + LR {tfidf:.4f} on the same test "
        f"split: margin {round(ours - tfidf, 6):+.4f} > {margin}"
    )
    assert _champion(paths) is None  # not even the first version
