import numpy as np
import pandas as pd
import pytest
import torch

from components.core.errors import ArtifactError
from components.export.export import ParityFailed, parity, percentiles, run
from components.export.graphs import session
from components.model.finetune import run as finetune
from tests.conftest import CPU_TRAINER, SMALL_LABELLED, TINY_MODEL, make_params


def _params(**export):
    values = {"latency_repeats": 3, "latency_batch_sizes": [1, 4], "latency_seq_len": 16}
    return make_params(
        model=TINY_MODEL,
        trainer=CPU_TRAINER,
        finetune={"dataset": SMALL_LABELLED, "max_epochs": 1},
        export={**values, **export},
    )


@pytest.fixture
def finetuned(pretrained_workspace):
    finetune(_params(), pretrained_workspace)
    return pretrained_workspace


def test_export_matches_pytorch_and_reports_latency(finetuned):
    result = run(_params(quantize=True), finetuned)
    for name in ("lm", "classifier"):
        assert result.parity[name].passed
        assert result.parity[name].max_abs_diff <= 1e-4
        assert result.parity[name].argmax_agreement == 1.0
        for runtime in ("pytorch", "onnxruntime"):
            latency = result.latency[name][runtime]
            assert set(latency) == {"batch_1", "batch_4"}
            assert 0 < latency["batch_1"].p50_ms <= latency["batch_1"].p95_ms
    assert result.provider == "CPUExecutionProvider"
    assert set(result.size_bytes) == {"lm", "classifier", "classifier.int8"}
    assert result.int8.argmax_agreement >= 0.9
    assert set(result.latency["classifier"]) == {"pytorch", "onnxruntime", "onnxruntime_int8"}
    runtimes = {"pytorch", "onnxruntime", "onnxruntime_int8"}
    assert set(result.int8.accuracy) == set(result.int8.macro_f1) == runtimes
    # The fp32 graph is at parity with PyTorch: the same predictions, the same scores.
    assert result.int8.accuracy["onnxruntime"] == result.int8.accuracy["pytorch"]
    assert result.int8.macro_f1["onnxruntime"] == result.int8.macro_f1["pytorch"]
    assert 0 <= result.int8.macro_f1["onnxruntime_int8"] <= 1
    test = pd.read_parquet(finetuned.finetune / "splits" / "test.parquet")
    assert result.int8.compared == len(test)
    assert {p.name for p in finetuned.export.iterdir()} >= {
        "lm.onnx",
        "classifier.onnx",
        "classifier.int8.onnx",
        "tokenizer.json",
        "serving.json",
        "meta.json",
    }


def test_the_graphs_take_any_batch_and_length(finetuned):
    run(_params(), finetuned)
    lm = session(finetuned.export / "lm.onnx", threads=1)
    for shape in [(1, 1), (3, 32), (5, 7)]:
        ids = np.random.default_rng(0).integers(0, 500, size=shape)
        (logits,) = lm.run(None, {"input_ids": ids})
        assert logits.shape == (*shape, 512)
    classifier = session(finetuned.export / "classifier.onnx", threads=1)
    ids = np.array([[5, 6, 7, 1, 1], [8, 9, 10, 11, 12]])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    logits, probabilities = classifier.run(None, {"input_ids": ids, "attention_mask": mask})
    assert logits.shape == probabilities.shape == (2, 2)
    assert probabilities.sum(axis=1) == pytest.approx([1.0, 1.0], abs=1e-6)
    # Padding after the last real token changes nothing.
    (alone,) = classifier.run(
        ["logits"], {"input_ids": ids[:1, :3], "attention_mask": mask[:1, :3]}
    )
    assert alone == pytest.approx(logits[:1], abs=1e-5)


def test_a_parity_miss_fails_with_the_numbers_and_writes_nothing(finetuned):
    with pytest.raises(ParityFailed, match=r"lm: max \|Δ\| .* \(tolerance 1e-12\)"):
        run(_params(parity_tolerance=1e-12), finetuned)
    assert not finetuned.export.exists()


def test_parity_needs_every_argmax_to_agree():
    reference = np.array([[0.0, 1.0], [2.0, 1.0]])
    assert parity(reference, reference + 1e-6, 1e-4).passed
    flipped = parity(reference, np.array([[0.0, 1.0], [1.0, 1.00001]]), 10.0)
    assert flipped.argmax_agreement == 0.5
    assert not flipped.passed


def test_percentiles_are_ordered():
    latency = percentiles(lambda: torch.ones(10).sum(), repeats=10)
    assert 0 <= latency.p50_ms <= latency.p95_ms


def test_missing_graph_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="run the 'export' stage first"):
        session(tmp_path / "lm.onnx", threads=1)


def test_the_graphs_name_no_folder_of_the_checkout(finetuned):
    import onnx

    from components.export.graphs import STACK_TRACE

    run(_params(), finetuned)
    model = onnx.load(str(finetuned.export / "classifier.onnx"))
    keys = {prop.key for node in model.graph.node for prop in node.metadata_props}
    assert keys  # the exporter's other node metadata (scopes, names) stays
    assert STACK_TRACE not in keys
    assert str(finetuned.root) not in model.SerializeToString().decode("latin-1")
