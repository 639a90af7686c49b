"""ONNX graphs of the models, onnxruntime sessions to run them, and their int8 copies.

Export uses the dynamo-based ``torch.onnx.export`` with dynamic batch and sequence axes.
The classifier graph returns logits and class probabilities; the LM graph, logits. Dynamic
int8 quantisation comes from ``onnxruntime.quantization``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf, NoSuchFile
from torch import nn

from components.core.errors import ArtifactError
from components.model.gpt import GPT, GPTClassifier

log = logging.getLogger(__name__)

LM_INPUTS = ["input_ids"]
LM_OUTPUTS = ["logits"]
CLASSIFIER_INPUTS = ["input_ids", "attention_mask"]
CLASSIFIER_OUTPUTS = ["logits", "probabilities"]


class ClassifierGraph(nn.Module):
    """The classifier with a softmax on top, as served: (ids, mask) -> (logits, probabilities)."""

    def __init__(self, model: GPTClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids and mask -> (B, K) logits and probabilities."""
        logits = self.model(input_ids, attention_mask)
        return logits, torch.softmax(logits, dim=-1)


class LanguageGraph(nn.Module):
    """The decoder with named inputs: (B, T) ids -> (B, T, V) logits."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, V) logits."""
        return self.model(input_ids)


# The exporter's op registry logs, per export, that torchvision's detection ops (nms,
# roi_align, ...) are skipped when torchvision is absent: these models use none of them.
_REGISTRY_LOGGER = "torch.onnx._internal.exporter._registration"


class _NoTorchvision(logging.Filter):
    """Drops the exporter's notes that torchvision is not installed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "torchvision is not installed" not in record.getMessage()


@contextlib.contextmanager
def _filtered(logger: str, note: logging.Filter) -> Iterator[None]:
    """``note`` filters ``logger``'s records within the block."""
    target = logging.getLogger(logger)
    target.addFilter(note)
    try:
        yield
    finally:
        target.removeFilter(note)


def export_graph(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    opset: int,
    max_length: int,
) -> None:
    """Export ``module`` with dynamic batch and sequence axes on every input."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    steps = torch.export.Dim("sequence", min=1, max=max_length)
    shapes = {name: {0: batch, 1: steps} for name in inputs}
    # The exporter narrates each pass on stdout and warns about internals: keep both quiet.
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        _filtered(_REGISTRY_LOGGER, _NoTorchvision()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=shapes,
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    _drop_stack_traces(path)


# Each node's Python stack trace at export, with the checkout's absolute paths in it.
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_stack_traces(path: Path) -> None:
    """Remove the exporter's per-node stack traces from the ONNX file at ``path``.

    They name the folder the code ran from, so the same model exported from two checkouts
    would differ in bytes (and in dvc.lock). The nodes' scopes and names stay.
    """
    model = onnx.load(str(path))
    for node in model.graph.node:
        kept = [p for p in node.metadata_props if p.key != STACK_TRACE]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    onnx.save(model, str(path))


def providers() -> list[str]:
    """CUDA first only when a GPU is really usable, then the CPU."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(path: Path, threads: int) -> ort.InferenceSession:
    """An onnxruntime session with pinned intra-op threads.

    Raises:
        ArtifactError: the file is missing or not a valid ONNX model.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run the 'export' stage first (dvc repro export)")
    try:
        return ort.InferenceSession(str(path), options, providers=providers())
    except (Fail, InvalidProtobuf, NoSuchFile) as error:
        raise ArtifactError(f"{path} cannot be loaded by onnxruntime: {error}") from None


class _QuietQuantizer(logging.Filter):
    """Drops the quantiser's per-tensor notes and its advice to pre-process.

    Both go to the root logger; the advice concerns static quantisation only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return record.levelno >= logging.WARNING and "pre-processing" not in message


def quantize_graph(source: Path, target: Path) -> None:
    """Write an int8 copy of ``source``: MatMul/Gemm weights int8, activations dynamic.

    The exporter's recorded intermediate shapes come from its example inputs; they are
    dropped so that shape inference during quantisation holds for any batch and length.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    del model.graph.value_info[:]
    stripped = target.with_name(f".{target.name}.fp32")
    onnx.save(model, str(stripped))
    try:
        with _filtered("", _QuietQuantizer()):  # "": the root logger
            quantize_dynamic(str(stripped), str(target), weight_type=QuantType.QInt8)
    finally:
        stripped.unlink(missing_ok=True)
