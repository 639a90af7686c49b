"""Stage ``finetune``: a classification head on the pretrained decoder, trained with Lightning.

Loads the labelled dataset (``finetune.dataset``), splits it by class with a seed into
train/val/test, encodes it with the pretraining tokenizer, and trains the classifier with
early stopping on val loss, keeping the best epoch's weights. Optionally the embeddings and
lower blocks stay frozen.

Writes ``models/finetune/`` (weights, config with the label map, tokenizer, the three splits
as Parquet for ``evaluate`` and the registry gate, meta.json) and ``plots/finetune/``.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader

from components.core.artifacts import (
    TOKENIZER_FILE,
    atomic_dir,
    build_meta,
    dir_digest,
    read_meta,
    write_json,
)
from components.core.distributed import is_global_zero
from components.core.paths import Paths
from components.core.schema import Report
from components.data.labelled import LabelledData, load_labelled, stratified_split
from components.data.tokenizer_file import load_tokenizer
from components.model.callbacks import LossCurve
from components.model.classifier_module import (
    ClassifierModule,
    Schedule,
    balanced_weights,
    encode_texts,
    freeze_lower_layers,
    make_loader,
)
from components.model.gpt import GPT, GPTClassifier, GPTConfig
from components.model.model_io import RANDOM_INIT, load_gpt, pad_id, read_config, save_weights
from components.model.params import FinetuneParams, ModelSections, TrainerParams
from components.model.training import check_trainer, make_trainer

log = logging.getLogger(__name__)

STAGE = "finetune"
SPLITS = ("train", "val", "test")


class TrainingRun(Report):
    """How one training of the classifier went (its best epoch is the one kept)."""

    epochs: int
    best_epoch: int
    stopped_early: bool
    best_val_loss: float
    best_val_accuracy: float


class FinetuneResult(Report):
    """What ``finetune`` did: written to ``metrics/finetune.json``.

    The top-level training facts are the pretrained classifier's; ``random_init`` holds the
    same classifier's trained from random weights (``finetune.compare_random_init``).
    """

    classes: int
    examples_train: int
    examples_val: int
    examples_test: int
    dropped_rows: int
    epochs: int
    best_epoch: int
    stopped_early: bool
    best_val_loss: float
    best_val_accuracy: float
    trainable_parameters: int
    random_init: TrainingRun | None
    seconds: float


def preflight(params: ModelSections) -> None:
    """Refuse trainer settings this machine or launcher cannot run, before any work."""
    check_trainer(replicated(params.trainer))


def replicated(cfg: TrainerParams) -> TrainerParams:
    """The trainer settings fine-tuning runs under: ``fsdp`` becomes ``ddp``, the rest stay.

    The classifier is loaded whole from one file, trained, and its best epoch loaded back
    whole; under FSDP each device would hold only shards of it by then. One copy per device
    (DDP) keeps those steps plain; FSDP stays what pretraining a large decoder needs.
    """
    return cfg.model_copy(update={"strategy": "ddp"}) if cfg.strategy == "fsdp" else cfg


def split_frames(data: LabelledData, cfg: FinetuneParams) -> dict[str, pd.DataFrame]:
    """The stratified, seeded train/val/test parts as frames of text and label index."""
    parts = stratified_split(data.labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    return {
        name: pd.DataFrame(
            {"text": [data.texts[i] for i in rows], "label": [data.labels[i] for i in rows]}
        )
        for name, rows in zip(SPLITS, parts, strict=True)
    }


def build_classifier(backbone: GPT, cfg: FinetuneParams, classes: int) -> GPTClassifier:
    """``backbone`` with a fresh head, dropout throughout, lower layers frozen as configured."""
    backbone.set_dropout(cfg.dropout)
    model = GPTClassifier(backbone, classes, dropout=cfg.dropout, pooling=cfg.pooling)
    freeze_lower_layers(model, cfg.freeze_layers)
    return model.train()


@dataclass(frozen=True)
class Loaders:
    """What every training of the classifier reads: batches and the loss's class weights."""

    train: DataLoader
    val: DataLoader
    class_weights: torch.Tensor | None


