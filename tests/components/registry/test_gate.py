import pytest

from components.core.model_params import PromoteParams
from components.registry.gate import Evidence, decide

GOOD = {"accuracy": 0.9, "macro_f1": 0.85, "parity_passed": True, "p95_latency_ms": 5.0}
RULES = PromoteParams(min_accuracy=0.8, min_macro_f1=0.8, min_margin=0.01, max_p95_latency_ms=10)


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({}, None),
        ({"accuracy": 0.7}, "accuracy 0.7000 >= 0.8"),
        ({"macro_f1": 0.5}, "macro-F1 0.5000 >= 0.8"),
        ({"parity_passed": False}, "ONNX parity passed"),
        ({"p95_latency_ms": 11.0}, "p95 latency 11.00 ms <= 10"),
        ({"champion_macro_f1": 0.845}, "margin +0.0050 >= 0.01"),
        ({"champion_macro_f1": 0.80}, None),
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
