"""Stage ``export``: both models as ONNX graphs, verified and timed with onnxruntime.

The LM (``input_ids -> logits``) and the classifier (``input_ids, attention_mask -> logits,
probabilities``) are exported with dynamic batch and sequence axes. onnxruntime must match
PyTorch on held-out data (validation windows; the classifier's test split) within
``export.parity_tolerance`` on logits with every argmax equal, or the stage fails with the
measured numbers and writes nothing. Latency p50/p95 of both runtimes is measured at each
``export.latency_batch_sizes`` with the same pinned thread count. With ``export.quantize``, a
dynamic int8 classifier is written too: its accuracy and macro-F1 on the test split beside
the fp32 graph's and PyTorch's, its agreement with fp32, and its latency beside theirs.

Writes ``models/export/`` (``lm.onnx``, ``classifier.onnx``, optionally
``classifier.int8.onnx``, ``tokenizer.json``, ``serving.json``, ``meta.json``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from components.core.artifacts import (
    SERVING_FILE,
    TOKENIZER_FILE,
    atomic_dir,
    build_meta,
    dir_digest,
    read_meta,
    write_json,
)
from components.core.errors import WikilmError
from components.core.paths import Paths
from components.core.schema import Report
from components.data.tokenizer_file import load_tokenizer
from components.export.graphs import (
    CLASSIFIER_INPUTS,
    CLASSIFIER_OUTPUTS,
    LM_INPUTS,
    LM_OUTPUTS,
    ClassifierGraph,
    LanguageGraph,
    export_graph,
    providers,
    quantize_graph,
    session,
)
from components.export.params import ExportParams, ExportSections
from components.model.classifier_module import encode_texts, pad_batch
from components.model.model_io import load_classifier, load_gpt, pad_id
from components.model.token_data import evaluation_batches

log = logging.getLogger(__name__)

STAGE = "export"
MAX_CLASSIFIER_CHECK = 4096  # test texts compared at most
INT8 = "onnxruntime_int8"  # the int8 graph's runtime name in the reports


class ParityFailed(WikilmError):
    """onnxruntime's outputs differ from PyTorch's beyond the tolerance."""


class Parity(Report):
    """How closely onnxruntime reproduces PyTorch on held-out inputs."""

    max_abs_diff: float
    argmax_agreement: float
    compared: int  # positions (LM) or texts (classifier)
    passed: bool


class Latency(Report):
    """Milliseconds per call."""

    p50_ms: float
    p95_ms: float


class Int8Report(Report):
    """The dynamically quantised classifier beside the fp32 one, on the test split.

    ``accuracy`` and ``macro_f1`` per runtime: ``pytorch`` (eager), ``onnxruntime`` (the fp32
    graph) and ``onnxruntime_int8``; its latency is under ``latency.classifier`` with theirs.
    """

    max_abs_diff_probabilities: float
    argmax_agreement: float
    compared: int  # test texts
    accuracy: dict[str, float]
    macro_f1: dict[str, float]
    size_bytes: int


class ExportResult(Report):
    """What ``export`` did: written to ``metrics/export.json``."""

    opset: int
    provider: str
    threads: int
    parity: dict[str, Parity]  # lm, classifier
    latency: dict[str, dict[str, dict[str, Latency]]]  # model -> runtime -> batch_<n>
    size_bytes: dict[str, int]
    int8: Int8Report | None
    seconds: float


def parity(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> Parity:
    """Max |difference| and argmax agreement over the last axis."""
    diff = float(np.abs(reference - candidate).max())
    agreement = float((reference.argmax(-1) == candidate.argmax(-1)).mean())
    compared = int(np.prod(reference.shape[:-1]))
    return Parity(
        max_abs_diff=diff,
        argmax_agreement=agreement,
        compared=compared,
        passed=diff <= tolerance and agreement == 1.0,
    )


def percentiles(call: Callable[[], object], repeats: int) -> Latency:
    """p50/p95 wall time of ``call`` after two warm-up calls."""
    for _ in range(2):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return Latency(p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3))


def _latency_inputs(cfg: ExportParams, block_size: int, batch: int) -> dict[str, np.ndarray]:
    steps = min(cfg.latency_seq_len, block_size)
    ids = np.random.default_rng(batch).integers(0, 256, size=(batch, steps), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def measure_latency(
    module: torch.nn.Module, onnx_session, names: list[str], cfg: ExportParams, block_size: int
) -> dict[str, dict[str, Latency]]:
    """p50/p95 of PyTorch eager and onnxruntime at each batch size, same thread count."""
    torch.set_num_threads(cfg.threads)
    timings: dict[str, dict[str, Latency]] = {"pytorch": {}, "onnxruntime": {}}
    device = next(module.parameters()).device
    for batch in cfg.latency_batch_sizes:
        feed = {k: v for k, v in _latency_inputs(cfg, block_size, batch).items() if k in names}
        tensors = [torch.from_numpy(feed[name]).to(device) for name in names]
        with torch.inference_mode():
            timings["pytorch"][f"batch_{batch}"] = percentiles(
                lambda tensors=tensors: module(*tensors), cfg.latency_repeats
            )
        timings["onnxruntime"][f"batch_{batch}"] = percentiles(
            lambda feed=feed: onnx_session.run(None, feed), cfg.latency_repeats
        )
    return timings


def export_lm(paths: Paths, cfg: ExportParams, out: Path) -> tuple[Parity, dict, LanguageGraph]:
    """Export the decoder and check it on validation windows."""
    graph = LanguageGraph(load_gpt(paths.pretrain))
    block = graph.model.config.block_size
    inputs, _ = evaluation_batches(paths.tokens / "val.bin", block, cfg.verify_batch, 1)[0]
    export_graph(graph, (inputs[:1, :8],), out / "lm.onnx", LM_INPUTS, LM_OUTPUTS, cfg.opset, block)
    onnx_session = session(out / "lm.onnx", cfg.threads)
    with torch.inference_mode():
        reference = graph(inputs).numpy()
    candidate = onnx_session.run(None, {"input_ids": inputs.numpy()})[0]
    result = parity(reference, candidate, cfg.parity_tolerance)
    return result, measure_latency(graph, onnx_session, LM_INPUTS, cfg, block), graph


def classifier_inputs(paths: Paths, config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded test texts (ids, mask) and their labels, at most MAX_CLASSIFIER_CHECK."""
    test = pd.read_parquet(paths.finetune / "splits" / "test.parquet").head(MAX_CLASSIFIER_CHECK)
    tokenizer = load_tokenizer(paths.finetune / TOKENIZER_FILE)
    ids, mask = pad_batch(
        encode_texts(tokenizer, test["text"], config["max_length"]), pad_id(config)
    )
    return ids.numpy(), mask.numpy(), test["label"].to_numpy()


