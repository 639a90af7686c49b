"""Copies of this repository that run the whole pipeline, as a fresh clone would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "clean", "validate", "tokenize", "pretrain", "finetune", "evaluate", "export"]
QUICK_TRAINING = {
    "model": {"overrides": {"n_layer": 1, "n_embd": 64, "block_size": 64}},
    "pretrain": {"max_steps": 20, "val_every": 10, "warmup_steps": 2, "checkpoint_every": 10},
    # The random-init comparison doubles fine-tuning; tests/components cover it.
    "finetune": {"max_epochs": 2, "compare_random_init": False},
    "evaluate": {"max_tokens": 20000},
    "export": {"latency_repeats": 3},
    # Minutes of training cannot be asked to beat TF-IDF + LR: the copy's gate waives it.
    "promote": {"min_margin_over_tfidf": -1.0},
}
# One author and date for every copy's commit: copies of the same files get the same commit
# id, which the stages record in their outputs' meta.json.
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+00:00",
}


def run_command(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with this environment's tools first on PATH; fail the test on an error."""
    env = {
        **(os.environ if env is None else env),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        **GIT_IDENTITY,
    }
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def copy_repository(dest: Path) -> Path:
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


def quick_clone(dest: Path) -> Path:
    """A committed copy whose params keep the data settings and shrink the training ones."""
    root = copy_repository(dest)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in QUICK_TRAINING.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_command(["git", "init", "-q", "-b", "main"], root)
    run_command(["git", "add", "-A"], root)
    run_command(["git", "commit", "-qm", "baseline"], root)
    return root
