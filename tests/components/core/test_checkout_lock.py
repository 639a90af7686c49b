"""One run per checkout: real processes hold the lock, are refused, die and are replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.core.checkout_lock import (
    TOKEN_ENV,
    CheckoutBusy,
    checkout_lock,
    lock_path,
    read_holder,
)
from components.core.paths import Paths, PathsParams
from tests.conftest import make_params
from tests.stages import stage_params, start_stage

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from components.core.checkout_lock import checkout_lock
    with checkout_lock(Path(sys.argv[1]), "wikilm run"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def _holder(root: Path) -> subprocess.Popen:
    """Another process that takes the checkout and keeps it until it is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def _run(stage: str, params: Path, log: Path, env: dict | None = None) -> tuple[int, str]:
    process = start_stage(stage, params, log) if env is None else _start(stage, params, log, env)
    return process.wait(timeout=300), log.read_text()


def _start(stage: str, params: Path, log: Path, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "components", stage, "--params", str(params)]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def test_a_stage_is_refused_while_another_run_holds_the_checkout_and_runs_once_it_died(
    tmp_path,
):
    params = stage_params(tmp_path)
    holder = _holder(tmp_path)
    try:
        code, output = _run("ingest", params, tmp_path / "refused.log")
        assert code == 1
        assert f"is in use by 'wikilm run' (pid {holder.pid} on {socket.gethostname()}" in output
        assert "started 20" in output  # the holder's start time, ISO 8601
        assert not (tmp_path / "data" / "ingest").exists()  # refused before any work
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the lock is never released by hand
        holder.wait()
    code, output = _run("ingest", params, tmp_path / "after.log")
    assert code == 0, output
    assert f"'wikilm run' (pid {holder.pid}" in output  # taken over, and said so
    assert (tmp_path / "data" / "ingest" / "meta.json").is_file()
    assert read_holder(lock_path(tmp_path)) is None  # released when the stage ended


def test_processes_started_by_the_holding_run_are_part_of_it(tmp_path):
    params = stage_params(tmp_path)
    with checkout_lock(tmp_path, "wikilm run") as held:
        env = {**os.environ, "WIKILM_TRACKING": "off"}
        assert env[TOKEN_ENV] == held.token
        code, output = _run("ingest", params, tmp_path / "child.log", env)
        assert code == 0, output
        stranger = {k: v for k, v in env.items() if k != TOKEN_ENV}
        code, output = _run("ingest", params, tmp_path / "stranger.log", stranger)
        assert code == 1
        assert f"pid {os.getpid()}" in output
    assert TOKEN_ENV not in os.environ


def test_wikilm_run_is_refused_before_it_opens_a_run_or_starts_a_stage(tmp_path, monkeypatch):
    from flows.pipeline import run_tracked

    monkeypatch.setenv("WIKILM_TRACKING", "off")
    started: list[str] = []
    paths = Paths.resolve(PathsParams(), tmp_path)
    holder = _holder(tmp_path)
    try:
        with pytest.raises(CheckoutBusy, match=f"pid {holder.pid}"):
            run_tracked(
                make_params(),
                Paths.resolve(PathsParams(), tmp_path),
                lambda: started.append("x"),
                list,
            )
    finally:
        holder.kill()
        holder.wait()
    assert started == []
    result = run_tracked(make_params(), paths, lambda: [], list)
    assert result.stages == []


def test_the_lock_is_let_go_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), checkout_lock(tmp_path, "wikilm stage clean"):
        raise RuntimeError("stage failed")
    with checkout_lock(tmp_path, "wikilm stage clean") as holder:
        assert read_holder(lock_path(tmp_path)) == holder


def test_an_empty_or_garbled_lock_file_names_no_holder_and_is_taken(tmp_path):
    path = lock_path(tmp_path)
    path.parent.mkdir()
    for text in ("", "{not json", '{"pid": 1}'):
        path.write_text(text)
        assert read_holder(path) is None
        with checkout_lock(tmp_path, "wikilm stage clean") as holder:
            assert read_holder(path) == holder
