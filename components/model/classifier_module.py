"""Text classification on the pretrained decoder: encoding, batching, and the Lightning module.

Texts are tokenized once (truncated to ``max_length``) and padded per batch on the right;
the attention mask tells :class:`components.model.gpt.GPTClassifier` where each text ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from components.model.gpt import GPTClassifier
from components.model.lm_module import param_groups

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


class ClassifierModule(pl.LightningModule):
    """Cross-entropy fine-tuning of a :class:`GPTClassifier`; val loss and accuracy."""

    def __init__(self, model: GPTClassifier, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self._val: list[torch.Tensor] = []

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Loss of one batch."""
        tokens, mask, labels = batch
        loss = F.cross_entropy(self.model(tokens, mask), labels)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        return loss

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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters (no decay on biases and norms)."""
        return torch.optim.AdamW(
            param_groups(self.model, self.weight_decay),
            lr=self.lr,
            fused=self.device.type == "cuda",
        )
