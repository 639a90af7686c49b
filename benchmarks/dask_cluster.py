"""A Dask cluster as a deployment starts one, for the benchmarks: CLI processes, not LocalCluster.

``dask_cluster`` starts ``dask scheduler`` and single-threaded ``dask worker`` processes,
waits for them, and stops them afterwards; ``peak_rss`` samples the memory of such process
trees while a stage runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

PYTHON = sys.executable


def tree_rss(processes: list[subprocess.Popen]) -> int:
    """Resident bytes of ``processes`` and all their descendants."""
    total = 0
    for process in processes:
        try:
            root = psutil.Process(process.pid)
            for p in [root, *root.children(recursive=True)]:
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


@contextmanager
def peak_rss(processes: list[subprocess.Popen]) -> Iterator[Callable[[], float]]:
    """Sample the RSS of ``processes``' trees every 100 ms; yields the peak so far (MB)."""
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(processes))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak / 2**20
    finally:
        stop.set()
        sampler.join()


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` in the background, its output going to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen]) -> None:
    """Terminate the processes this script started, killing those that linger."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_file(path: Path, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until ``process`` wrote ``path``; fail with its log if it ended or took too long."""
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the dask scheduler did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


@contextmanager
def dask_cluster(workers: int, folder: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes.

    Yields the scheduler's address and the worker processes; stops them all afterwards.
    One thread per worker: the stages' work is pure Python, threads would share one GIL.
    """
    from distributed import Client

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    address_file = folder / "scheduler.json"
    dask = [PYTHON, "-m", "dask"]
    scheduler = start(
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(address_file)],
        folder / "scheduler.log",
    )  # fmt: skip
    started = [scheduler]
    try:
        wait_for_file(address_file, scheduler, folder / "scheduler.log", timeout=120)
        for i in range(workers):
            started.append(
                start(
                    [*dask, "worker", "--scheduler-file", str(address_file), "--nthreads", "1",
                     "--no-dashboard", "--name", f"worker-{i}",
                     "--local-directory", str(folder / "scratch")],
                    folder / f"worker-{i}.log",
                )
            )  # fmt: skip
        address = json.loads(address_file.read_text())["address"]
        with Client(address, timeout=120) as client:
            try:
                client.wait_for_workers(workers, timeout=300)
            except TimeoutError:
                logs = "\n".join(log.read_text()[-1000:] for log in folder.glob("worker-*.log"))
                raise SystemExit(f"{workers} dask workers did not all start:\n{logs}") from None
        yield address, started[1:]
    finally:
        stop(started[::-1])  # workers first, so that they leave the scheduler cleanly