class ClassifierExport(NamedTuple):
    """The classifier's graph checked against PyTorch, and what the int8 copy is judged by."""

    parity: Parity
    latency: dict[str, dict[str, Latency]]
    config: dict
    eager: np.ndarray  # PyTorch's logits on the compared test texts


def export_classifier(paths: Paths, cfg: ExportParams, out: Path) -> ClassifierExport:
    """Export the classifier and check it on the test split."""
    model, config = load_classifier(paths.finetune)
    graph = ClassifierGraph(model)
    ids, mask, _ = classifier_inputs(paths, config)
    example = (torch.from_numpy(ids[:2, :8]), torch.from_numpy(mask[:2, :8]))
    block = model.backbone.config.block_size
    path = out / "classifier.onnx"
    export_graph(graph, example, path, CLASSIFIER_INPUTS, CLASSIFIER_OUTPUTS, cfg.opset, block)
    onnx_session = session(path, cfg.threads)
    with torch.inference_mode():
        reference = graph(torch.from_numpy(ids), torch.from_numpy(mask))[0].numpy()
    candidate = onnx_session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    result = parity(reference, candidate, cfg.parity_tolerance)
    latency = measure_latency(graph, onnx_session, CLASSIFIER_INPUTS, cfg, block)
    return ClassifierExport(result, latency, config, reference)


