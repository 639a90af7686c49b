"""ONNX graphs of the models and onnxruntime sessions to run them.

Export uses the dynamo-based ``torch.onnx.export`` with dynamic batch and sequence axes.
The classifier graph returns logits and class probabilities; the LM graph, logits.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf, NoSuchFile
from torch import nn

from components.errors import ArtifactError
from components.model import GPT, GPTClassifier

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
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
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
