"""The order-preserving process map."""

import os
import subprocess
import sys
import time

import psutil
import pytest

from components.core.parallel import ordered_map
from components.data.assess import assess_batch
from components.data.render import render_batch
from components.data.validate import batch_stats
from components.stages import STAGES


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_input_order_and_pulls_input_lazily():
    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    results = ordered_map(_square, items(), workers=2, window_per_worker=2)
    assert next(results) == 0
    assert len(pulled) <= 2 * 2 + 1  # a bounded window, not the whole input
    assert [0, *results] == [i * i for i in range(40)]


def test_one_worker_maps_in_this_process():
    assert list(ordered_map(_square, range(5), workers=1)) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize(
    ("stage", "function"),
    [("ingest", render_batch), ("clean", assess_batch), ("validate", batch_stats)],
)
def test_the_fork_server_preloads_the_module_the_workers_run(stage, function):
    assert STAGES[stage].workers == function.__module__


@pytest.mark.parametrize(
    ("module", "heavy"),
    [
        ("components.data.render", {"pydantic", "pyarrow", "numpy", "tqdm"}),
        ("components.data.assess", {"tqdm", "datasketch", "pandas", "scipy"}),
    ],
)
def test_workers_start_without_the_stages_heavy_imports(module, heavy):
    code = (
        f"import sys, {module}; "
        f"loaded = {heavy!r} & set(sys.modules); "
        "assert not loaded, f'imported {loaded}'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _descendants(pid):
    return psutil.Process(pid).children(recursive=True)


def test_workers_end_when_their_stage_is_killed():
    """A SIGKILLed stage leaves no worker (nor fork server) behind, waiting forever."""
    code = "import time; from components.core.parallel import ordered_map; "
    code += "list(ordered_map(time.sleep, [30] * 4, 2))"
    stage = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while len(_descendants(stage.pid)) < 3:  # the fork server and two workers
        assert stage.poll() is None
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    time.sleep(0.5)  # the workers are asleep in their first task
    left = _descendants(stage.pid)
    stage.kill()
    stage.wait()
    gone, alive = psutil.wait_procs(left, timeout=15)
    assert alive == [], f"{len(alive)} of {len(left)} processes outlived the stage"


def _pid(_: int) -> int:
    return os.getpid()


def test_a_single_item_runs_in_this_process_and_more_go_to_the_workers():
    assert list(ordered_map(_pid, [0], workers=2)) == [os.getpid()]
    assert os.getpid() not in set(ordered_map(_pid, range(6), workers=2))
