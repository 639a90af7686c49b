"""Which process of a distributed run this is, read from the launcher's environment.

Lightning's launcher (and torchrun or SLURM) start one process per device and tell each its
place through environment variables. Stages consult this before the trainer exists: only
the global-zero process records runs, writes artifacts and logs progress.
"""

from __future__ import annotations

import os

# Any of these being non-zero means "not the first process of the whole job".
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")


def is_global_zero() -> bool:
    """True in a single-process run and in the first process of a distributed one."""
    return all(os.environ.get(name, "0").strip() in {"", "0"} for name in RANK_VARIABLES)
