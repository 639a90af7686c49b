"""A disk that fills up while ingest writes: one clear error, and nothing lost.

Nothing half-written is left as done, and a rerun on a bigger disk ends with the output of
a run that never ran out.

The disk is a real file system of the test's own: a tmpfs of a few hundred KB, mounted for
the test (the tests run as root) and grown with ``mount -o remount`` for the rerun.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.core.errors import DiskFull
from tests.stages import stage_params, start_stage

_SHARD_DOCS = 10  # shards of a few dozen KB: several are finished before the disk is full


def _mount(folder: Path, size: str, remount: bool = False) -> None:
    options = f"remount,size={size}" if remount else f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 400 KB file system: less than the builtin sample's ingested shards (1.2 MB)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    _mount(folder, "400k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "meta.json"
    }


def test_ingest_on_a_full_disk_fails_once_clearly_and_resumes_on_a_bigger_one(tmp_path, small_disk):
    reference = tmp_path / "reference"
    reference.mkdir()
    ingest = {"shard_docs": _SHARD_DOCS}
    assert start_stage("ingest", stage_params(reference, ingest=ingest)).wait(timeout=300) == 0

    params = stage_params(small_disk, ingest=ingest)
    log = tmp_path / "full.log"
    code = start_stage("ingest", params, log).wait(timeout=300)
    output = log.read_text()
    assert code == DiskFull.exit_code, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"no space left on the disk of {small_disk}" in errors[0]
    assert "MB free; about " in errors[0]
    assert "Traceback" not in output
    assert not (small_disk / "data" / "ingest").exists()  # nothing half-written as done
    scratch = small_disk / "data" / ".ingest.work"
    finished = sorted(p.name for p in (scratch / "done").glob("*.json"))
    assert finished, "the shards finished before the disk filled up are kept"

    _mount(small_disk, "16m", remount=True)
    log = tmp_path / "rerun.log"
    assert start_stage("ingest", params, log).wait(timeout=300) == 0, log.read_text()
    assert f"ingest: {len(finished)} shards were written by an earlier run" in log.read_text()
    assert _files(small_disk / "data" / "ingest") == _files(reference / "data" / "ingest")
    assert json.loads((small_disk / "metrics" / "ingest.json").read_text())["documents"] > 0
    assert not scratch.exists()
