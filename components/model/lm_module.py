"""Lightning wrapper of :class:`components.model.gpt.GPT` for language-model pretraining.

Thin by design: the model stays framework-free; this module adds the loss, the optimizer
(AdamW, fused on CUDA, no weight decay on biases and norms), the cosine schedule with linear
warm-up, and optional ``torch.compile`` of the inner model only (so checkpoints keep plain
parameter names).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Protocol

import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch.distributed.fsdp import FullyShardedDataParallel

from components.model.gpt import GPT, GPTConfig


class OptimConfig(Protocol):
    """What the optimizer and the learning-rate schedule read (the ``pretrain`` section)."""

    @property
    def lr(self) -> float: ...  # noqa: D102

    @property
    def min_lr(self) -> float: ...  # noqa: D102

    @property
    def weight_decay(self) -> float: ...  # noqa: D102

    @property
    def beta1(self) -> float: ...  # noqa: D102

    @property
    def beta2(self) -> float: ...  # noqa: D102

    @property
    def warmup_steps(self) -> int: ...  # noqa: D102

    @property
    def max_steps(self) -> int: ...  # noqa: D102


# Recorded with a checkpoint's hyperparameters.
OPTIM_SETTINGS = ("lr", "min_lr", "weight_decay", "beta1", "beta2", "warmup_steps", "max_steps")


def prefer_cudnn_attention() -> AbstractContextManager:
    """Rank cuDNN's fused attention first among SDPA backends (fastest on Hopper).

    The others stay as fallbacks in order, for shapes or devices cuDNN does not cover.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
    return sdpa_kernel(order, set_priority=True)


def cosine_with_warmup(step: int, cfg: OptimConfig) -> float:
    """Learning-rate multiplier: linear warm-up, cosine decay to min_lr/lr, then flat."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; never biases or normalisation gains (1-D tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, fused into one kernel on CUDA."""
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        fused=device.type == "cuda",
    )


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: (B, T, V) logits against (B, T) targets."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))


def next_token_loss(model: GPT, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Forward pass and loss as one function.

    Compiled together, the fp32 upcast, log-softmax and NLL fuse instead of materialising
    (B, T, V) fp32 logits.
    """
    return lm_loss(model(inputs), targets)


def language_metrics(loss: float, bytes_per_token: float | None) -> dict[str, float]:
    """Loss (nats per token), perplexity and, given the text's bytes per token, bits per byte.

    Bits per byte compare models with different tokenizers (and against baselines): the
    cross-entropy in bits, spread over the UTF-8 bytes the tokens stand for.
    """
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 80.0))}
    if bytes_per_token:
        metrics["bits_per_byte"] = loss / math.log(2) / bytes_per_token
    return metrics


class LanguageModel(pl.LightningModule):
    """Next-token prediction over (input, target) windows of token ids."""

    def __init__(
        self,
        config: GPTConfig,
        optim: OptimConfig,
        compile_model: bool = False,
        bytes_per_token: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "model": config.to_dict(),
                "optim": {name: getattr(optim, name) for name in OPTIM_SETTINGS},
                "compile_model": compile_model,
                "bytes_per_token": bytes_per_token,
            }
        )
        self.optim = optim
        self.bytes_per_token = bytes_per_token
        self.model = GPT(config)
        # A compiled *function*, not a submodule: parameter names stay those of the bare model.
        self._loss = torch.compile(next_token_loss) if compile_model else next_token_loss
        self._val_losses: list[torch.Tensor] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, V) logits."""
        return self.model(idx)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """Loss of one batch; logged without forcing a device sync."""
        inputs, targets = batch
        loss = self._loss(self.model, inputs, targets)
        self.log("train/loss", loss.detach(), on_step=True, prog_bar=True)
        return loss

    def validation_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        """Loss of one validation batch, kept for the epoch's metrics."""
        inputs, targets = batch
        loss = self._loss(self.model, inputs, targets)
        self._val_losses.append(loss.detach())
        return loss

    def on_validation_epoch_end(self) -> None:
        """Log val loss, perplexity and bits per byte over all validation batches."""
        if not self._val_losses:
            return
        # Every rank scores the same fixed windows, so the mean needs no cross-rank reduction.
        loss = torch.stack(self._val_losses).mean().item()
        self._val_losses.clear()
        for name, value in language_metrics(loss, self.bytes_per_token).items():
            self.log(f"val/{name}", value, prog_bar=name == "loss", rank_zero_only=True)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by global norm directly, on unscaled gradients.

        Lightning's mixed-precision plugin refuses to clip for fused optimizers because they
        unscale fp16 gradients only inside their step; in bf16 and fp32 nothing is scaled.
        Under fp16 loss scaling the gradients are unscaled here first (the scaler's step then
        knows it), so the bound applies to the true gradients.
        """
        if not gradient_clip_val:
            return
        scaler = getattr(self._trainer.precision_plugin, "scaler", None) if self._trainer else None
        if scaler is not None and scaler.is_enabled():
            scaler.unscale_(optimizer)
        wrapped = self._trainer.model if self._trainer else None
        if isinstance(wrapped, FullyShardedDataParallel):
            # Each rank holds a shard of every gradient: FSDP reduces the norm over all of
            # them (torch.nn.utils.clip_grad_norm_ would clip each shard by its own norm).
            wrapped.clip_grad_norm_(gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def configure_optimizers(self) -> dict:
        """AdamW with a per-step cosine schedule."""
        optimizer = build_optimizer(self.model, self.optim, self.device)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_with_warmup(step, self.optim)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
