"""Running a stage as DVC does (its own process), and killing it at a chosen point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def stage_params(root: Path, **sections: dict) -> Path:
    """A params.yaml in ``root`` (JSON is YAML) with the data stages' paths under ``data/``."""
    path = root / "params.yaml"
    folders = {"ingest": "data/ingest", "clean": "data/clean", "tokens": "data/tokens"}
    path.write_text(json.dumps({"paths": folders, **sections}))
    return path


def start_stage(stage: str, params: Path, log: Path | None = None) -> subprocess.Popen:
    """``python -m components <stage>`` with tracking off; its output to ``log`` if given."""
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "components", stage, "--params", str(params)],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "WIKILM_TRACKING": "off"},
        text=True,
    )


def kill_once_exists(process: subprocess.Popen, path: Path, timeout_s: float = 120) -> None:
    """SIGKILL ``process`` as soon as ``path`` exists (it must still be running then)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the stage ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout_s} s"
        time.sleep(0.002)
    process.kill()
    process.wait()


def run_stage(stage: str, params: Path, log: Path) -> str:
    """Run the stage to its end; its output (it must succeed)."""
    code = start_stage(stage, params, log).wait(timeout=600)
    output = log.read_text()
    assert code == 0, output
    return output


def kill_and_rerun(
    stage: str, params: Path, done: Path, first: int, output: Path, log: Path
) -> tuple[int, str]:
    """SIGKILL the stage once its shard ``first`` is marked in ``done``, then rerun it.

    The killed run must leave no output behind. Returns how many shards it had marked done
    and what the rerun, run to its end, printed.
    """
    kill_once_exists(start_stage(stage, params), done / f"{first:05d}.json")
    marked = len(list(done.glob("*.json")))
    assert marked > first
    assert not output.exists()
    return marked, run_stage(stage, params, log)
