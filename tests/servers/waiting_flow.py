"""A flow that registers a workspace's export and waits for approval, run as its own process.

``python -m tests.servers.waiting_flow ROOT TIMEOUT_S`` registers the export under ROOT with
manual approval and pauses for each version, as the pipeline flow does after its stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow

from components.core.paths import Paths, PathsParams
from components.registry.promotion import register_and_gate
from flows.approval import await_approval
from tests.conftest import MECHANICS_GATE, make_params

MANUAL = {**MECHANICS_GATE, "approval": "manual"}


@flow(name="waiting-for-approval", persist_result=False)
def waiting_for_approval(root: str, timeout_s: int) -> list:
    """Register, then wait for a reviewer's decision on each version; the outcomes."""
    params = make_params(promote=MANUAL)
    paths = Paths.resolve(PathsParams(), Path(root))
    return await_approval(params, paths, register_and_gate(params, paths), timeout_s)


if __name__ == "__main__":
    print(waiting_for_approval(sys.argv[1], int(sys.argv[2])))  # noqa: T201
