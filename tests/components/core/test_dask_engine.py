"""The dask data engine: ingest and clean on a real ``LocalCluster`` of two worker processes."""

import contextlib
import logging
import operator
import os
import socket
import subprocess
import sys

import dask.config
import pytest
from distributed import LocalCluster

from components.core.dask_engine import SCHEDULER_VARIABLE, cluster_executor
from components.core.errors import ClusterError, ConfigError, Unreachable
from components.core.parallel import ordered_map
from components.core.paths import Paths, PathsParams
from components.data import clean, ingest
from tests.conftest import make_params
from tests.dumps import WikiPage, article, write_dump

NO_ADDRESS = (
    "data.scheduler: engine 'dask' needs a scheduler address: set data.scheduler "
    f"(tcp://host:8786) or the {SCHEDULER_VARIABLE} environment variable"
)


@contextlib.contextmanager
def local_cluster():
    """A scheduler and two single-threaded worker processes, this process's environment kept.

    Dask's nannies set OMP_NUM_THREADS=1 (and MKL's, OpenBLAS's) in this very process before
    they spawn their workers. Put back, or every training the session starts later would run
    on one thread, slower and with other last bits than a user's.
    """
    environment = dict(os.environ)
    try:
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local:
            yield local
    finally:
        os.environ.clear()
        os.environ.update(environment)


@pytest.fixture(scope="module")
def cluster():
    """One :func:`local_cluster` for every test of this module."""
    with local_cluster() as local:
        yield local


