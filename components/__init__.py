"""wikilm pipeline stages: pure, framework-free building blocks (no Prefect, no DVC here).

Each stage module exposes ``run(params, paths) -> Result``; ``python -m components <stage>``
is the command-line adapter that DVC calls.
"""