def make_loaders(
    encoded: dict[str, list[list[int]]],
    frames: dict[str, pd.DataFrame],
    cfg: FinetuneParams,
    pad: int,
    classes: int,
) -> Loaders:
    """Seeded training batches, validation batches, and balanced weights if asked for."""
    labels = {name: frames[name]["label"].tolist() for name in ("train", "val")}
    weights = None
    if cfg.class_weights == "balanced":
        weights = balanced_weights(labels["train"], classes)
    return Loaders(
        train=make_loader(encoded["train"], labels["train"], pad, cfg.batch_size, cfg.seed),
        val=make_loader(encoded["val"], labels["val"], pad, cfg.batch_size),
        class_weights=weights,
    )


def schedule(cfg: FinetuneParams, steps_per_epoch: int) -> Schedule:
    """The learning-rate schedule over at most ``max_epochs`` epochs."""
    total = cfg.max_epochs * steps_per_epoch
    return Schedule(
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        layer_decay=cfg.layer_lr_decay,
        warmup_steps=round(cfg.warmup_fraction * total),
        total_steps=total,
    )


def _callbacks(folder: Path, cfg: FinetuneParams, steps_per_epoch: int) -> dict:
    return {
        "best": ModelCheckpoint(
            dirpath=folder,
            filename="best",
            monitor="val/loss",
            mode="min",
            save_top_k=1,
            enable_version_counter=False,
        ),
        "early": EarlyStopping(monitor="val/loss", mode="min", patience=cfg.patience),
        "curve": LossCurve(every=steps_per_epoch),
    }


def train(
    model: GPTClassifier, loaders: Loaders, params: ModelSections, folder: Path
) -> tuple[TrainingRun, LossCurve]:
    """Train with early stopping on val loss; ``model`` ends with its best epoch's weights."""
    cfg = params.finetune
    if is_global_zero():  # a fresh run: epochs are short, resume is moot
        shutil.rmtree(folder, ignore_errors=True)
    # Every training shuffles afresh from the seed: the random-init twin sees the batches the
    # pretrained classifier saw, however many epochs that training took from the generator.
    loaders.train.generator.manual_seed(cfg.seed)
    module = ClassifierModule(
        model, schedule(cfg, len(loaders.train)), loaders.class_weights, cfg.lm_loss_weight
    )
    callbacks = _callbacks(folder, cfg, len(loaders.train))
    trainer = make_trainer(
        replicated(params.trainer),
        list(callbacks.values()),
        root=folder,
        max_epochs=cfg.max_epochs,
        log_every_n_steps=max(1, min(50, len(loaders.train))),
    )
    trainer.fit(module, loaders.train, loaders.val)
    best = _restore_best(module, callbacks["best"])
    # Every process of a distributed run reads the best epoch before the first one removes
    # the folder: a process that removed it early made another's read fail.
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        shutil.rmtree(folder, ignore_errors=True)
    rows = [r for r in callbacks["curve"].rows["val"] if r["step"] > 0]
    accuracy = min(rows, key=lambda r: r["loss"])["accuracy"] if rows else 0.0
    facts = TrainingRun(
        epochs=trainer.current_epoch,
        best_epoch=best["epoch"],
        stopped_early=callbacks["early"].stopped_epoch > 0,
        best_val_loss=round(best["val_loss"], 6),
        best_val_accuracy=round(accuracy, 6),
    )
    return facts, callbacks["curve"]