def test_a_local_cluster_leaves_the_thread_settings_as_they_were(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with local_cluster():
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # what the nannies do
    assert "OMP_NUM_THREADS" not in os.environ


@pytest.fixture
def no_default_scheduler(monkeypatch):
    """Neither Dask's configuration nor its environment variable names a scheduler."""
    monkeypatch.delenv(SCHEDULER_VARIABLE, raising=False)
    with dask.config.set({"scheduler-address": None}):
        yield


def closed_port_address() -> str:
    """The address of a local port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def pages() -> list[WikiPage]:
    """Seven ingest batches of 64 pages: kept, duplicate and too-short articles, a redirect."""
    towns = [article(i, f"Town {i}") for i in range(1, 401)]
    copies = [article(1000 + i, f"Town {i}", n=i) for i in range(1, 21)]  # exact duplicates
    stubs = [WikiPage(2000 + i, f"Stub {i}", f"Stub {i} is a village.") for i in range(5)]
    redirect = WikiPage(3000, "Old town", "#REDIRECT [[Town 1]]", redirect="Town 1")
    return [*towns[:200], redirect, *copies, *stubs, *towns[200:]]


def run_data_stages(root, dump, data: dict) -> tuple[Paths, dict, dict]:
    """Ingest and clean ``dump`` into ``root`` with the ``data`` section given."""
    paths = Paths.resolve(PathsParams(), root)
    params = make_params(
        data=data,
        ingest={"source": str(dump), "workers": 2, "shard_docs": 150},
        clean={"workers": 2},
    )
    ingested = ingest.run(params, paths).model_dump(exclude={"seconds"})
    cleaned = clean.run(params, paths).model_dump(exclude={"seconds"})
    return paths, ingested, cleaned


def tree(folder) -> dict[str, bytes]:
    """Every file under ``folder``, by its relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_dask_cluster_writes_the_same_bytes_as_the_local_pool(cluster, tmp_path, caplog):
    dump = write_dump(tmp_path / "towns.xml.bz2", pages())
    local = run_data_stages(tmp_path / "local", dump, {"engine": "local"})
    caplog.set_level(logging.INFO, logger="components.core.dask_engine")
    engine = {"engine": "dask", "scheduler": cluster.scheduler_address}
    on_cluster = run_data_stages(tmp_path / "dask", dump, engine)
    for stage in ("ingest", "clean"):
        assert tree(on_cluster[0].output(stage)) == tree(local[0].output(stage))
    assert on_cluster[1:] == local[1:]
    # The work really went to the cluster: both stages connected and its scheduler ran them.
    connected = f"data engine dask: scheduler {cluster.scheduler_address}, 2 workers, 2 threads"
    assert caplog.messages.count(connected) == 2
    assert {"render_batch", "assess_batch"} <= set(cluster.scheduler.task_prefixes)
    # Outputs with every kind of outcome, in several shards: a comparison that can fail.
    assert local[1]["shards"] == 3
    assert local[1]["outcomes"] == {"kept": 425, "redirect": 1}
    assert {"exact_duplicate", "too_few_words"} <= set(local[2]["rejected"])
    assert (local[0].clean / "rejected").is_dir()


def test_ordered_map_on_a_cluster_keeps_order_and_a_bounded_window(cluster):
    pulled = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    engine = make_params(data={"engine": "dask", "scheduler": cluster.scheduler_address}).data
    results = ordered_map(operator.neg, items(), workers=1, window_per_worker=2, engine=engine)
    assert next(results) == 0
    assert len(pulled) <= 2 * 2 + 1  # two threads, two tasks each: not the whole input
    assert [0, *results] == [-i for i in range(40)]


def test_workers_that_cannot_import_the_tasks_module_are_one_error(cluster):
    with (
        pytest.raises(ClusterError, match=r"2 of 2 workers .* cannot import components\.nowhere"),
        cluster_executor(cluster.scheduler_address, "components.nowhere"),
    ):
        pass


def test_dask_without_a_scheduler_address_is_a_params_error(no_default_scheduler):
    with pytest.raises(ConfigError) as caught:
        make_params(data={"engine": "dask"})
    assert caught.value.problems == [NO_ADDRESS]


def test_dasks_environment_variable_is_a_scheduler_address(no_default_scheduler, monkeypatch):
    monkeypatch.setenv(SCHEDULER_VARIABLE, "tcp://scheduler:8786")
    assert make_params(data={"engine": "dask"}).data.scheduler is None  # Dask resolves it


@pytest.mark.parametrize("address", ["http://host:8786", "tcp://host", "tcp://host:port"])
def test_a_malformed_scheduler_address_is_a_params_error(address):
    with pytest.raises(ConfigError) as caught:
        make_params(data={"engine": "dask", "scheduler": address})
    assert [p.split(":", 1)[0] for p in caught.value.problems] == ["data.scheduler"]


def test_an_unreachable_scheduler_is_one_retryable_error(tmp_path, tiny_dump):
    address = closed_port_address()
    params = make_params(
        data={"engine": "dask", "scheduler": address}, ingest={"source": str(tiny_dump)}
    )
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(Unreachable, match=f"cannot reach the dask scheduler {address} "),
    ):
        ingest.run(params, Paths.resolve(PathsParams(), tmp_path))
    assert not (tmp_path / "data" / "ingest").exists()


def test_the_cli_reports_an_unreachable_scheduler_in_one_line(tmp_path, tiny_dump):
    address = closed_port_address()
    params = tmp_path / "params.yaml"
    params.write_text(
        f"data: {{engine: dask, scheduler: '{address}'}}\ningest: {{source: '{tiny_dump}'}}\n"
    )
    env = {
        **os.environ,
        "WIKILM_TRACKING": "off",
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s",
    }
    done = subprocess.run(
        [sys.executable, "-m", "components", "ingest", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert done.returncode == Unreachable.exit_code
    assert "Traceback" not in done.stderr
    *logged, last = done.stderr.splitlines()
    assert last.startswith(f"error: ingest: cannot reach the dask scheduler {address} (")
    assert last.endswith(f"or set data.scheduler or {SCHEDULER_VARIABLE} to a running one")
    assert all(" INFO " in line for line in logged)  # the stage's progress, nothing else