def _scores(predicted: np.ndarray, labels: np.ndarray, classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 (every class counted, absent or not)."""
    from sklearn.metrics import f1_score

    macro_f1 = f1_score(labels, predicted, labels=range(classes), average="macro", zero_division=0)
    return round(float((predicted == labels).mean()), 6), round(float(macro_f1), 6)


def quantize(
    paths: Paths, cfg: ExportParams, out: Path, classifier: ClassifierExport
) -> tuple[Int8Report, dict[str, Latency]]:
    """Write ``classifier.int8.onnx``; score it beside fp32 and PyTorch; time it."""
    source, target = out / "classifier.onnx", out / "classifier.int8.onnx"
    quantize_graph(source, target)
    ids, mask, labels = classifier_inputs(paths, classifier.config)
    feed = {"input_ids": ids, "attention_mask": mask}
    fp32 = session(source, cfg.threads).run(["probabilities"], feed)[0]
    int8_session = session(target, cfg.threads)
    int8 = int8_session.run(["probabilities"], feed)[0]
    classes = len(classifier.config["labels"])
    predictions = {"pytorch": classifier.eager, "onnxruntime": fp32, INT8: int8}
    scores = {name: _scores(p.argmax(1), labels, classes) for name, p in predictions.items()}
    block = classifier.config["model"]["block_size"]
    feeds = {b: _latency_inputs(cfg, block, b) for b in cfg.latency_batch_sizes}
    latency = {
        f"batch_{b}": percentiles(lambda f=f: int8_session.run(None, f), cfg.latency_repeats)
        for b, f in feeds.items()
    }
    report = Int8Report(
        max_abs_diff_probabilities=float(np.abs(fp32 - int8).max()),
        argmax_agreement=float((fp32.argmax(1) == int8.argmax(1)).mean()),
        compared=len(labels),
        accuracy={name: accuracy for name, (accuracy, _) in scores.items()},
        macro_f1={name: macro_f1 for name, (_, macro_f1) in scores.items()},
        size_bytes=target.stat().st_size,
    )
    return report, latency


def _check(parities: dict[str, Parity], tolerance: float) -> None:
    failed = [
        f"{name}: max |Δ| {p.max_abs_diff:.2e} (tolerance {tolerance:.0e}), argmax agreement "
        f"{p.argmax_agreement:.2%} over {p.compared}"
        for name, p in parities.items()
        if not p.passed
    ]
    if failed:
        raise ParityFailed("onnxruntime does not match PyTorch: " + "; ".join(failed))


def run(params: ExportSections, paths: Paths) -> ExportResult:
    """Export, verify and time both models into ``paths.export``.

    Raises:
        ArtifactError: a model or the token files are missing or from another stage.
        ParityFailed: onnxruntime's outputs differ from PyTorch's beyond the tolerance.
    """
    started = time.perf_counter()
    cfg = params.export
    for folder, stage in ((paths.pretrain, "pretrain"), (paths.finetune, "finetune")):
        read_meta(folder, stage)
    with atomic_dir(paths.export) as out:
        lm_parity, lm_latency, _ = export_lm(paths, cfg, out)
        classifier = export_classifier(paths, cfg, out)
        parities = {"lm": lm_parity, "classifier": classifier.parity}
        _check(parities, cfg.parity_tolerance)
        int8 = None
        if cfg.quantize:
            int8, classifier.latency[INT8] = quantize(paths, cfg, out, classifier)
        shutil.copy2(paths.finetune / TOKENIZER_FILE, out / TOKENIZER_FILE)
        write_json(out / SERVING_FILE, serving_config(classifier.config))
        result = ExportResult(
            opset=cfg.opset,
            provider=providers()[0],
            threads=cfg.threads,
            parity=parities,
            latency={"lm": lm_latency, "classifier": classifier.latency},
            size_bytes={p.stem: p.stat().st_size for p in sorted(out.glob("*.onnx"))},
            int8=int8,
            seconds=round(time.perf_counter() - started, 3),
        )
        write_json(out / "meta.json", _meta(params, paths, result))
    _log_summary(result)
    return result


def serving_config(config: dict) -> dict:
    """What a server needs beside the graphs: labels, lengths and special token ids."""
    return {
        "labels": config["labels"],
        "max_length": config["max_length"],
        "block_size": config["model"]["block_size"],
        "pad_id": pad_id(config),
        "special_tokens": config.get("special_tokens", {}),
    }


def _meta(params: ExportSections, paths: Paths, result: ExportResult) -> dict:
    return build_meta(
        STAGE,
        params.export.model_dump(mode="json"),
        {"pretrain": dir_digest(paths.pretrain), "finetune": dir_digest(paths.finetune)},
        result=result.model_dump(mode="json"),
    )


def _log_summary(result: ExportResult) -> None:
    clf = result.latency["classifier"]
    batch = next(iter(clf["onnxruntime"]))
    log.info(
        "export: parity LM %.1e, classifier %.1e; classifier %s p95 %.2f ms onnxruntime, "
        "%.2f ms PyTorch (%s, %d threads)",
        result.parity["lm"].max_abs_diff,
        result.parity["classifier"].max_abs_diff,
        batch,
        clf["onnxruntime"][batch].p95_ms,
        clf["pytorch"][batch].p95_ms,
        result.provider,
        result.threads,
    )
