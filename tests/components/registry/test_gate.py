import pytest

from components.registry.gate import Evidence, classifier_graph, decide, lm_beats_unigram
from components.registry.params import PromoteParams

GOOD = {
    "accuracy": 0.9,
    "macro_f1": 0.85,
    "parity_passed": True,
    "p95_latency_ms": 5.0,
    "tfidf_macro_f1": 0.80,
}
RULES = PromoteParams(min_accuracy=0.8, min_macro_f1=0.8, min_margin=0.01, max_p95_latency_ms=10)


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({}, None),
        ({"accuracy": 0.7}, "accuracy 0.7000 >= 0.8"),
        ({"macro_f1": 0.5, "tfidf_macro_f1": 0.4}, "macro-F1 0.5000 >= 0.8"),
        ({"parity_passed": False}, "ONNX parity passed"),
        ({"p95_latency_ms": 11.0}, "p95 latency 11.00 ms <= 10"),
        ({"champion_macro_f1": 0.845}, "margin +0.0050 >= 0.01"),
        ({"champion_macro_f1": 0.80}, None),
        ({"tfidf_macro_f1": 0.86}, "macro-F1 0.8500 vs TF-IDF + LR 0.8600 on the same test split"),
        ({"tfidf_macro_f1": 0.85}, "margin +0.0000 > 0.0"),  # a tie does not beat it
        ({"tfidf_macro_f1": None}, "TF-IDF + LR's macro-F1 on the test split is not in"),
    ],
)
def test_each_rule_can_fail_the_gate_and_names_itself(change, failing):
    decision = decide(Evidence(**{**GOOD, **change}), RULES)
    assert decision.passed == (failing is None)
    failed = [r for r in decision.reasons if r.startswith("FAIL")]
    if failing:
        assert len(failed) == 1
        assert failing in failed[0]
        assert decision.summary().startswith("failed: FAIL")
    else:
        assert failed == []
        assert decision.summary() == "passed"


def test_parity_can_be_waived():
    rules = PromoteParams(require_parity=False)
    assert decide(Evidence(**{**GOOD, "parity_passed": False}), rules).passed


def _int8(int8_f1: float, fp32_f1: float = 0.80) -> dict:
    return {"macro_f1": {"pytorch": fp32_f1, "onnxruntime": fp32_f1, "onnxruntime_int8": int8_f1}}


@pytest.mark.parametrize(
    ("serve_int8", "int8", "served", "reason"),
    [
        (False, _int8(0.80), "classifier.onnx", "serves the fp32 graph"),
        (True, None, "classifier.onnx", "serves the fp32 graph"),  # export wrote no int8
        (True, _int8(0.80), "classifier.int8.onnx", "drop +0.0000"),
        (True, _int8(0.79), "classifier.int8.onnx", "drop +0.0100"),  # exactly the margin
        (True, _int8(0.82), "classifier.int8.onnx", "drop -0.0200"),
        (True, _int8(0.7899), "classifier.onnx", "int8 macro-F1 0.7899 vs fp32 0.8000"),
    ],
)
def test_int8_serves_only_when_asked_and_close_enough_to_fp32(serve_int8, int8, served, reason):
    rules = PromoteParams(serve_int8=serve_int8, int8_max_macro_f1_drop=0.01)
    graph = classifier_graph(int8, rules)
    assert graph.file == served
    assert graph.runtime == ("onnxruntime_int8" if "int8" in served else "onnxruntime")
    assert reason in graph.reason


def test_the_baseline_margins_are_params():
    rules = PromoteParams(min_margin_over_tfidf=0.06)
    failed = decide(Evidence(**GOOD), rules)  # 0.85 beats 0.80 by 0.05 only
    assert failed.summary() == (
        "failed: FAIL: macro-F1 0.8500 vs TF-IDF + LR 0.8000 on the same test split: "
        "margin +0.0500 > 0.06"
    )


@pytest.mark.parametrize(
    ("bits_per_byte", "margin", "beats"),
    [(2.40, 0.0, True), (2.725, 0.0, False), (2.80, 0.0, False), (2.40, 0.5, False)],
)
def test_the_lm_must_beat_the_unigram_baseline_by_the_margin(bits_per_byte, margin, beats):
    ok, text = lm_beats_unigram(bits_per_byte, 2.725, margin)
    assert ok == beats
    assert f"{bits_per_byte:.4f} bits/byte vs the unigram baseline's 2.7250" in text
