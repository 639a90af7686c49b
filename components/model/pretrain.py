"""Stage ``pretrain``: train the decoder on the token files with PyTorch Lightning.

Random windows of ``train.bin`` (per-rank streams keyed by step), AdamW with a cosine
schedule, validation loss, perplexity and bits per byte on fixed ``val.bin`` windows,
tokens/s and MFU. Killed at any moment and run again, it continues from its last
checkpoint in ``checkpoints/pretrain`` (model, optimizer, scheduler, step, random state)
and in the same MLflow run, and ends where an uninterrupted run ends.

Writes ``models/pretrain/`` (weights, config, tokenizer, meta.json) and the loss curves
``plots/pretrain/{train,val}.csv``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from components.core.artifacts import (
    TOKENIZER_FILE,
    atomic_dir,
    build_meta,
    file_digest,
    read_meta,
    write_json,
)
from components.core.distributed import is_global_zero
from components.core.paths import Paths
from components.core.schema import Report
from components.core.tracking import active_tracker
from components.model.callbacks import LossCurve, RngState, StepCheckpoint, Throughput
from components.model.checkpoints import ResumePoint, fingerprint
from components.model.gpt import GPT, GPTConfig, padded_vocab
from components.model.lm_module import LanguageModel, language_metrics
from components.model.model_io import save_weights
from components.model.params import ModelSections, PretrainParams
from components.model.token_data import TokenDataModule, WindowSpec, evaluation_batches
from components.model.training import check_trainer, make_trainer

log = logging.getLogger(__name__)

STAGE = "pretrain"


class PretrainResult(Report):
    """What ``pretrain`` did: written to ``metrics/pretrain.json``."""

    steps: int
    tokens_seen: int
    parameters: int
    val_loss: float
    val_perplexity: float
    val_bits_per_byte: float
    tokens_per_s: float | None
    mfu: float | None
    precision: str
    world_size: int
    threads: int  # torch's intra-op CPU threads: the last bits of CPU training depend on them
    resumed_from_step: int
    first_batch_windows: int  # windows in the first batch, over all ranks
    first_batch_distinct: int  # how many of them differ (all, when ranks read apart)
    seconds: float


class FirstBatchProbe(pl.Callback):
    """Gathers every rank's first batch and counts distinct windows (on the first rank)."""

    def __init__(self, prefix: int = 16) -> None:
        self.prefix = prefix
        self.windows = self.distinct = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: tuple, batch_idx: int
    ) -> None:
        """Compare the first batch this process trains on with the other ranks'."""
        if self.windows:
            return
        with warnings.catch_warnings():  # Lightning's gather uses a deprecated torch call
            warnings.simplefilter("ignore", UserWarning)
            gathered = module.all_gather(batch[0][:, : self.prefix]).reshape(-1, self.prefix)
        self.windows = gathered.shape[0]
        self.distinct = torch.unique(gathered, dim=0).shape[0]


def gpt_config(params: ModelSections, vocab_size: int) -> GPTConfig:
    """The decoder's shape: the model preset with its overrides, over the padded vocabulary."""
    shape = params.model.shape()
    return GPTConfig(
        vocab_size=padded_vocab(vocab_size, params.model.pad_vocab_to), **shape.model_dump()
    )


def resume_point(params: ModelSections, paths: Paths) -> ResumePoint:
    """Checkpoints are valid for the same params (bar logging knobs) and the same tokens."""
    settings = params.pretrain.model_dump(exclude={"resume", "log_every", "loader_workers"})
    key = fingerprint(
        settings,
        params.model.model_dump(),
        params.trainer.model_dump(),
        file_digest(paths.tokens / "meta.json") if (paths.tokens / "meta.json").is_file() else None,
    )
    return ResumePoint(paths.checkpoint_dir(STAGE), key)


def preflight(params: ModelSections) -> None:
    """Refuse trainer settings this machine or launcher cannot run, before any work."""
    check_trainer(params.trainer)


