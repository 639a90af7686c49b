"""Params section of the registry's promotion gate (``promote``).

One section of params.yaml; :class:`components.params.Params` assembles it with the other
layers' sections. :class:`RegistrySections` is what the registry reads of it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import Field

from components.core.schema import Section


class PromoteParams(Section):
    """The promotion gate of the model registry (not a DVC stage: it changes the registry)."""

    approval: Literal["auto", "manual"] = "auto"
    four_eyes: bool = True  # the reviewer must differ from whoever triggered the run
    min_accuracy: float = Field(0.0, ge=0, le=1)
    min_macro_f1: float = Field(0.0, ge=0, le=1)
    # Macro-F1 above the current champion's, both scored on the challenger's test split.
    min_margin: float = Field(0.0, ge=-1, le=1)
    # The classifier's macro-F1 must exceed TF-IDF + LR's on the same test split by more than
    # this; the LM's bits per byte must be below the unigram baseline's by more than this.
    min_margin_over_tfidf: float = Field(0.0, ge=-1, le=1)
    min_bits_per_byte_below_unigram: float = Field(0.0, ge=-10, le=10)
    require_parity: bool = True  # ONNX parity of the export stage must have passed
    max_p95_latency_ms: float = Field(250.0, gt=0, description="classifier, onnxruntime, batch 1")
    # Register the int8 classifier (export.quantize) instead of fp32 when its macro-F1 on the
    # test split is at most int8_max_macro_f1_drop below the fp32 graph's.
    serve_int8: bool = False
    int8_max_macro_f1_drop: float = Field(0.01, ge=0, le=1)


class RegistrySections(Protocol):
    """The assembled params as the registry reads them.

    The gate's rules, and the whole params, recorded as a registered version's lineage.
    """

    @property
    def promote(self) -> PromoteParams: ...  # noqa: D102

    def model_dump(self, **options: Any) -> dict[str, Any]: ...  # noqa: D102
