"""The Lightning Trainer of the training stages, configured from the ``trainer:`` section.

Shared by ``pretrain`` and ``finetune``: device and precision choice, distribution strategy,
logging into the stage's MLflow run, and quiet output when not on a terminal.

Distributed runs start one process per device. Lightning starts them itself on one node;
across nodes a launcher does: torchrun (Lightning then reads ``TorchElasticEnvironment``:
RANK, WORLD_SIZE, GROUP_RANK, MASTER_ADDR) or SLURM's srun (``SLURMEnvironment``:
SLURM_PROCID, SLURM_NTASKS, SLURM_NTASKS_PER_NODE, SLURM_NODELIST). The trainer's devices
and nodes must match what the launcher started; that is checked when the trainer is made,
before the stage does any work, rather than when ``fit`` starts the processes.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from components.core.errors import ConfigError
from components.core.tracking import active_tracker
from components.core.tracking_server import patiently
from components.model.params import TrainerParams

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

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log as Lightning does, waiting out a tracking server that does not answer."""
        patiently(
            lambda: super(StageLogger, self).log_metrics(metrics, step),
            self._tracking_uri,
            "metrics",
        )


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
        trainer = _trainer(cfg, callbacks, interactive, **options)
        check_launcher(trainer)
    # Lightning refuses settings this machine cannot run (accelerator: gpu without a GPU,
    # strategy: fsdp on CPUs, devices the launcher did not start) with either exception.
    except (MisconfigurationException, ValueError) as error:
        raise ConfigError([f"trainer: {error}"]) from None
    return trainer


def check_trainer(cfg: TrainerParams) -> None:
    """Refuse ``trainer:`` settings that this machine or its launcher cannot run.

    A stage calls it before any work (and before its MLflow run): the trainer is built and
    dropped, which takes milliseconds and starts no process.

    Raises:
        ConfigError: the settings name devices, nodes or a strategy that cannot run here.
    """
    make_trainer(cfg, [])


def launched_processes() -> tuple[str, int] | None:
    """The launcher that started this process and how many it started, if one did.

    Detected as Lightning detects its cluster environment (torchrun first: it may run
    inside a SLURM allocation).
    """
    if TorchElasticEnvironment.detect():
        return "torchrun", int(os.environ["WORLD_SIZE"])
    if SLURMEnvironment.detect():
        return "srun", int(os.environ["SLURM_NTASKS"])
    return None


def check_launcher(trainer: pl.Trainer) -> None:
    """The trainer's devices and nodes agree with the processes a launcher started.

    Raises:
        ConfigError: they do not; or ``num_nodes`` > 1 with no launcher and no node
            variables, where the first process would wait for the other nodes forever.
        ValueError: Lightning's own check of the cluster environment failed (SLURM's
            tasks per node or node count differ from devices and num_nodes).
    """
    devices, nodes = trainer.num_devices, trainer.num_nodes
    launcher = launched_processes()
    if launcher is not None and launcher[1] != devices * nodes:
        name, started = launcher
        raise ConfigError(
            [
                f"trainer.devices x trainer.num_nodes is {devices} x {nodes} = "
                f"{devices * nodes} processes, but {name} started {started}: set devices to "
                "the processes per node and num_nodes to the nodes"
            ]
        )
    if launcher is None and nodes > 1 and not {"MASTER_ADDR", "NODE_RANK"} <= set(os.environ):
        raise ConfigError(
            [
                f"trainer.num_nodes: {nodes} nodes need a launcher on every node (torchrun, "
                "srun; see infra/k8s and infra/slurm) or MASTER_ADDR, MASTER_PORT and "
                "NODE_RANK set on each; without one this process would wait for the other "
                "nodes forever"
            ]
        )
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is not None:
        environment.validate_settings(num_devices=devices, num_nodes=nodes)


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
