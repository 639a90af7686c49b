import json
import os
import socket
import subprocess
import sys

import pytest

from components.core.artifacts import (
    atomic_dir,
    build_meta,
    dir_digest,
    file_digest,
    read_meta,
    write_json,
)
from components.core.errors import ArtifactError


def test_atomic_dir_replaces_target_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible until the block succeeds
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_keeps_previous_output_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")

    def crash_half_way():
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        crash_half_way()
    assert (target / "old.txt").read_text() == "old"
    assert not (target / "half.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _leftover(folder, name: str) -> None:
    (folder / name).mkdir()
    (folder / name / "partial").write_text("x")


def test_atomic_dir_removes_leftovers_whose_owner_is_gone(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    _leftover(tmp_path, f".out.tmp-{dead.pid}@{host}-abc123")  # a killed run's
    _leftover(tmp_path, ".out.tmp-abc123")  # an older version's: no owner named
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "ok").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_keeps_the_temporary_folder_of_a_process_that_still_runs(tmp_path):
    """Two real processes: one writes its output, the other must not remove its work."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITE_SLOWLY, str(tmp_path / "out")], stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout.readline().strip() == b"writing"
        elsewhere = f".out.tmp-{os.getpid()}@another-host-x1-abc123"
        _leftover(tmp_path, elsewhere)  # another host's run: it cannot be asked
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "mine").write_text("mine")
        kept = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-"))
        assert kept == sorted([elsewhere, f".out.tmp-{writer.pid}@{socket.gethostname()}-x"])
    finally:
        writer.kill()
        writer.wait()
    with atomic_dir(tmp_path / "out") as tmp:  # now its owner is gone
        (tmp / "again").write_text("again")
    assert sorted(p.name for p in tmp_path.iterdir()) == [elsewhere, "out"]


# A process that holds a temporary folder named as atomic_dir names it, for a while.
WRITE_SLOWLY = """
import os, socket, sys, time
from pathlib import Path
out = Path(sys.argv[1])
(out.parent / f".{out.name}.tmp-{os.getpid()}@{socket.gethostname()}-x").mkdir()
print("writing", flush=True)
time.sleep(600)
"""


def test_a_run_killed_between_the_renames_loses_no_output(tmp_path):
    """The previous output was moved aside and the new one not yet moved in: it comes back."""
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "v1").write_text("1")
    target.replace(tmp_path / ".out.old-1a2b3c4d")  # where the kill left it
    _leftover(tmp_path, ".out.tmp-abc123")  # and the new output, never moved in

    def fail():
        with atomic_dir(target) as tmp:
            (tmp / "v2").write_text("2")
            raise RuntimeError("killed again")

    with pytest.raises(RuntimeError):
        fail()
    assert [p.name for p in target.iterdir()] == ["v1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_moved_aside_output_goes_once_the_new_one_is_in_place(tmp_path):
    target = tmp_path / "out"
    _leftover(tmp_path, "out")
    _leftover(tmp_path, ".out.old-1a2b3c4d")  # killed after the new output moved in
    with atomic_dir(target) as tmp:
        (tmp / "v3").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_output_modes_are_not_private(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        write_json(tmp / "meta.json", {"a": 1})
    assert (tmp_path / "out").stat().st_mode & 0o005 == 0o005
    assert (tmp_path / "out" / "meta.json").stat().st_mode & 0o004


def test_write_json_is_atomic_and_readable(tmp_path):
    path = tmp_path / "m" / "x.json"
    write_json(path, {"b": [1, 2], "u": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"b": [1, 2], "u": "é"}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_dir_digest_depends_on_names_and_contents(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "f").write_text("1")
    first = dir_digest(a)
    (a / "f").write_text("2")
    assert dir_digest(a) != first
    (a / "f").write_text("1")
    assert dir_digest(a) == first
    (a / "f").rename(a / "g")
    assert dir_digest(a) != first


def test_file_digest_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1_000_000)
    assert file_digest(path, "sha1") == hashlib.sha1(b"abc" * 1_000_000).hexdigest()


def test_meta_round_trip_and_stage_check(tmp_path):
    write_json(tmp_path / "meta.json", build_meta("ingest", {"k": 1}, {"dump": "x"}, extra=2))
    meta = read_meta(tmp_path, "ingest")
    assert meta["params"] == {"k": 1}
    assert meta["inputs"] == {"dump": "x"}
    assert meta["extra"] == 2
    with pytest.raises(ArtifactError, match="expected 'clean'"):
        read_meta(tmp_path, "clean")


def test_read_meta_errors_are_actionable(tmp_path):
    with pytest.raises(ArtifactError, match=r"run the 'ingest' stage first \(dvc repro ingest\)"):
        read_meta(tmp_path / "missing", "ingest")
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_meta(tmp_path, "ingest")


def test_write_csv_is_atomic_and_headed_by_the_first_row(tmp_path):
    from components.core.artifacts import write_csv

    path = tmp_path / "plots" / "loss.csv"
    write_csv(path, [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.25}])
    assert path.read_text().splitlines() == ["step,loss", "1,2.5", "2,2.25"]
    with pytest.raises(ValueError, match="dict contains fields not in fieldnames"):
        write_csv(path, [{"step": 3}, {"step": 4, "extra": 1}])
    assert path.read_text().splitlines()[-1] == "2,2.25"  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["loss.csv"]  # no temporaries left


def test_meta_holds_nothing_that_differs_between_executions():
    from components.core.artifacts import build_meta

    result = {"steps": 20, "seconds": 5.5, "tokens_per_s": 812.0, "mfu": None}
    export = {"parity": {"passed": True}, "latency": {"lm": {"p95_ms": 3.1}}}
    meta = build_meta(
        "pretrain",
        {"lr": 1.0},
        {"tokens": "abc"},
        result=result,
        export=[export],
        mlflow_run_id="r",
    )
    assert "created_at" not in meta
    assert "mlflow_run_id" not in meta
    assert meta["result"] == {"steps": 20}
    assert meta["export"] == [{"parity": {"passed": True}}]
    assert meta["params"] == {"lr": 1.0}
    assert meta["inputs"] == {"tokens": "abc"}
