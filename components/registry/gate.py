"""The promotion gate: rules from ``params.yaml`` (``promote:``) applied to a challenger.

Pure functions over the challenger's measurements and the champion's score on the same
test split; the registry records the decision and every reason on the model version. An
:class:`Outcome` says what came of it for one model of a run, from the registry to the
command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from components.registry.params import PromoteParams


@dataclass(frozen=True)
class Evidence:
    """What the gate looks at for one classifier version."""

    accuracy: float
    macro_f1: float
    parity_passed: bool
    p95_latency_ms: float
    champion_macro_f1: float | None = None  # on the challenger's test split; None: no champion
    tfidf_macro_f1: float | None = None  # TF-IDF + LR on the same split; None: not measured
    champion_version: str | None = None  # the champion that was scored (None: none was)


@dataclass(frozen=True)
class LmEvidence:
    """What the gate looks at for one language model version."""

    bits_per_byte: float  # on held-out text
    unigram_bits_per_byte: float  # the unigram baseline on the same text
    parity_passed: bool


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


def rule(ok: bool, text: str) -> str:
    """One reason of a decision: ``ok: <rule>`` or ``FAIL: <rule>``."""
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
    checks.append(_beats_tfidf(e, rules.min_margin_over_tfidf))
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
    reasons = [rule(ok, text) for ok, text in checks]
    return Decision(passed=all(ok for ok, _ in checks), reasons=reasons)


def _beats_tfidf(e: Evidence, margin: float) -> tuple[bool, str]:
    """A classifier that loses to a classical baseline is not worth serving."""
    if e.tfidf_macro_f1 is None:
        return False, "TF-IDF + LR's macro-F1 on the test split is not in evaluate's metrics"
    # Rounded as the reported metrics are.
    gain = round(e.macro_f1 - e.tfidf_macro_f1, 6)
    return gain > margin, (
        f"macro-F1 {e.macro_f1:.4f} vs TF-IDF + LR {e.tfidf_macro_f1:.4f} on the same test "
        f"split: margin {gain:+.4f} > {margin}"
    )


def decide_lm(evidence: LmEvidence, rules: PromoteParams) -> Decision:
    """The LM must match its ONNX graph and beat the unigram baseline on held-out text."""
    parity = evidence.parity_passed or not rules.require_parity
    e = evidence
    margin = rules.min_bits_per_byte_below_unigram
    beats, compared = lm_beats_unigram(e.bits_per_byte, e.unigram_bits_per_byte, margin)
    reasons = [rule(parity, "ONNX parity passed"), rule(beats, compared)]
    return Decision(passed=parity and beats, reasons=reasons)


def evidence_text(evidence: Evidence | LmEvidence) -> str:
    """The evidence as recorded on a version (tag ``wikilm.evidence``), to be judged again."""
    return json.dumps(asdict(evidence), sort_keys=True)


def judge(text: str, rules: PromoteParams) -> Decision:
    """The decision of ``rules`` on recorded evidence (see :func:`evidence_text`).

    A tracking server judges what the pipeline measured by its own rules, not the pipeline's.

    Raises:
        ValueError: the text is not evidence of either kind.
    """
    fields = json.loads(text)
    if "bits_per_byte" in fields:
        return decide_lm(LmEvidence(**fields), rules)
    return decide(Evidence(**fields), rules)


def lm_beats_unigram(bits_per_byte: float, unigram: float, margin: float) -> tuple[bool, str]:
    """The LM must predict held-out text better than counting tokens does."""
    gain = round(unigram - bits_per_byte, 6)
    return gain > margin, (
        f"{bits_per_byte:.4f} bits/byte vs the unigram baseline's {unigram:.4f} on held-out "
        f"text: {gain:+.4f} below it > {margin}"
    )


@dataclass(frozen=True)
class Graph:
    """The classifier graph a version serves, and why that one."""

    file: str  # in the export folder
    runtime: str  # its name in metrics/export.json: onnxruntime | onnxruntime_int8
    reason: str


FP32 = Graph("classifier.onnx", "onnxruntime", "serves the fp32 graph")


def classifier_graph(int8: dict | None, rules: PromoteParams) -> Graph:
    """The int8 graph when asked for and its macro-F1 is close enough to fp32's, else fp32.

    ``int8`` is the export stage's int8 report (None when it wrote no int8 graph).
    """
    if not rules.serve_int8 or int8 is None:
        return FP32
    f1, fp32 = int8["macro_f1"]["onnxruntime_int8"], int8["macro_f1"]["onnxruntime"]
    drop = round(fp32 - f1, 6)  # rounded as the reported metrics are
    compared = f"int8 macro-F1 {f1:.4f} vs fp32 {fp32:.4f}: drop {drop:+.4f}"
    if drop <= rules.int8_max_macro_f1_drop:
        return Graph("classifier.int8.onnx", "onnxruntime_int8", f"serves int8 ({compared})")
    reason = f"serves fp32 ({compared} > {rules.int8_max_macro_f1_drop})"
    return Graph(FP32.file, FP32.runtime, reason)


# What came of a run for one model (Outcome.status).
PROMOTED = "promoted"
AWAITING_APPROVAL = "awaiting approval"
GATE_FAILED = "gate failed"
REGISTERED_ALREADY = "registered already"


@dataclass(frozen=True)
class Outcome:
    """What happened to one model of the run: its version, the gate's decision, its status.

    ``status`` is one of the constants above, or ``approved``/``rejected`` once a reviewer
    has decided on a version that awaited approval.
    """

    model: str
    version: str
    decision: Decision
    status: str