def run(params: ModelSections, paths: Paths) -> FinetuneResult:
    """Fine-tune the classifier on ``finetune.dataset`` into ``paths.finetune``.

    With ``finetune.compare_random_init`` the same classifier is also trained from random
    weights, with the same data, schedule and seed: what pretraining itself is worth.

    Raises:
        ArtifactError: the pretrained model is missing or from another stage.
        SourceError: the dataset is unreadable, lacks a column, or has a single class.
    """
    started = time.perf_counter()
    cfg = params.finetune
    read_meta(paths.pretrain, "pretrain")
    config = read_config(paths.pretrain)
    data = load_labelled(
        cfg.dataset, paths.root, cfg.text_column, cfg.label_column, cfg.dataset_split
    )
    frames = split_frames(data, cfg)
    tokenizer = load_tokenizer(paths.pretrain / TOKENIZER_FILE)
    max_length = cfg.max_length or config["model"]["block_size"]
    encoded = {k: encode_texts(tokenizer, f["text"], max_length) for k, f in frames.items()}
    classes = len(data.label_names)
    loaders = make_loaders(encoded, frames, cfg, pad_id(config), classes)
    pl.seed_everything(cfg.seed, verbose=False)
    model = build_classifier(load_gpt(paths.pretrain), cfg, classes)
    if params.trainer.strategy == "fsdp":
        log.info("finetune: trainer.strategy fsdp: fine-tuning keeps a whole copy per device (ddp)")
    log.info(
        "finetune: %d classes, %d/%d/%d train/val/test examples, %s trainable parameters",
        classes,
        *(len(frames[s]) for s in SPLITS),
        f"{_trainable(model):,}",
    )
    folder = paths.checkpoint_dir(STAGE)
    pretrained, curve = train(model, loaders, params, folder)
    baseline, random_init = None, None
    if cfg.compare_random_init:
        pl.seed_everything(cfg.seed, verbose=False)
        baseline = build_classifier(GPT(GPTConfig(**config["model"])), cfg, classes)
        random_init, _ = train(baseline, loaders, params, folder)
        log.info("finetune: from random weights, best val loss %.4f", random_init.best_val_loss)
    result = FinetuneResult(
        classes=classes,
        examples_train=len(frames["train"]),
        examples_val=len(frames["val"]),
        examples_test=len(frames["test"]),
        dropped_rows=sum(data.dropped.values()),
        **pretrained.model_dump(),
        trainable_parameters=_trainable(model),
        random_init=random_init,
        seconds=round(time.perf_counter() - started, 3),
    )
    if is_global_zero():
        models = {"": model} | ({RANDOM_INIT: baseline} if baseline is not None else {})
        _write_outputs(params, paths, config, models, data, frames, max_length, result)
        curve.write(paths.plots_dir(STAGE))
    log.info(
        "finetune: best val loss %.4f, accuracy %.3f at epoch %d of %d",
        result.best_val_loss,
        result.best_val_accuracy,
        result.best_epoch,
        result.epochs,
    )
    return result


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _restore_best(module: ClassifierModule, best: ModelCheckpoint) -> dict:
    """Load the best epoch's weights back into ``module``; returns its checkpoint's facts."""
    checkpoint = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    return {"epoch": checkpoint["epoch"] + 1, "val_loss": float(best.best_model_score)}


def _write_outputs(
    params: ModelSections,
    paths: Paths,
    pretrain_config: dict,
    models: dict[str, GPTClassifier],
    data: LabelledData,
    frames: dict[str, pd.DataFrame],
    max_length: int,
    result: FinetuneResult,
) -> None:
    """The classifier (and the random-init one in its sub-folder), splits and meta.json."""
    config = {
        **pretrain_config,
        "labels": data.label_names,
        "max_length": max_length,
        "pooling": params.finetune.pooling,
    }
    with atomic_dir(paths.finetune) as out:
        for folder, model in models.items():
            (out / folder).mkdir(exist_ok=True)
            save_weights(model, config, out / folder)
        shutil.copy2(paths.pretrain / TOKENIZER_FILE, out / TOKENIZER_FILE)
        write_json(out / "labels.json", {name: i for i, name in enumerate(data.label_names)})
        (out / "splits").mkdir()
        for name, frame in frames.items():
            frame.to_parquet(out / "splits" / f"{name}.parquet", index=False)
        write_json(
            out / "meta.json",
            build_meta(
                STAGE,
                {
                    "finetune": params.finetune.model_dump(mode="json"),
                    "trainer": params.trainer.model_dump(mode="json"),
                },
                {"pretrain": dir_digest(paths.pretrain)},
                dataset=params.finetune.dataset,
                class_counts=data.class_counts(),
                dropped=data.dropped,
                result=result.model_dump(mode="json"),
            ),
        )
