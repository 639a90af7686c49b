"""Set up a fanning-out stage's processes first thing, before the stage's own imports.

The fork server of a stage that fans out (one with ``workers`` in
:data:`components.stages.STAGES`) imports the workers' module once, and workers fork from
it only when that is done. Started after the command-line module and params were loaded,
that import was still running when the first batch was ready: 0.1 s of every parallel
stage. Started here it overlaps with them.

This runs before params are validated, so it only reads the stage's ``workers`` key (and
``data.engine``: a stage on a Dask cluster starts no local workers) as written. Without one
(or with an unreadable file) it starts nothing and leaves the decision to
:func:`components.cli.run_stage_in_process`, which makes it again from the validated params.

It also gives numpy's OpenBLAS one thread in these stages (:func:`single_blas_thread`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from components.core.parallel import prestart, worker_count
from components.stages import STAGES

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it


def fanning_out_stage(argv: list[str]) -> str | None:
    """The stage named in ``argv`` if it fans out to worker processes."""
    return next((arg for arg in argv if arg in STAGES and STAGES[arg].workers), None)


def single_blas_thread(argv: list[str]) -> bool:
    """Give OpenBLAS one thread in a fanning-out stage, unless the environment sets a count.

    These stages do element-wise numpy work only, never linear algebra. OpenBLAS starts a
    thread per core when numpy (or scipy, which has its own copy) is imported, and they spin
    for a while: 0.1 CPU seconds in each such process, taken from the stage's workers. Set
    before anything imports numpy, and inherited by the worker server.
    """
    if fanning_out_stage(argv) is None:
        return False
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return True


def requested_workers(argv: list[str]) -> tuple[str, int] | None:
    """The stage named in ``argv`` if it fans out, and the workers its params file sets."""
    stage = fanning_out_stage(argv)
    if stage is None:
        return None
    try:
        with params_path(argv).open(encoding="utf-8") as handle:
            raw = yaml.load(handle, Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict) or on_cluster(raw, stage):
        return None
    section = raw.get(stage)
    workers = section.get("workers") if isinstance(section, dict) else None
    return (stage, workers) if type(workers) is int and workers >= 0 else None


def on_cluster(raw: dict, stage: str) -> bool:
    """Whether ``stage`` sends its work to a Dask cluster (``data.engine``) instead."""
    data = raw.get("data")
    return "data" in STAGES[stage].reads and isinstance(data, dict) and data.get("engine") == "dask"


def params_path(argv: list[str]) -> Path:
    """The ``--params`` file of a ``python -m components`` command line."""
    for index, arg in enumerate(argv):
        if arg == "--params" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--params="):
            return Path(arg.removeprefix("--params="))
    return Path("params.yaml")


def start_workers_early(argv: list[str]) -> bool:
    """Start the worker server of the stage in ``argv`` if its params ask for workers."""
    requested = requested_workers(argv)
    if requested is None or worker_count(requested[1]) <= 1:
        return False
    prestart(STAGES[requested[0]].workers)
    return True
