"""One run per checkout at a time: the lock that every entry point takes before writing.

``wikilm run``, ``wikilm stage``, ``python -m components`` (what ``dvc repro`` and the k8s and
SLURM recipes run) all take ``.wikilm/run.lock`` in the repository root. The lock is an
``flock`` on that file, so the kernel (or the NFS server, on a shared volume) releases it
when its holder dies, however it dies: a crashed run never leaves a lock to clean by hand.
The file itself records the holder (pid, host, start time, command) for the message that
a second run gets.

A run passes its token to the processes it starts (``WIKILM_RUN_LOCK``): ``wikilm run``'s
``dvc repro`` and the stages under it are part of the run that holds the lock, not rivals.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from components.core.errors import WikilmError

log = logging.getLogger(__name__)

LOCK_FILE = Path(".wikilm") / "run.lock"
TOKEN_ENV = "WIKILM_RUN_LOCK"


class CheckoutBusy(WikilmError):
    """Another run holds this checkout."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lock: written into the lock file while they hold it."""

    pid: int
    host: str
    started: str
    command: str
    token: str

    def __str__(self) -> str:
        return f"{self.command!r} (pid {self.pid} on {self.host}, started {self.started})"


def lock_path(root: Path) -> Path:
    """The lock file of the checkout at ``root``."""
    return root / LOCK_FILE


@contextmanager
def checkout_lock(root: Path, command: str) -> Iterator[Holder]:
    """Hold the checkout at ``root`` for ``command``; inside the run that holds it, pass.

    Raises:
        CheckoutBusy: another run holds it (the message names the holder).
    """
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if _try_lock(fd):
            yield from _hold(fd, path, command)
            return
        holder = read_holder(path)
        if holder is None or holder.token != os.environ.get(TOKEN_ENV):
            raise CheckoutBusy(_busy_message(root, holder))
        yield holder  # a process that the run holding the checkout started
    finally:
        os.close(fd)  # releases the lock when this process held it


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _hold(fd: int, path: Path, command: str) -> Iterator[Holder]:
    previous = read_holder(path)
    if previous is not None:
        log.info("lock: %s ended without releasing %s; taking it over", previous, path)
    holder = Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
        token=uuid.uuid4().hex,
    )
    _write(fd, json.dumps(asdict(holder)))
    outer = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = holder.token  # the processes this run starts are part of it
    try:
        yield holder
    finally:
        _restore(outer)
        _write(fd, "")  # released: an empty file names no holder


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)
    os.fsync(fd)


def _restore(token: str | None) -> None:
    if token is None:
        os.environ.pop(TOKEN_ENV, None)
    else:
        os.environ[TOKEN_ENV] = token


def read_holder(path: Path) -> Holder | None:
    """The holder the lock file names (None: released, or written by no run)."""
    try:
        return Holder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _busy_message(root: Path, holder: Holder | None) -> str:
    who = str(holder) if holder else "another run (it has not written its name yet)"
    return (
        f"{root} is in use by {who}: wait for it to end, or use another checkout "
        f"(the lock, {lock_path(root)}, is released when that process ends)"
    )
