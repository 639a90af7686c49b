"""wikilm's pipeline code: framework-free stages over a domain library (no Prefect, no DVC).

Layers, top to bottom; a module imports only from its own layer or the ones below
(``lint-imports`` checks the contracts in pyproject.toml):

- entry points: :mod:`components.stages` (one entry per dvc.yaml stage),
  :mod:`components.cli` (``python -m components <stage>``, what DVC runs) and
  :mod:`components.early`;
- :mod:`components.registry`: register, gate, approve, promote and roll back models;
- :mod:`components.export`: ONNX graphs of the trained models, checked and timed;
- :mod:`components.model`: the GPT model, its Lightning training, fine-tuning, evaluation;
- :mod:`components.data`: dumps to clean, validated text and token files;
- :mod:`components.core`: configuration, errors, artifacts, parallelism, MLflow tracking;
  and :mod:`components.serving`, the pyfunc models shipped inside every registered version,
  which imports nothing of this package.
"""
