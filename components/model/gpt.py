"""A GPT-2 style decoder and a sequence classifier built on it, in plain PyTorch.

No training framework here: Lightning modules wrap these, and export uses them bare. The
forward passes have no data-dependent Python control flow, so they trace and export to ONNX.
Architecture and initialisation follow GPT-2 (Radford et al. 2019) as written in nanoGPT:
pre-LayerNorm blocks, learned positions, tied input/output embeddings, residual projections
scaled by 1/sqrt(2 * n_layer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the decoder."""

    vocab_size: int = 8192
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.0
    bias: bool = False

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")

    def to_dict(self) -> dict:
        """JSON-ready form (``config.json``)."""
        return asdict(self)


def padded_vocab(vocab_size: int, multiple: int = 64) -> int:
    """Round the vocabulary up so the output matrix tiles evenly on tensor cores."""
    return math.ceil(vocab_size / multiple) * multiple


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over earlier positions only (SDPA, causal)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        batch, steps, channels = x.shape
        q, k, v = self.qkv(x).split(channels, dim=2)
        shape = (batch, steps, self.n_head, channels // self.n_head)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(batch, steps, channels)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network, 4x wide, GELU."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only language model: token ids (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("proj.weight"):  # GPT-2: scale residual projections by depth
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def set_dropout(self, p: float) -> None:
        """Dropout ``p`` on embeddings, attention and residual branches from now on.

        Fine-tuning regularises a decoder pretrained without dropout (GPT-1 used 0.1).
        """
        for module in self.modules():
            if isinstance(module, nn.Dropout):
                module.p = p
            elif isinstance(module, CausalSelfAttention):
                module.dropout = p

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states: (B, T) -> (B, T, C)."""
        positions = torch.arange(idx.shape[1], device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, V) logits."""
        return self.lm_head(self.hidden_states(idx))

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded by default, as in GPT-2 papers."""
        count = sum(p.numel() for p in self.parameters())
        return count - self.wpe.weight.numel() if non_embedding else count

    def flops_per_token(self, steps: int | None = None) -> float:
        """Training FLOPs per token: 6N + 12 L H Q T (PaLM appendix B, as in nanoGPT)."""
        cfg = self.config
        steps = steps or cfg.block_size
        head_dim = cfg.n_embd // cfg.n_head
        return 6 * self.num_parameters() + 12 * cfg.n_layer * cfg.n_head * head_dim * steps


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


POOLINGS = ("last", "mean")


class GPTClassifier(nn.Module):
    """Sequence classifier: the decoder's states pooled over each text -> class logits.

    ``pooling``: ``last``, the state at the last real token (the only one that has read the
    whole text, in a causal decoder), or ``mean``, the average over the real tokens.
    """

    def __init__(
        self, backbone: GPT, num_classes: int, dropout: float = 0.0, pooling: str = "last"
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.n_embd, num_classes)
        _init_weights(self.head)

    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids and (B, T) mask of real tokens (1) and right padding (0) -> (B, K).

        Padding comes after the real tokens, so a causal decoder's states of real tokens
        never see it; pooling reads only those.
        """
        return self.classify(self.backbone.hidden_states(idx), attention_mask)

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C) decoder states and (B, T) mask -> (B, K) logits."""
        mask = attention_mask.to(hidden.dtype)  # (B, T)
        if self.pooling == "mean":
            total = (hidden * mask.unsqueeze(-1)).sum(dim=1)  # (B, C)
            pooled = total / mask.sum(dim=1, keepdim=True).clamp(min=1)
        else:
            last = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # (B,)
            index = last.view(-1, 1, 1).expand(-1, 1, hidden.shape[-1])  # (B, 1, C)
            pooled = hidden.gather(1, index).squeeze(1)  # (B, C)
        return self.head(self.dropout(pooled))