def resume_run_id(params: ModelSections, paths: Paths) -> str | None:
    """The MLflow run of an interrupted execution with the same fingerprint, if any."""
    return resume_point(params, paths).run_id() if params.pretrain.resume else None


def bytes_per_token(meta: dict, split: str) -> float:
    """UTF-8 bytes per token of a split, from the tokenize stage's counts."""
    counts = meta["splits"][split]
    return counts["bytes"] / max(counts["tokens"], 1)


@torch.no_grad()
def final_validation(model: GPT, tokens: Path, spec: WindowSpec, batches: int, device) -> float:
    """Mean next-token loss over the fixed validation windows, in fp32."""
    model = model.to(device).eval()
    losses = [
        torch.nn.functional.cross_entropy(
            model(x.to(device)).flatten(0, 1).float(), y.to(device).flatten()
        ).item()
        for x, y in evaluation_batches(
            tokens / "val.bin", spec.block_size, spec.batch_size, batches
        )
    ]
    return sum(losses) / len(losses)


def _callbacks(cfg: PretrainParams, point: ResumePoint, model: GPT) -> dict[str, pl.Callback]:
    tokens_per_device_step = cfg.batch_size * model.config.block_size * cfg.grad_accum
    return {
        "curve": LossCurve(cfg.log_every),
        "throughput": Throughput(tokens_per_device_step, model.flops_per_token(), cfg.log_every),
        "probe": FirstBatchProbe(),
        "rng": RngState(),
        "checkpoint": StepCheckpoint(point.checkpoint, cfg.checkpoint_every, cfg.val_every),
    }


def _trainer(params: ModelSections, callbacks: dict[str, pl.Callback], root: Path) -> pl.Trainer:
    cfg = params.pretrain
    return make_trainer(
        params.trainer,
        list(callbacks.values()),
        root=root,
        max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.grad_accum,
        gradient_clip_val=cfg.grad_clip or None,
        val_check_interval=cfg.val_every * cfg.grad_accum,  # counted in micro-batches
        check_val_every_n_epoch=None,  # the training stream is endless: validate by steps
        log_every_n_steps=cfg.log_every,
        use_distributed_sampler=False,  # ranks draw their own windows; val is the same on all
    )


def run(params: ModelSections, paths: Paths) -> PretrainResult:
    """Pretrain on ``paths.tokens`` into ``paths.pretrain`` (resuming when possible).

    Raises:
        ArtifactError: the token files are missing, from another stage, or too short.
    """
    started = time.perf_counter()
    meta = read_meta(paths.tokens, "tokenize")
    cfg = params.pretrain
    pl.seed_everything(params.trainer.seed, verbose=False)
    point = resume_point(params, paths)
    # The first process decides (and discards stale state); the others follow its decision.
    # Under torchrun or srun every rank starts at once, so they read the same rule rather
    # than the first one's result; across nodes the checkpoint folder must be shared.
    if is_global_zero():
        checkpoint = point.begin(active_tracker().run_id, allow_resume=cfg.resume)
    else:
        checkpoint = point.resumable() if cfg.resume else None
    config = gpt_config(params, meta["vocab_size"])
    module = LanguageModel(config, cfg, params.trainer.compile, bytes_per_token(meta, "val"))
    spec = WindowSpec(config.block_size, cfg.batch_size, params.trainer.seed)
    data = TokenDataModule(paths.tokens, spec, cfg.val_batches, cfg.grad_accum, cfg.loader_workers)
    callbacks = _callbacks(cfg, point, module.model)
    trainer = _trainer(params, callbacks, point.folder)
    log.info(
        "pretrain: %s parameters, %d steps of %d x %d tokens x %d accumulated x %d device(s)%s",
        f"{module.model.num_parameters():,}",
        cfg.max_steps,
        cfg.batch_size,
        config.block_size,
        cfg.grad_accum,
        trainer.world_size,
        f", resuming from {checkpoint}" if checkpoint else "",
    )
    trainer.fit(module, datamodule=data, ckpt_path=checkpoint)
    model = trained_model(trainer, config)
    # The first process scores and writes the model; the others' results are not recorded.
    val_loss = math.nan
    if model is not None:
        val_loss = final_validation(
            model, paths.tokens, spec, cfg.val_batches, trainer.strategy.root_device
        )
    result = _result(params, trainer, callbacks, val_loss, bytes_per_token(meta, "val"), started)
    if model is not None:
        _write_outputs(params, paths, meta, model, result)
        callbacks["curve"].write(paths.plots_dir(STAGE))
        point.finish()
    log.info(
        "pretrain: val loss %.4f, %.3f bits per byte, %s tokens/s",
        result.val_loss,
        result.val_bits_per_byte,
        f"{result.tokens_per_s:,.0f}" if result.tokens_per_s else "n/a",
    )
    return result


