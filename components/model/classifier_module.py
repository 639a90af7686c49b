"""Text classification on the pretrained decoder: encoding, batching, and the Lightning module.

Texts are tokenized once (truncated to ``max_length``) and padded per batch on the right;
the attention mask tells :class:`components.model.gpt.GPTClassifier` where each text ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from components.model.gpt import GPTClassifier

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # ids (B, T), mask (B, T), labels (B,)


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, cut to ``max_length`` (at least one token per text)."""
    encodings = tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
    return [encoding.ids[:max_length] or [0] for encoding in encodings]


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: (B, T) ids and (B, T) mask of real tokens."""
    length = max(len(seq) for seq in ids)
    padded = np.full((len(ids), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), length), dtype=np.int64)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(padded), torch.from_numpy(mask)


def make_loader(
    ids: list[list[int]],
    labels: list[int],
    pad_id: int,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> DataLoader:
    """Batches of (ids, mask, labels); shuffled by a seeded generator when a seed is given."""

    def collate(items: list[tuple[list[int], int]]) -> Batch:
        tokens, mask = pad_batch([seq for seq, _ in items], pad_id)
        return tokens, mask, torch.tensor([label for _, label in items])

    generator = None
    if shuffle_seed is not None:
        generator = torch.Generator().manual_seed(shuffle_seed)
    return DataLoader(
        list(zip(ids, labels, strict=True)),
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        collate_fn=collate,
    )


def freeze_lower_layers(model: GPTClassifier, layers: int) -> None:
    """Keep embeddings and the lowest ``layers`` blocks fixed (nothing when 0)."""
    if layers == 0:
        return
    backbone = model.backbone
    frozen = [backbone.wte, backbone.wpe, *backbone.blocks[:layers]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


@torch.no_grad()
def predict_proba(
    model: GPTClassifier, ids: list[list[int]], pad_id: int, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities, (N, K), in input order."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(ids), batch_size):
        tokens, mask = pad_batch(ids[start : start + batch_size], pad_id)
        logits = model(tokens.to(device), mask.to(device))
        out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class Schedule:
    """Fine-tuning's optimizer settings: layer-wise decayed learning rates, warm-up, decay.

    The head and the final norm learn at ``lr``; each block below at ``layer_decay`` times
    the rate of the one above it, the embeddings lowest (ULMFiT's discriminative rates;
    BEiT and ELECTRA's layer-wise decay). The rate warms up linearly over ``warmup_steps``,
    then falls linearly to zero at ``total_steps``.
    """

    lr: float
    weight_decay: float
    layer_decay: float = 1.0
    warmup_steps: int = 0
    total_steps: int = 1

    def multiplier(self, step: int) -> float:
        """Learning-rate factor at optimizer step ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        left = self.total_steps - step
        return max(0.0, left / max(1, self.total_steps - self.warmup_steps))


def layer_depths(model: GPTClassifier) -> dict[int, int]:
    """Depth of each parameter (by id), counted from the top.

    0: the head and the final norm; 1: the top block; ``n_layer + 1``: the embeddings.
    """
    backbone = model.backbone
    top = len(backbone.blocks)
    depths = {id(p): top + 1 for p in backbone.parameters()}  # embeddings (and any rest)
    for index, block in enumerate(backbone.blocks):
        depths |= {id(p): top - index for p in block.parameters()}
    for module in (backbone.ln_f, model.head):
        depths |= {id(p): 0 for p in module.parameters()}
    return depths


def layerwise_groups(model: GPTClassifier, schedule: Schedule) -> list[dict]:
    """Parameter groups per depth, decayed (matrices) or not (biases and norm gains)."""
    depths = layer_depths(model)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            key = (depths[id(parameter)], parameter.dim() >= 2)
            groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": params,
            "lr": schedule.lr * schedule.layer_decay**depth,
            "weight_decay": schedule.weight_decay if decayed else 0.0,
        }
        for (depth, decayed), params in sorted(groups.items(), key=lambda item: item[0])
    ]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy fine-tuning of a :class:`GPTClassifier`; val loss and accuracy.

    ``class_weights`` weigh the training loss per class (None: every example alike);
    validation loss is never weighted, so that it stays comparable between runs.
    """

    def __init__(
        self,
        model: GPTClassifier,
        schedule: Schedule,
        class_weights: torch.Tensor | None = None,
        lm_loss_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.lm_loss_weight = lm_loss_weight
        self.register_buffer("class_weights", class_weights, persistent=False)
        self._val: list[torch.Tensor] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Classification loss of one batch, plus the weighted next-token loss on its texts.

        The auxiliary language-modelling loss is GPT-1's (Radford et al. 2018, section 3.2):
        it keeps the decoder a language model of the task's own text while it learns the task.
        """
        tokens, mask, labels = batch
        hidden = self.model.backbone.hidden_states(tokens)  # (B, T, C)
        logits = self.model.classify(hidden, mask)
        loss = F.cross_entropy(logits, labels, weight=self.class_weights)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        if self.lm_loss_weight > 0 and tokens.shape[1] > 1:
            loss = loss + self.lm_loss_weight * self._next_token_loss(hidden, tokens, mask)
        return loss

    def _next_token_loss(
        self, hidden: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean next-token cross-entropy over the real tokens (padding is no target)."""
        predicted = self.model.backbone.lm_head(hidden[:, :-1])  # (B, T-1, V)
        targets = tokens[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T-1)
        lm_loss = F.cross_entropy(predicted.flatten(0, 1).float(), targets.flatten())
        self.log("train/lm_loss", lm_loss.detach(), on_step=True)
        return lm_loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Summed loss, correct predictions and count of one batch."""
        tokens, mask, labels = batch
        logits = self.model(tokens, mask)
        loss = F.cross_entropy(logits, labels, reduction="sum")
        correct = (logits.argmax(dim=-1) == labels).sum().float()
        self._val.append(torch.stack([loss, correct, torch.ones_like(loss) * len(labels)]))

    def on_validation_epoch_end(self) -> None:
        """Val loss and accuracy over the whole (possibly sharded) validation split."""
        totals = torch.stack(self._val).sum(dim=0)
        self._val.clear()
        totals = self.all_gather(totals).reshape(-1, 3).sum(dim=0)
        loss, correct, count = totals.tolist()
        self.log("val/loss", loss / count, prog_bar=True, sync_dist=False)
        self.log("val/accuracy", correct / count, prog_bar=True, sync_dist=False)

    def configure_optimizers(self) -> dict:
        """AdamW over :func:`layerwise_groups`, stepped by the schedule's multiplier."""
        optimizer = torch.optim.AdamW(
            layerwise_groups(self.model, self.schedule), fused=self.device.type == "cuda"
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule.multiplier)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def balanced_weights(labels: Sequence[int], classes: int) -> torch.Tensor:
    """Per-class loss weights ``n / (classes * count)``: each class weighs the same in total.

    As scikit-learn's ``class_weight="balanced"``; a class absent from ``labels`` gets 0.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    weights = np.where(counts > 0, len(labels) / (classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)
