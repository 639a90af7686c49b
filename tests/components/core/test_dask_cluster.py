"""The data stages on a Dask cluster started as a deployment starts one.

A ``dask scheduler`` and two ``dask worker`` processes (the CLI), then ``ingest``, ``clean``
and ``validate`` as DVC runs them (``python -m components <stage>``), once on the local pool
and once on the cluster: the outputs must be the same bytes, and the work must have run on
the workers. Dask's environment variable naming the scheduler is checked with ingest alone:
validate spends seconds importing Great Expectations whatever the engine.
"""

from __future__ import annotations

import bz2
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dask.utils import key_split
from distributed import Client, get_task_stream

from components.core.dask_engine import SCHEDULER_VARIABLE
from components.data.sources import builtin_path

DASK = Path(sys.executable).with_name("dask")
# The data stages, each with a function it sends to the workers (the tasks' name).
TASKS = {"ingest": "render_batch", "clean": "assess_batch", "validate": "batch_stats"}
STAGES = tuple(TASKS)
_PAGE = re.compile(rb"  <page>.*?</page>\n", re.S)


@dataclass
class Cluster:
    """A running scheduler, its address, and a client of it for the checks."""

    address: str
    client: Client


def free_port() -> int:
    """A local TCP port that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start ``command`` in a process group of its own (a nanny and its worker are two).

    Its output goes to ``log``, and Dask's scratch files next to it.
    """
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(log.parent)}
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env=env,
            start_new_session=True,
        )


def stop(process: subprocess.Popen) -> None:
    """End ``process`` and every process of its group: politely, then for certain."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    # The leader may be gone while a worker it started is not.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """``dask scheduler`` and two single-threaded ``dask worker`` processes on this machine."""
    folder = tmp_path_factory.mktemp("cluster")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    worker = [str(DASK), "worker", address, "--nthreads", "1"]
    processes = [start([*scheduler, "--no-dashboard"], folder / "scheduler.log")]
    try:
        for i in range(2):
            processes.append(start([*worker, "--no-dashboard"], folder / f"worker{i}.log"))
        # The client retries until the scheduler listens (Dask's connect timeout).
        with Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield Cluster(address, client)
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The builtin sample with a renamed copy of every fourth page: exact duplicates."""
    xml = bz2.decompress(builtin_path("enwiki-sample").read_bytes())
    pages = _PAGE.findall(xml)
    copies = [_renamed(page, 10**7 + i) for i, page in enumerate(pages[::4])]
    end = xml.rindex(b"</page>\n") + len(b"</page>\n")
    path = tmp_path_factory.mktemp("dump") / "enwiki-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(xml[:end] + b"".join(copies) + xml[end:], compresslevel=1))
    return path


def _renamed(page: bytes, page_id: int) -> bytes:
    """``page`` with another page id and title (its first <id> is the page's)."""
    page = re.sub(rb"<title>(.*?)</title>", rb"<title>\1 (copy)</title>", page, count=1)
    return re.sub(rb"<id>\d+</id>", b"<id>%d</id>" % page_id, page, count=1)


def stage_environment(scheduler: str | None = None) -> dict[str, str]:
    """This process's environment, MLflow off, Dask's address variable set only if given.

    Git finds no repository: meta.json then records no commit, so that a commit made between
    two runs of this module cannot tell their outputs apart.
    """
    env = {k: v for k, v in os.environ.items() if k != SCHEDULER_VARIABLE}
    env["WIKILM_TRACKING"] = "off"
    env["GIT_DIR"] = os.devnull
    if scheduler:
        env[SCHEDULER_VARIABLE] = scheduler
    return env


def run_stages(
    root: Path, dump: Path, data: dict, env: dict[str, str], stages: tuple[str, ...] = STAGES
) -> dict[str, str]:
    """Run ``stages`` as DVC does, in a workspace at ``root``; returns each one's log."""
    root.mkdir(parents=True, exist_ok=True)
    params = root / "params.yaml"  # JSON is YAML
    params.write_text(json.dumps({"data": data, "ingest": {"source": str(dump), "shard_docs": 40}}))
    logs = {}
    for stage in stages:
        command = [sys.executable, "-m", "components", stage, "--params", str(params)]
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        assert done.returncode == 0, f"{stage} failed:\n{done.stderr}"
        logs[stage] = done.stderr
    return logs


def outputs(root: Path, stages: tuple[str, ...]) -> dict[str, bytes]:
    """Every file that ``stages`` wrote under data/, and validate's results and metrics."""
    files = {
        str(path.relative_to(root)): path.read_bytes()
        for stage in stages
        for path in (root / "data" / stage).rglob("*")
        if path.is_file()
    }
    if "validate" in stages:
        for name in ("reports/validate/results.json", "metrics/validate.json"):
            files[name] = (root / name).read_bytes()
    return files


def metrics(root: Path, stage: str) -> dict:
    """What ``stage`` wrote to ``metrics/<stage>.json``."""
    return json.loads((root / "metrics" / f"{stage}.json").read_text())


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory, dump: Path) -> Path:
    """A workspace where the data stages ran on the local process pool."""
    root = tmp_path_factory.mktemp("local")
    run_stages(root, dump, {"engine": "local"}, stage_environment())
    return root


def test_the_corpus_gives_every_stage_work_to_compare(local_root):
    ingest, clean = metrics(local_root, "ingest"), metrics(local_root, "clean")
    assert ingest["shards"] >= 3
    assert ingest["outcomes"]["redirect"] > 0
    assert clean["rejected"]["exact_duplicate"] >= 20  # the renamed copies
    assert 0 < clean["documents_out"] < clean["documents_in"] == ingest["documents"]
    assert metrics(local_root, "validate")["success"]
    assert (local_root / "data" / "clean" / "rejected").is_dir()


@pytest.mark.parametrize(("named_by", "stages"), [("params", STAGES), ("environment", ("ingest",))])
def test_the_stages_on_a_dask_cluster_write_the_same_bytes(
    cluster, dump, local_root, tmp_path, named_by, stages
):
    if named_by == "params":
        data, env = {"engine": "dask", "scheduler": cluster.address}, stage_environment()
    else:
        data, env = {"engine": "dask"}, stage_environment(cluster.address)
    with get_task_stream(cluster.client) as stream:
        logs = run_stages(tmp_path, dump, data, env, stages)
    assert outputs(tmp_path, stages) == outputs(local_root, stages)
    # Each stage connected to the cluster, and its workers ran each stage's function (which
    # of the two ran what is the scheduler's choice).
    connected = f"data engine dask: scheduler {cluster.address}, 2 workers, 2 threads"
    assert all(connected in log for log in logs.values())
    tasks = [(key_split(task["key"]), task["worker"]) for task in stream.data]
    assert {TASKS[stage] for stage in stages} <= {name for name, _ in tasks}
    assert {worker for _, worker in tasks} <= set(cluster.client.scheduler_info()["workers"])
    assert all(task["status"] == "OK" for task in stream.data)
