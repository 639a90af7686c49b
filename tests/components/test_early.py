"""What ``python -m components`` sets up before a fanning-out stage's imports.

The worker server starts early only when the params file asks for workers, and OpenBLAS
gets one thread.
"""

import os
import subprocess
import sys

import pytest

from components.early import params_path, requested_workers, single_blas_thread


def _params(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["clean"], "params.yaml"),
        (["clean", "--params", "a/b.yaml"], "a/b.yaml"),
        (["--params=c.yaml", "ingest", "-v"], "c.yaml"),
        (["ingest", "--root", "x", "--params", "d.yaml"], "d.yaml"),
    ],
)
def test_the_params_file_is_found_as_the_cli_reads_it(argv, expected):
    assert str(params_path(argv)) == expected


@pytest.mark.parametrize(
    ("stage", "text", "expected"),
    [
        ("ingest", "ingest:\n  workers: 2\n", ("ingest", 2)),
        ("clean", "clean:\n  workers: 0\n", ("clean", 0)),
        ("validate", "validate:\n  workers: 1\n", ("validate", 1)),
        ("tokenize", "tokenize:\n  workers: 2\n", None),  # no worker server
        ("clean", "ingest:\n  workers: 2\n", None),  # its section does not say
        ("clean", "clean:\n  workers: two\n", None),  # left to validation to report
        ("clean", "clean:\n  workers: -1\n", None),
        ("clean", "clean:\n  workers: true\n", None),
        ("clean", "- a list\n", None),
        ("clean", "clean: [unclosed\n", None),
        # A stage on a Dask cluster (data.engine) has no local workers; validate never is.
        ("ingest", "data: {engine: dask}\ningest:\n  workers: 2\n", None),
        ("clean", "data: {engine: dask}\nclean:\n  workers: 2\n", None),
        ("clean", "data: {engine: local}\nclean:\n  workers: 2\n", ("clean", 2)),
        ("validate", "data: {engine: dask}\nvalidate:\n  workers: 2\n", ("validate", 2)),
    ],
)
def test_only_a_valid_workers_key_of_a_fanning_out_stage_counts(tmp_path, stage, text, expected):
    assert requested_workers([stage, "--params", _params(tmp_path, text)]) == expected


def test_a_missing_params_file_starts_nothing(tmp_path):
    assert requested_workers(["clean", "--params", str(tmp_path / "absent.yaml")]) is None


def _servers_started(params_file: str) -> str:
    # The server starts in the background: look for it for up to 10 s (a busy machine).
    code = (
        "import time, psutil; from components.early import start_workers_early; "
        f"started = start_workers_early(['ingest', '--params', {params_file!r}]); "
        "deadline = time.monotonic() + (10 if started else 1)\n"
        "while True:\n"
        "    servers = [p for p in psutil.Process().children() "
        "if 'forkserver' in ' '.join(p.cmdline())]\n"
        "    if servers or time.monotonic() > deadline: break\n"
        "    time.sleep(0.05)\n"
        "print(started, len(servers))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_server_starts_for_two_workers_and_none_for_one(tmp_path):
    assert _servers_started(_params(tmp_path, "ingest:\n  workers: 2\n")) == "True 1"
    assert _servers_started(_params(tmp_path, "ingest:\n  workers: 1\n")) == "False 0"


def _threads_once_numpy_is_imported(stage: str, environment: dict[str, str]) -> tuple[str, int]:
    code = (
        "import os, psutil; from components.early import single_blas_thread; "
        f"single_blas_thread([{stage!r}, '--params', 'p.yaml']); import numpy; "
        "print(os.environ.get('OPENBLAS_NUM_THREADS'), psutil.Process().num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | environment
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    setting, threads = done.stdout.split()
    return setting, int(threads)


def test_fanning_out_stages_import_numpy_without_blas_threads():
    assert _threads_once_numpy_is_imported("clean", {}) == ("1", 1)
    assert _threads_once_numpy_is_imported("ingest", {}) == ("1", 1)
    # Stages that may do linear algebra keep OpenBLAS's own choice (a thread per core).
    assert _threads_once_numpy_is_imported("pretrain", {})[0] == "None"


def test_a_blas_thread_count_set_by_the_user_is_kept(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert single_blas_thread(["clean"])
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert _threads_once_numpy_is_imported("clean", {"OPENBLAS_NUM_THREADS": "2"})[0] == "2"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert not single_blas_thread(["tokenize"])
    assert "OPENBLAS_NUM_THREADS" not in os.environ
