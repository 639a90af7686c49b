"""Params section of the export stage.

One section of params.yaml; :class:`components.params.Params` assembles it with the other
layers' sections. :class:`ExportSections` is what the export stage reads of it.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import Field, PositiveInt, field_validator

from components.core.schema import Section


class ExportParams(Section):
    """Stage ``export``: ONNX graphs of both models, checked and timed with onnxruntime."""

    opset: int = Field(18, ge=18, le=23)
    parity_tolerance: float = Field(1e-4, gt=0, description="max |logit difference| allowed")
    verify_batch: int = Field(
        8,
        ge=1,
        description="held-out LM windows compared; the classifier is compared on its test "
        "split (at most 4096 texts), the texts its int8 scores are measured on",
    )
    # Batch 1 is required: the promotion gate's latency rule reads it.
    latency_batch_sizes: list[PositiveInt] = Field([1, 32], min_length=1)
    latency_seq_len: int = Field(128, ge=1, description="cut to the model's block_size")
    latency_repeats: int = Field(20, ge=2)
    threads: int = Field(2, ge=1, description="intra-op threads, the same for both runtimes")
    quantize: bool = True  # also write a dynamic int8 classifier, scored and timed beside fp32

    @field_validator("latency_batch_sizes")
    @classmethod
    def _has_batch_one(cls, sizes: list[int]) -> list[int]:
        if 1 not in sizes:
            raise ValueError("must include 1: the promotion gate's latency rule reads batch 1")
        return sizes


class ExportSections(Protocol):
    """The assembled params as the export stage reads them."""

    @property
    def export(self) -> ExportParams: ...  # noqa: D102
