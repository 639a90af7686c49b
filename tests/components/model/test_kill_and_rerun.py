"""finetune, evaluate and export SIGKILLed at seeded random points, then rerun.

Each stage runs as DVC runs it (``python -m components <stage>``, its own process). The
rerun after a kill must end with the very bytes of an uninterrupted run: the killed run
leaves its previous output or none, never a part of one, and nothing it left behind
changes what the rerun writes.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CPU_TRAINER, SMALL_LABELLED, TINY_MODEL

STAGES = ("finetune", "evaluate", "export")
# Kill points per stage: export (15 s a try, most of it start-up and its latency runs) once.
KILLS = [("finetune", 1), ("finetune", 2), ("evaluate", 1), ("evaluate", 2), ("export", 1)]
# The sections of the session's exported workspace (tests/conftest.py: exported_root).
PARAMS = {
    "model": TINY_MODEL,
    "trainer": CPU_TRAINER,
    "finetune": {"dataset": SMALL_LABELLED, "max_epochs": 2, "lr": 2e-3},
    "evaluate": {"max_tokens": 5000},
    "export": {"latency_repeats": 3, "latency_batch_sizes": [1], "latency_seq_len": 16},
}
OUTPUT = {"finetune": "models/finetune", "evaluate": "reports/evaluate", "export": "models/export"}


def _start(root: Path, stage: str) -> subprocess.Popen:
    env = {**os.environ, "WIKILM_TRACKING": "off", "GIT_DIR": os.devnull}
    command = [sys.executable, "-m", "components", stage, "--params", str(root / "params.yaml")]
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _run(root: Path, stage: str) -> float:
    """Run ``stage`` to its end in ``root``; its wall time."""
    started = time.monotonic()
    process = _start(root, stage)
    _, errors = process.communicate(timeout=600)
    assert process.returncode == 0, errors
    return time.monotonic() - started


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, exported_root: Path) -> tuple[Path, dict]:
    """Each stage run once, uninterrupted, in order: the workspace, each output and time."""
    root = tmp_path_factory.mktemp("straight") / "work"
    shutil.copytree(exported_root, root)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    done = {}
    for stage in STAGES:
        seconds = _run(root, stage)
        done[stage] = (_files(root / OUTPUT[stage]), seconds)
    return root, done


@pytest.mark.parametrize(("stage", "seed"), KILLS)
def test_a_stage_killed_at_a_random_point_reruns_to_the_same_bytes(tmp_path, straight, stage, seed):
    source, done = straight
    expected, seconds = done[stage]
    root = tmp_path / "work"
    shutil.copytree(source, root)  # the same inputs as the uninterrupted run
    shutil.rmtree(root / OUTPUT[stage])  # as on its first run
    # Anywhere from start-up to the end of its work (the straight run's wall time).
    at = random.Random(f"{stage}-{seed}").uniform(0.2, 0.75) * seconds
    process = _start(root, stage)
    try:
        process.wait(timeout=at)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"{stage} ended before {at:.1f} s"
    assert not (root / OUTPUT[stage]).exists()  # nothing half-written in its place
    _run(root, stage)
    assert _files(root / OUTPUT[stage]) == expected
