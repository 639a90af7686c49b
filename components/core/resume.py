"""A stage's scratch folder that outlives a crash, with a completion marker per input shard.

A long stage works through its input shard by shard and marks each one done (a small JSON
file, written atomically after the shard's work is on disk). Killed and rerun with the same
inputs and params, it skips the shards marked done and redoes only the rest, as datatrove's
pipelines do. The folder records what it was made from: run on other inputs or with other
params, it is emptied first, so no stale work is ever reused. The stage removes it once
its output is in place.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.core.artifacts import write_json
from components.core.errors import WikilmError

log = logging.getLogger(__name__)

ORIGIN_FILE = "origin.json"
DONE_FOLDER = "done"


def work_folder(output: Path) -> Path:
    """The scratch folder of the stage whose output is ``output``: a hidden sibling."""
    return output.with_name(f".{output.name}.work")


class ShardProgress:
    """The shards done so far in ``folder``, for work identified by ``origin``.

    ``origin`` is what the work depends on (the input's digest, the params, a format
    version): JSON-ready, compared as a whole.
    """

    def __init__(self, folder: Path, origin: dict[str, Any]) -> None:
        self.folder = folder
        if self._origin() != origin:
            if folder.exists():
                log.info("%s holds work on other inputs or params: starting afresh", folder)
            shutil.rmtree(folder, ignore_errors=True)
        (folder / DONE_FOLDER).mkdir(parents=True, exist_ok=True)
        write_json(folder / ORIGIN_FILE, origin)

    def _origin(self) -> Any:
        try:
            return json.loads((self.folder / ORIGIN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _marker(self, shard: int) -> Path:
        return self.folder / DONE_FOLDER / f"{shard:05d}.json"

    def resume(self) -> tuple[int, dict[str, Any] | None]:
        """How many shards, from the first, are done, and the state the last one recorded.

        Markers after the first missing one are removed: the work after a gap is redone.
        """
        done, state = 0, None
        while (marker := self._marker(done)).is_file():
            try:
                state = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:  # written atomically, so only a damaged disk gets here
                break
            done += 1
        for marker in (self.folder / DONE_FOLDER).glob("*.json"):
            if int(marker.stem) >= done:
                marker.unlink()
        return done, state

    def mark_done(self, shard: int, state: dict[str, Any]) -> None:
        """Record shard ``shard`` as done, with the ``state`` a resumed run starts from."""
        write_json(self._marker(shard), state)

    @contextmanager
    def kept_for_a_rerun(self) -> Iterator[ShardProgress]:
        """Keep the folder if the block is interrupted; remove it on a definite error.

        A bad input or setting (:class:`WikilmError`) would fail a rerun alike, so its
        work is of no use; an interruption, a crash or a full disk leaves the work for the
        rerun to resume.
        """
        try:
            yield self
        except WikilmError:
            self.remove()
            raise

    def remove(self) -> None:
        """Delete the folder: the stage's output is in place."""
        shutil.rmtree(self.folder, ignore_errors=True)
