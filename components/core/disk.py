"""Running out of disk space: one clear error naming the folder, what is free, what is needed.

A full disk surfaces as an ``OSError`` (ENOSPC, or EDQUOT over a quota) from wherever the
write happened: Python's files, Arrow's writers, SQLite. :func:`space_for` turns it into a
:class:`~components.core.errors.DiskFull` that says where, how much is free and, when the
stage can tell, about how much more it needs.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from components.core.errors import DiskFull

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# Arrow's writers raise OSError with the errno only in their message.
_FULL_MESSAGES = ("No space left on device", "Disk quota exceeded")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says a disk (or a quota) is full."""
    if not isinstance(error, OSError):
        return False
    return error.errno in _FULL or any(text in str(error) for text in _FULL_MESSAGES)


@contextmanager
def space_for(folder: Path, needed: Callable[[], int | None] = lambda: None) -> Iterator[None]:
    """Turn a full disk under this block into :class:`DiskFull` naming ``folder``.

    ``needed`` tells, when called after the failure, about how many more bytes the work
    needs (None: unknown).
    """
    try:
        yield
    except OSError as error:
        if not is_disk_full(error):
            raise
        where = Path(error.filename) if isinstance(error.filename, str) else folder
        raise DiskFull(disk_full_message(where, needed())) from None


def disk_full_message(path: Path, needed: int | None) -> str:
    """What a user reads when the disk of ``path`` is full."""
    free = free_bytes(path)
    more = f"; about {_mb(needed)} more is needed" if needed else ""
    return (
        f"no space left on the disk of {path} ({_mb(free)} free{more}): free some space "
        "and rerun; what was finished is kept, nothing unfinished was left as done"
    )


def free_bytes(path: Path) -> int:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0


def _mb(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"
