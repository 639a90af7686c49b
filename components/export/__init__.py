"""The export stage: both trained models as ONNX graphs, checked and timed with onnxruntime.

``graphs`` builds the graphs, their onnxruntime sessions and int8 copies; ``export`` checks
parity with PyTorch and measures latency; ``params`` holds its section.

May import :mod:`components.model`, :mod:`components.data` and :mod:`components.core`.
"""
