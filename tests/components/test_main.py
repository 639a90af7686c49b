"""How ``python -m components`` sets up a stage's process, and how it ends it.

A stage that fans out gets one OpenBLAS thread and, when its validated params ask for more
than one local worker, its worker server before the stage's own imports. The process ends
after every exit handler, without the interpreter's teardown.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from components.cli import single_blas_thread, start_local_workers
from tests.conftest import make_params

DASK = {"engine": "dask", "scheduler": "tcp://127.0.0.1:8786"}


@pytest.mark.parametrize(
    ("stage", "sections", "expected"),
    [
        ("ingest", {"ingest": {"workers": 2}}, True),
        ("clean", {"clean": {"workers": 2}}, True),
        ("validate", {"validate": {"workers": 2}}, True),
        ("clean", {"clean": {"workers": 1}}, False),  # one worker: the stage's own process
        ("tokenize", {}, False),  # no worker server
        ("pretrain", {}, False),
        # A stage on a Dask cluster (data.engine) has no local workers.
        ("ingest", {"data": DASK, "ingest": {"workers": 2}}, False),
        ("clean", {"data": DASK, "clean": {"workers": 2}}, False),
        ("validate", {"data": DASK, "validate": {"workers": 2}}, False),
    ],
)
def test_local_workers_start_only_where_the_validated_params_ask(
    monkeypatch, stage, sections, expected
):
    started = []
    monkeypatch.setattr("components.cli.prestart", started.append)
    assert start_local_workers(stage, make_params(**sections)) is expected
    assert len(started) == int(expected)


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, check=False, timeout=120, env=env,
    )  # fmt: skip


def test_a_worker_server_is_running_once_started():
    # The server starts in the background: look for it for up to 10 s (a busy machine).
    done = _python(
        """
        import time, psutil
        from components.cli import start_local_workers
        from tests.conftest import make_params
        assert start_local_workers("ingest", make_params(ingest={"workers": 2}))
        deadline = time.monotonic() + 10
        while True:
            children = psutil.Process().children()
            servers = [p for p in children if "forkserver" in " ".join(p.cmdline())]
            if servers or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        print(len(servers))
        """
    )
    assert done.stdout.strip() == "1", done.stderr


def _threads_once_numpy_is_imported(stage: str, environment: dict[str, str]) -> tuple[str, int]:
    done = _python(
        f"""
        import os, psutil
        from components.cli import single_blas_thread
        single_blas_thread({stage!r})
        import numpy
        print(os.environ.get("OPENBLAS_NUM_THREADS"), psutil.Process().num_threads())
        """,
        {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | environment,
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
    assert single_blas_thread("clean")
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert _threads_once_numpy_is_imported("clean", {"OPENBLAS_NUM_THREADS": "2"})[0] == "2"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert not single_blas_thread("tokenize")
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_the_process_ends_after_every_exit_handler_and_thread_without_teardown(tmp_path):
    done = _python(
        f"""
        import atexit, pathlib, sys, threading, time
        import components.__main__ as entry
        atexit.register(entry.end_after_exit_handlers)  # first, as the module's guard does
        folder = pathlib.Path({str(tmp_path)!r})
        atexit.register(lambda: (folder / "handled").touch())
        class Teardown:
            def __del__(self):
                (folder / "torn-down").touch()
        kept = Teardown()  # freed only by the interpreter's teardown
        def work():
            time.sleep(0.5)
            (folder / "finished").touch()
        threading.Thread(target=work).start()
        print("unflushed", end="")
        print("to stderr", end="", file=sys.stderr)
        entry.exit_code = 3
        sys.exit(3)
        """
    )
    assert done.returncode == 3
    assert (done.stdout, done.stderr) == ("unflushed", "to stderr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished", "handled"]


def test_a_stage_command_ends_with_its_error_line_and_code(tmp_path):
    (tmp_path / "params.yaml").write_text("clean: {min_words: -1}\n")
    command = [sys.executable, "-m", "components", "clean", "--params", "params.yaml"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: clean: ")
    assert "clean.min_words" in done.stderr
