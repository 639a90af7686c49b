"""Artifact plumbing shared by every stage: atomic outputs, checksums and ``meta.json``.

A stage writes into a temporary sibling of its output folder and renames it into place only
when everything succeeded, so a crashed or killed stage leaves the previous output or none,
never a half-written one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.core.errors import ArtifactError

META_FILE = "meta.json"
# Files that several stages (and serving) read by name.
TOKENIZER_FILE = "tokenizer.json"
SERVING_FILE = "serving.json"
_CHUNK = 1 << 20
# The owner that :func:`temp_prefix` writes into a temporary name.
_OWNER = re.compile(r"\.tmp-(?P<pid>\d+)@(?P<host>.+)-[^-]*$")
log = logging.getLogger(__name__)


def temp_prefix(path: Path) -> str:
    """The name prefix of a temporary sibling of ``path``: it names its owner (pid, host).

    A later run removes such a leftover only once its owner is gone (:func:`_remove_stale`).
    """
    return f".{path.name}.tmp-{os.getpid()}@{socket.gethostname()}-"


def _remove_stale(target: Path) -> None:
    """Clean what killed runs left beside ``target``, losing no output.

    A temporary folder or file goes once its owner is gone (those of older versions name
    none). A run killed between the two renames of :func:`_swap_into_place` left the previous
    output moved aside and nothing in its place: it is put back.
    """
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        if _owner_gone(stale.name):
            _remove(stale)
        else:
            log.warning("kept %s: the process that writes it still runs", stale)
    previous = sorted(target.parent.glob(f".{target.name}.old-*"), key=_modified)
    if previous and not target.exists():
        previous.pop().replace(target)
        log.warning("restored %s: a killed run had moved it aside", target)
    for old in previous:
        _remove(old)


def _owner_gone(name: str) -> bool:
    """Whether the owner a temporary name records has ended (a name without one: yes).

    An owner on another host cannot be asked, so it counts as running: its leftover stays.
    """
    owner = _OWNER.search(name)
    if owner is None:
        return True
    pid, host = int(owner["pid"]), owner["host"]
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return True  # this process's own leftover, from a block that has ended
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, and someone else's
    return False


def _modified(path: Path) -> float:
    return path.lstat().st_mtime


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces ``target`` when the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary folder is removed and
    ``target`` is left exactly as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; outputs get the usual mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_into_place(tmp, target)


def _swap_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving any previous ``target`` aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.replace(old)
    new.replace(target)
    if old is not None:
        _remove(old)  # only now: the new output is in place


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, ensure_ascii=False, default=str)
            handle.write("\n")
        Path(tmp).chmod(0o666 & ~_umask())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Write dict rows as CSV atomically; the columns are the first row's keys by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            fields = columns or (list(rows[0]) if rows else [])
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        Path(tmp).chmod(0o666 & ~_umask())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so memory stays constant."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dir_digest(folder: Path) -> str:
    """Digest of a folder's files (names and contents), independent of listing order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def git_commit() -> str | None:
    """Commit of the code that runs (with ``-dirty`` when modified), or None outside git."""
    package_dir = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


# What differs from one execution to the next: durations, throughput, latencies, the run's
# id. They are in metrics/<stage>.json and the stage's MLflow run, never in an output.
RUN_DEPENDENT = frozenset({"seconds", "tokens_per_s", "mfu", "latency", "mlflow_run_id"})


def build_meta(stage: str, params: dict[str, Any], inputs: dict[str, str], **extra: Any) -> dict:
    """The ``meta.json`` every output folder carries: what produced it, from what.

    No clock time and no measurement of the execution (:data:`RUN_DEPENDENT`): the same
    code, params and inputs give the same bytes, so DVC sees an unchanged output as
    unchanged (downstream stages stay cached) and runs on different machines or against
    different servers leave the same dvc.lock.
    """
    return {
        "stage": stage,
        "format_version": 1,
        "git_commit": git_commit(),
        "params": params,
        "inputs": inputs,
        **_reproducible(extra),
    }


def _reproducible(value: Any) -> Any:
    """``value`` without the :data:`RUN_DEPENDENT` keys of its mappings, at any depth."""
    if isinstance(value, dict):
        return {k: _reproducible(v) for k, v in value.items() if k not in RUN_DEPENDENT}
    if isinstance(value, list):
        return [_reproducible(v) for v in value]
    return value


def read_meta(folder: Path, stage: str) -> dict:
    """Load an upstream ``meta.json``, checking it was written by ``stage``.

    Raises:
        ArtifactError: the folder or its meta.json is missing, unreadable or from another stage.
    """
    path = folder / META_FILE
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run the '{stage}' stage first (dvc repro {stage})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON ({error}): rerun '{stage}'") from None
    if meta.get("stage") != stage or meta.get("format_version") != 1:
        raise ArtifactError(
            f"{path} was written by stage {meta.get('stage')!r} format "
            f"{meta.get('format_version')!r}, expected {stage!r} format 1: rerun '{stage}'"
        )
    return meta
