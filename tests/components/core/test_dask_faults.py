"""A Dask worker killed while a data stage runs on the cluster: the same output all the same.

The stage finishes with the bytes of a run that lost no worker. The cluster is this test's
own (a ``dask scheduler`` and two ``dask worker`` processes, as a deployment starts them),
since one of its workers does not survive the test.
"""

from __future__ import annotations

import bz2
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from components.data.sources import builtin_path
from tests.components.core.test_dask_cluster import (
    DASK,
    _renamed,
    free_port,
    outputs,
    stage_environment,
    start,
    stop,
)

_COPIES = 6  # the builtin sample six times over: work for a few seconds on two workers


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    """A plain-XML dump of the builtin sample's pages, each repeated under new ids."""
    xml = bz2.decompress(builtin_path("enwiki-sample").read_bytes())
    pages = re.findall(rb"  <page>.*?</page>\n", xml, re.S)
    start_at = xml.index(pages[0])
    end = xml.rindex(b"</page>\n") + len(b"</page>\n")
    copies = [
        _renamed(page, 10**7 + copy * len(pages) + i)
        for copy in range(_COPIES)
        for i, page in enumerate(pages)
    ]
    path = tmp_path / "enwiki-pages-articles.xml"
    path.write_bytes(xml[:start_at] + b"".join(copies) + xml[end:])
    return path


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A scheduler's address and the process groups of its two workers."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        tmp_path / "scheduler.log",
    )
    worker = [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"]
    workers = [start(worker, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            stop(process)


def _run(root: Path, dump: Path, data: dict) -> subprocess.Popen:
    root.mkdir()
    params = root / "params.yaml"
    params.write_text(
        json.dumps({"data": data, "ingest": {"source": str(dump), "shard_docs": 100}})
    )
    command = [sys.executable, "-m", "components", "ingest", "--params", str(params)]
    return subprocess.Popen(
        command, cwd=root, env=stage_environment(), stderr=subprocess.PIPE, text=True
    )


def _finished_batches(client: Client) -> int:
    """Ingest's batches that some worker finished so far (the scheduler's count)."""

    def count(dask_scheduler) -> int:  # noqa: ANN001 - Dask passes its scheduler
        prefix = dask_scheduler.task_prefixes.get("render_batch")
        if prefix is None:
            return 0
        counts = prefix.state_counts
        return counts.get("memory", 0) + counts.get("released", 0) + counts.get("forgotten", 0)

    return client.run_on_scheduler(count)


def test_a_worker_killed_mid_stage_leaves_the_output_of_a_run_without_faults(
    tmp_path, dump, cluster
):
    address, workers = cluster
    local = _run(tmp_path / "local", dump, {"engine": "local"})
    assert local.wait(timeout=300) == 0, local.stderr.read()
    stage = _run(tmp_path / "dask", dump, {"engine": "dask", "scheduler": address})
    with Client(address, set_as_default=False) as client:
        deadline = time.monotonic() + 120
        while _finished_batches(client) < 3:
            assert stage.poll() is None, f"ingest ended first:\n{stage.stderr.read()}"
            assert time.monotonic() < deadline, "no batch finished in 120 s"
            time.sleep(0.02)
        os.killpg(workers[0].pid, signal.SIGKILL)  # the nanny and its worker: gone for good
        assert stage.wait(timeout=300) == 0, stage.stderr.read()
        assert len(client.scheduler_info()["workers"]) == 1  # the stage ended on the survivor
        assert _finished_batches(client) > 3
    assert outputs(tmp_path / "dask", ("ingest",)) == outputs(tmp_path / "local", ("ingest",))
