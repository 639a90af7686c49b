"""The Lightning Trainer of the training stages, configured from the ``trainer:`` section.

Shared by ``pretrain`` and ``finetune``: device and precision choice, distribution strategy,
logging into the stage's MLflow run, and quiet output when not on a terminal.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from components.core.errors import ConfigError
from components.core.model_params import TrainerParams
from components.core.tracking import active_tracker

# Lightning's advice that does not apply here: our iterable datasets are endless on purpose,
# and few loader workers are a deliberate choice on small machines.
_IGNORED_WARNINGS = (
    r".*does not have many workers.*",
    r".*Your `IterableDataset` has `__len__` defined.*",
    r".*You're resuming from a checkpoint that ended before the epoch ended.*",
    r".*`training_step` returned `None`.*",
    r".*Checkpoint directory .* exists and is not empty.*",  # it holds state.json by design
    r".*isinstance\(treespec, LeafSpec\).*",
)


def cuda_usable() -> bool:
    """True when a CUDA device can actually run kernels (not only a driver present)."""
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def resolve_precision(cfg: TrainerParams) -> str:
    """``auto`` becomes bf16-mixed on a CUDA device that supports bf16, else 32-true."""
    if cfg.precision != "auto":
        return cfg.precision
    on_gpu = cfg.accelerator in {"auto", "gpu", "cuda"} and cuda_usable()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


class StageLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to the stage's run, which the stage itself ends.

    The stage records its params (with the other sections it reads) before training, and
    ends the run with its own status once its outputs are written, so Lightning does
    neither.
    """

    def log_hyperparams(self, params: Any) -> None:
        """Params are recorded by the stage, under their params.yaml names."""

    def finalize(self, status: str = "success") -> None:
        """The stage sets the run's final status, after writing its outputs."""


def stage_logger() -> StageLogger | bool:
    """A logger into the active stage run, or False when tracking is off."""
    tracker = active_tracker()
    if tracker.run_id is None:
        return False
    return StageLogger(tracking_uri=tracker.uri, run_id=tracker.run_id)


def make_trainer(cfg: TrainerParams, callbacks: list[pl.Callback], **options: Any) -> pl.Trainer:
    """A Trainer for one stage; ``options`` are passed through (max_steps, ...)."""
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    interactive = sys.stderr.isatty()
    try:
        return _trainer(cfg, callbacks, interactive, **options)
    # Lightning refuses settings this machine cannot run (accelerator: gpu without a GPU,
    # strategy: fsdp on CPUs) with either exception.
    except (MisconfigurationException, ValueError) as error:
        raise ConfigError([f"trainer: {error}"]) from None


def _trainer(
    cfg: TrainerParams, callbacks: list[pl.Callback], interactive: bool, **options: Any
) -> pl.Trainer:
    return pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg),
        logger=stage_logger(),
        callbacks=callbacks,
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        num_sanity_val_steps=0,
        default_root_dir=options.pop("root", None),
        **options,
    )
