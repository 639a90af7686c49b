"""Serving the exported ONNX graphs with their tokenizer: onnxruntime alone, no torch.

- :mod:`components.serving.predictor`: the prediction itself (tokenizer, onnxruntime, numpy):
  the classifier's labels and probabilities, the language model's scores and continuations.
  It imports neither MLflow nor pandas, so a command that answers from it starts fast.
- :mod:`components.serving.pyfunc`: the thin MLflow pyfunc models over it.
- :mod:`components.serving.classifier_model` and :mod:`components.serving.lm_model`: the
  models-from-code files logged with each version (MLflow runs them to build the model:
  nothing is pickled).

This package is shipped inside each logged model (with this package's parent
``__init__``), so it imports nothing of the rest of ``components``.
"""
