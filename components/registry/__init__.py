"""The model registry (MLflow): register, gate, approve or reject, promote and roll back.

Not a DVC stage: it changes shared state. ``packaging`` logs the exported graphs as pyfunc
models (:mod:`components.serving`), ``store`` reads and moves versions, aliases and the
append-only history, ``gate`` holds the promotion rules, and ``promotion`` runs the steps.

May import every layer below it: export, model, data and core.
"""
