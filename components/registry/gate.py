"""The promotion gate: rules from ``params.yaml`` (``promote:``) applied to a challenger.

Pure functions over the challenger's measurements and the champion's score on the same
test split; the registry records the decision and every reason on the model version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from components.core.model_params import PromoteParams


@dataclass(frozen=True)
class Evidence:
    """What the gate looks at for one classifier version."""

    accuracy: float
    macro_f1: float
    parity_passed: bool
    p95_latency_ms: float
    champion_macro_f1: float | None = None  # on the challenger's test split; None: no champion


@dataclass(frozen=True)
class Decision:
    """Passed or not, with one line per rule (met or not)."""

    passed: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``passed`` / ``failed: <unmet rules>``."""
        if self.passed:
            return "passed"
        return "failed: " + "; ".join(r for r in self.reasons if r.startswith("FAIL"))


def _rule(ok: bool, text: str) -> str:
    return f"{'ok' if ok else 'FAIL'}: {text}"


def decide(evidence: Evidence, rules: PromoteParams) -> Decision:
    """Apply every rule; the challenger passes only if all hold."""
    e = evidence
    checks = [
        (e.accuracy >= rules.min_accuracy, f"accuracy {e.accuracy:.4f} >= {rules.min_accuracy}"),
        (e.macro_f1 >= rules.min_macro_f1, f"macro-F1 {e.macro_f1:.4f} >= {rules.min_macro_f1}"),
        (
            e.p95_latency_ms <= rules.max_p95_latency_ms,
            f"p95 latency {e.p95_latency_ms:.2f} ms <= {rules.max_p95_latency_ms} ms",
        ),
    ]
    if rules.require_parity:
        checks.append((e.parity_passed, "ONNX parity passed"))
    if e.champion_macro_f1 is None:
        checks.append((True, "no champion yet"))
    else:
        # Rounded as the reported metrics are: a tie must not fail on float noise.
        margin = round(e.macro_f1 - e.champion_macro_f1, 6)
        checks.append(
            (
                margin >= rules.min_margin,
                f"macro-F1 {e.macro_f1:.4f} vs champion {e.champion_macro_f1:.4f} on the same "
                f"test split: margin {margin:+.4f} >= {rules.min_margin}",
            )
        )
    reasons = [_rule(ok, text) for ok, text in checks]
    return Decision(passed=all(ok for ok, _ in checks), reasons=reasons)
