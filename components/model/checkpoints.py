"""Where a training stage keeps what it needs to continue after being killed.

``checkpoints/<stage>/`` holds Lightning's ``last.ckpt`` (model, optimizer, scheduler, loop
counters, callback states) and ``state.json``: the fingerprint of the inputs and settings
the checkpoint belongs to, and the MLflow run to continue. A checkpoint whose fingerprint
does not match the current run (changed params or data) is discarded, never resumed.
The folder lies outside every DVC output: DVC deletes outputs before rerunning a stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.core.artifacts import write_json

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.ckpt"
STATE_FILE = "state.json"


def fingerprint(*parts: Any) -> str:
    """Digest of JSON-serialisable parts (params, input digests) that a checkpoint depends on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class ResumePoint:
    """The resumable state of one stage, valid only for ``key``."""

    folder: Path
    key: str

    @property
    def checkpoint(self) -> Path:
        """The Lightning checkpoint file (it may not exist yet)."""
        return self.folder / CHECKPOINT_FILE

    def _state(self) -> dict | None:
        path = self.folder / STATE_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return state if state.get("fingerprint") == self.key else None

    def run_id(self) -> str | None:
        """The MLflow run of the interrupted execution this one may continue."""
        state = self._state()
        return state.get("mlflow_run_id") if state else None

    def resumable(self) -> Path | None:
        """The checkpoint to continue from, if one exists for the same fingerprint."""
        if self._state() is not None and self.checkpoint.is_file():
            return self.checkpoint
        return None

    def begin(self, run_id: str | None, allow_resume: bool = True) -> Path | None:
        """Start or continue: returns the checkpoint to resume, after discarding stale state."""
        resume = self.resumable() if allow_resume else None
        if resume is None and self.folder.exists():
            log.info("discarding checkpoints of other params or data in %s", self.folder)
            shutil.rmtree(self.folder)
        write_json(self.folder / STATE_FILE, {"fingerprint": self.key, "mlflow_run_id": run_id})
        return resume

    def finish(self) -> None:
        """Remove the resumable state once the stage's outputs are in place."""
        shutil.rmtree(self.folder, ignore_errors=True)