def trained_model(trainer: pl.Trainer, config: GPTConfig) -> GPT | None:
    """The trained decoder, whole, in the global-zero process; None in the others.

    Every rank must call it. Under FSDP each rank holds only shards of the weights after
    ``fit``, and the strategy gathers the full state on the first rank (a collective); under
    DDP and on one device this is the module's own state.
    """
    state = trainer.strategy.lightning_module_state_dict()
    if not trainer.is_global_zero:
        return None
    model = GPT(config)
    prefix = "model."
    model.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    )
    return model


def _result(
    params: ModelSections,
    trainer: pl.Trainer,
    callbacks: dict,
    val_loss: float,
    val_bytes_per_token: float,
    started: float,
) -> PretrainResult:
    throughput, probe = callbacks["throughput"], callbacks["probe"]
    metrics = language_metrics(val_loss, val_bytes_per_token)
    rate = throughput.rate()
    mfu = throughput.mfu(rate, trainer.strategy.root_device, trainer)
    return PretrainResult(
        steps=trainer.global_step,
        tokens_seen=trainer.global_step * throughput.tokens_per_step,
        parameters=trainer.lightning_module.model.num_parameters(),
        val_loss=round(metrics["loss"], 6),
        val_perplexity=round(metrics["perplexity"], 4),
        val_bits_per_byte=round(metrics["bits_per_byte"], 6),
        tokens_per_s=round(rate, 1) if rate else None,
        mfu=round(mfu, 4) if mfu is not None else None,
        precision=str(trainer.precision),  # what ran: Lightning may substitute one
        world_size=trainer.world_size,
        threads=torch.get_num_threads(),
        resumed_from_step=throughput.start_step,
        first_batch_windows=probe.windows,
        first_batch_distinct=probe.distinct,
        seconds=round(time.perf_counter() - started, 3),
    )


def _write_outputs(
    params: ModelSections, paths: Paths, meta: dict, model: GPT, result: PretrainResult
) -> None:
    tokenizer = paths.tokens / TOKENIZER_FILE
    with atomic_dir(paths.pretrain) as out:
        save_weights(
            model,
            {"model": model.config.to_dict(), "special_tokens": meta["special_tokens"]},
            out,
        )
        shutil.copy2(tokenizer, out / TOKENIZER_FILE)
        write_json(
            out / "meta.json",
            build_meta(
                STAGE,
                {
                    "pretrain": params.pretrain.model_dump(mode="json"),
                    "model": params.model.model_dump(mode="json"),
                    "trainer": params.trainer.model_dump(mode="json"),
                },
                {"tokens": file_digest(paths.tokens / "meta.json")},
                # Relative: the checkout's folder is not part of what was made.
                tokenizer={
                    "source": os.path.relpath(tokenizer, paths.root),
                    "sha256": file_digest(tokenizer),
                },
                val_bytes_per_token=bytes_per_token(meta, "val"),
                result=result.model_dump(mode="json"),
            ),
        )
