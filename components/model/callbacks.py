"""Lightning callbacks of the training stages: throughput, loss curves, resumable RNG state.

Each keeps what a resumed run needs in the checkpoint (``state_dict``), so curves and random
streams continue across a kill and restart as if training had run straight through.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from components.core.artifacts import write_csv

# Dense bf16 tensor-core peaks from the vendors' datasheets, for MFU (nanoGPT's convention).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of a known CUDA device; None for CPUs and unknown GPUs."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Throughput(pl.Callback):
    """Tokens/s and MFU over every ``every`` optimizer steps, validation time excluded.

    Timed between batch hooks after a device sync (never across ``fit()``, whose set-up and
    tear-down are not training). The run's mean leaves out the first window, which pays for
    compilation and warm-up, whenever a later window exists.
    """

    def __init__(self, tokens_per_device_step: int, flops_per_token: float, every: int) -> None:
        self.tokens_per_device_step = tokens_per_device_step
        self.tokens_per_step = tokens_per_device_step  # all ranks together, set at fit start
        self.flops_per_token = flops_per_token
        self.every = every
        self._mark: tuple[int, float] | None = None  # (step, time) where the window opened
        self._paused = 0.0
        self._pause_started: float | None = None
        self._windows: list[tuple[int, float]] = []  # (steps, seconds) of each closed window
        self.start_step = 0

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Every rank processes its own batches: the job's step covers them all."""
        self.tokens_per_step = self.tokens_per_device_step * trainer.world_size

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Note the step training starts from (past zero when resumed)."""
        self.start_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *_: Any) -> None:
        """Close a window every ``every`` optimizer steps and log its rate."""
        step = trainer.global_step
        if self._mark is not None and (step == self._mark[0] or step % self.every):
            return
        _sync(module.device)
        now = time.perf_counter()
        if self._mark is not None:
            window = (step - self._mark[0], now - self._mark[1] - self._paused)
            self._windows.append(window)
            metrics = {"perf/tokens_per_s": self.rate([window])}
            if (mfu := self.mfu(metrics["perf/tokens_per_s"], module.device, trainer)) is not None:
                metrics["perf/mfu"] = mfu
            module.log_dict(metrics, rank_zero_only=True)
        self._mark, self._paused = (step, now), 0.0

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Stop the clock while validating."""
        _sync(module.device)
        self._pause_started = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Restart the clock."""
        if self._pause_started is not None:
            _sync(module.device)
            self._paused += time.perf_counter() - self._pause_started
            self._pause_started = None

    def rate(self, windows: list[tuple[int, float]] | None = None) -> float | None:
        """Tokens/s over ``windows`` (default: the run's, warm-up left out when possible)."""
        if windows is None:
            windows = self._windows[1:] or self._windows
        seconds = sum(t for _, t in windows)
        return self.tokens_per_step * sum(s for s, _ in windows) / seconds if seconds else None

    def mfu(self, rate: float | None, device: torch.device, trainer: pl.Trainer) -> float | None:
        """Model FLOPs utilisation: achieved training FLOP/s over the devices' bf16 peak."""
        peak = peak_flops(device)
        if not peak or rate is None:
            return None
        return self.flops_per_token * rate / (peak * trainer.world_size)


class LossCurve(pl.Callback):
    """Train loss every ``every`` steps and each validation's metrics, kept in checkpoints.

    Written as CSV files (``train.csv``, ``val.csv``) that DVC declares as plots.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: dict[str, list[dict[str, float]]] = {"train": [], "val": []}

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, *_: Any
    ) -> None:
        """Record the loss at logging steps (one device sync per ``every`` steps)."""
        step = trainer.global_step
        last = self.rows["train"][-1]["step"] if self.rows["train"] else 0
        if step % self.every == 0 and step != last and outputs is not None:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            # Lightning hands over the loss divided by the accumulation count: undo that.
            loss = float(loss) * trainer.accumulate_grad_batches
            self.rows["train"].append({"step": step, "loss": loss})

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """Record the validation metrics the module logged."""
        if trainer.sanity_checking:
            return
        values = {
            key.removeprefix("val/"): float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        if values:
            self.rows["val"].append({"step": trainer.global_step, **values})

    def state_dict(self) -> dict[str, Any]:
        """The rows so far (a resumed run continues the curve)."""
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the curve of the run that was interrupted."""
        self.rows = state_dict["rows"]

    def write(self, folder: Path) -> list[Path]:
        """Write ``<split>.csv`` for each split; returns the files.

        A split without rows (a run shorter than ``val_every``) still gets its file, header
        only: DVC declares both as outputs, and an earlier run's curve must not stay behind.
        """
        written = []
        for split, rows in self.rows.items():
            write_csv(folder / f"{split}.csv", rows, columns=None if rows else ["step", "loss"])
            written.append(folder / f"{split}.csv")
        return written


class RngState(pl.Callback):
    """Saves and restores torch's random generators with each checkpoint.

    Lightning restores weights, optimizer, schedulers and loop counters but not random
    generators; dropout after a resume then differs from a straight run without this.
    """

    def state_dict(self) -> dict[str, Any]:
        """CPU and CUDA generator states."""
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put the generators back where the checkpoint left them."""
        torch.set_rng_state(state_dict["cpu"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class StepCheckpoint(pl.Callback):
    """Saves the resumable checkpoint every ``every`` optimizer steps.

    Lightning validates after the batch hooks of a step, so a checkpoint taken at the end of
    a step that validates would resume past that validation, and the curve would lose its
    point. The save of such a step waits for its validation (or for the end of training).
    """

    def __init__(self, path: Path, every: int, validate_every: int) -> None:
        self.path = path
        self.every = every
        self.validate_every = validate_every
        self._saved_step = 0
        self._pending = False

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        """Save at due steps, unless the step's validation comes next."""
        step = trainer.global_step
        if step % self.every or step == self._saved_step:
            return
        if step % self.validate_every == 0:
            self._pending = True
        else:
            self._save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """The save that waited for this step's validation."""
        if self._pending and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """A save still waiting (a validation that never came) is done now."""
        if self._pending:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        # Written aside, then renamed: a kill while writing leaves the last checkpoint whole.
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial)  # every rank calls it; the strategy writes once
        if trainer.is_global_zero:
            partial.replace(self.path)
        self._saved_step = trainer.global_step
        self._pending = False
