"""Dynamic int8 quantisation of an ONNX graph (onnxruntime.quantization)."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx


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
    advice = _QuietQuantizer()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(str(stripped), str(target), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(advice)
        stripped.unlink(missing_ok=True)
