"""wikilm's pipeline code: framework-free stages over a domain library (no Prefect, no DVC).

Layers, top to bottom; a module imports only from its own layer or the ones below
(``lint-imports`` checks the contracts in pyproject.toml):

- entry points: :mod:`components.stages` (the table of stages, with
  :mod:`components.summaries`), :mod:`components.params` (params.yaml, assembled from every
  layer's sections) and :mod:`components.cli` (one stage in this process; ``python -m
  components <stage>``, what DVC runs, sets its process up in ``__main__``);
- :mod:`components.registry`: register, gate, approve, promote and roll back models;
- :mod:`components.export`: ONNX graphs of the trained models, checked and timed;
- :mod:`components.model`: the GPT model, its Lightning training, fine-tuning, evaluation;
- :mod:`components.data`: dumps to clean, validated text and token files;
- :mod:`components.core`: the base of params sections, paths, errors, artifacts,
  parallelism, MLflow tracking; it knows no stage. And :mod:`components.serving`, prediction
  with onnxruntime and the pyfunc models over it, shipped inside every registered version,
  which imports nothing else of this package.

No stage imports another stage's module: what stages share lives in shared modules.
"""
