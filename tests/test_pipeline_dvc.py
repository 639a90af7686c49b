"""End to end: the data stages through DVC on the builtin sample, in a copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "clean", "validate", "tokenize"]

pytestmark = pytest.mark.e2e


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _copy_repository(dest: Path) -> Path:
    """Copy what git would commit (tracked and untracked-but-not-ignored files)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone-like copy with the pipeline reproduced once."""
    root = _copy_repository(tmp_path_factory.mktemp("repo"))
    _run(["git", "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "baseline"], root)
    _run(["dvc", "repro"], root)
    return root


def test_repro_produces_every_stage_output(repo):
    tokens = repo / "data" / "tokens"
    assert {"tokenizer.json", "train.bin", "val.bin", "meta.json"} <= {
        p.name for p in tokens.iterdir()
    }
    lock = (repo / "dvc.lock").read_text()
    for stage in STAGES:
        assert f"  {stage}:" in lock
    ingest = json.loads((repo / "metrics" / "ingest.json").read_text())
    assert ingest["documents"] > 50


def test_second_repro_is_a_no_op(repo):
    lock_before = (repo / "dvc.lock").read_text()
    done = _run(["dvc", "repro"], repo)
    assert "Running stage" not in done.stdout
    assert "up to date" in done.stdout
    assert (repo / "dvc.lock").read_text() == lock_before


def test_metrics_show_lists_every_stage(repo):
    done = _run(["dvc", "metrics", "show", "--json"], repo)
    shown = json.loads(done.stdout)
    files = {Path(name).name for data in shown.values() for name in data["data"]}
    assert files == {f"{stage}.json" for stage in STAGES}


def test_changed_param_reruns_only_that_stage_and_downstream(repo):
    done = _run(["dvc", "exp", "run", "-S", "clean.min_words=80"], repo)
    ran = {stage for stage in STAGES if f"Running stage '{stage}'" in done.stdout}
    assert ran == {"clean", "validate", "tokenize"}, done.stdout
    params = (repo / "params.yaml").read_text()
    assert "min_words: 80" in params
