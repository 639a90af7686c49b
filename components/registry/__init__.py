"""The model registry (MLflow): register, gate, approve or reject, promote and roll back.

Not a DVC stage: it changes shared state. ``packaging`` logs the exported graphs as pyfunc
models (:mod:`components.serving`) and digests what they serve, ``store`` reads and moves
versions, aliases and the append-only history, ``gate`` holds the promotion rules (and each
model's ``Outcome``), ``promotion`` runs the steps, and ``params`` holds the ``promote``
section. ``champion`` loads a model's champion from its verified files (``resolve`` finds
the version and digest without MLflow), for ``wikilm predict`` and the gate.

May import every layer below it: export, model, data, core and serving.
"""
