"""One line per stage, from its ``metrics/<stage>.json``: what ``wikilm summary`` prints.

Each function takes the stage's metrics (its result, as JSON) and the run's paths; the stage
table (:data:`components.stages.STAGES`) names each stage's function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the table stays light to import
    from components.core.paths import Paths


def ingest_line(m: dict, paths: Paths) -> str:
    """Articles ingested, pages read, and the dump they came from."""
    return f"{m['documents']:,} articles from {m['pages']:,} pages of {m['dump']}"


def clean_line(m: dict, paths: Paths) -> str:
    """Documents kept, and those dropped by reason."""
    dropped = ", ".join(f"{k} {v}" for k, v in m["rejected"].items()) or "none"
    return f"kept {m['documents_out']:,} of {m['documents_in']:,} documents (dropped: {dropped})"


def validate_line(m: dict, paths: Paths) -> str:
    """The suites' verdict, their expectations, and where the report is."""
    total = sum(s["expectations"] for s in m["suites"].values())
    verdict = "passed" if m["success"] else "FAILED"
    report = (paths.validate / m["data_docs"]).relative_to(paths.root)
    return f"{verdict}: {total} expectations, report in {report}"


def tokenize_line(m: dict, paths: Paths) -> str:
    """Vocabulary, token counts, and bytes per token on val."""
    return (
        f"vocab {m['vocab_size']:,}; {m['tokens_train']:,} train / {m['tokens_val']:,} "
        f"val tokens; {m['bytes_per_token_val']:.2f} bytes per token on val"
    )


def pretrain_line(m: dict, paths: Paths) -> str:
    """Size, steps, val loss and bits per byte, throughput."""
    rate = f"{m['tokens_per_s']:,.0f} tokens/s" if m.get("tokens_per_s") else "rate n/a"
    mfu = f", MFU {m['mfu']:.1%}" if m.get("mfu") is not None else ""
    resumed = f", resumed at step {m['resumed_from_step']}" if m["resumed_from_step"] else ""
    return (
        f"{m['parameters']:,} parameters, {m['steps']:,} steps; val loss {m['val_loss']:.3f}, "
        f"{m['val_bits_per_byte']:.3f} bits per byte; {rate}{mfu}{resumed}"
    )


def finetune_line(m: dict, paths: Paths) -> str:
    """Classes, train examples, and the best epoch's val metrics."""
    stop = "stopped early" if m["stopped_early"] else "ran all epochs"
    return (
        f"{m['classes']} classes, {m['examples_train']:,} train examples; best val loss "
        f"{m['best_val_loss']:.3f}, accuracy {m['best_val_accuracy']:.3f} at epoch "
        f"{m['best_epoch']} ({stop})"
    )


def _f1(scores: dict) -> str:
    """``0.812 [0.790-0.833]``: macro-F1 and its bootstrap interval."""
    interval = scores.get("intervals", {}).get("macro_f1")
    shown = f"{scores['macro_f1']:.3f}"
    return f"{shown} [{interval['low']:.3f}-{interval['high']:.3f}]" if interval else shown


def evaluate_line(m: dict, paths: Paths) -> str:
    """LM bits per byte beside the unigram model's; macro-F1 beside the baselines'."""
    lm, clf = m["lm"], m["classifier"]
    others = [f"{BASELINES[name]} {_f1(clf[name])}" for name in BASELINES if name in clf]
    return (
        f"LM {lm['val']['bits_per_byte']:.3f} bits/byte (unigram "
        f"{lm['val_unigram']['bits_per_byte']:.3f}); classifier macro-F1 "
        f"{_f1(clf['model'])} ({', '.join(others)}) on {m['test_examples']:,} test examples"
    )


# What the classifier is shown beside, in this order.
BASELINES = {
    "random_init": "from random init",
    "tfidf_logreg": "TF-IDF+LR",
    "majority": "majority",
}


def export_line(m: dict, paths: Paths) -> str:
    """ONNX parity and the classifier's p95 latency in each runtime."""
    ort_ms = m["latency"]["classifier"]["onnxruntime"]
    torch_ms = m["latency"]["classifier"]["pytorch"]
    batch = next(iter(ort_ms))
    checks = m["parity"].values()
    verdict = "passed" if all(p["passed"] for p in checks) else "FAILED"
    worst = max(p["max_abs_diff"] for p in checks)
    line = (
        f"ONNX parity {verdict} (max |Δ| {worst:.1e}); "
        f"classifier {batch.replace('_', ' ')} p95 {ort_ms[batch]['p95_ms']:.2f} ms onnxruntime, "
        f"{torch_ms[batch]['p95_ms']:.2f} ms PyTorch"
    )
    if int8 := m.get("int8"):
        int8_ms = m["latency"]["classifier"]["onnxruntime_int8"][batch]["p95_ms"]
        f1 = int8["macro_f1"]
        line += (
            f", {int8_ms:.2f} ms int8 (macro-F1 {f1['onnxruntime_int8']:.3f}, fp32 "
            f"{f1['onnxruntime']:.3f})"
        )
    return line
