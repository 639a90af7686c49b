"""Benchmark: tokens/s of the pretraining step under Lightning versus a plain PyTorch loop.

Same model, same batches (made on the device before timing), same optimizer and precision,
in the same run. Steps are timed between batch hooks with a device synchronisation, after
warm-up (compilation included), never across ``fit()``, whose set-up and tear-down are not
training. Prints tokens/s of each, their ratio, and MFU against the device's bf16 peak.

    python benchmarks/train_throughput.py                              # tiny preset, CPU
    python benchmarks/train_throughput.py --preset gpt2-small --batch 32 --compile   # a GPU
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from components.model.callbacks import peak_flops
from components.model.gpt import GPT, GPTConfig, padded_vocab
from components.model.lm_module import (
    LanguageModel,
    OptimConfig,
    build_optimizer,
    next_token_loss,
    prefer_cudnn_attention,
)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@dataclass
class Run:
    """Settings shared by both loops."""

    config: GPTConfig
    batch: int
    steps: int
    warmup: int
    device: torch.device
    precision: str
    compile: bool

    @property
    def tokens_per_step(self) -> int:
        """Tokens processed by one optimizer step."""
        return self.batch * self.config.block_size


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that host clocks measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(run: Run, count: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random token windows, already on the device (data loading is not measured here)."""
    generator = torch.Generator().manual_seed(0)
    shape = (run.batch, run.config.block_size + 1)
    windows = [
        torch.randint(0, run.config.vocab_size, shape, generator=generator) for _ in range(count)
    ]
    return [(w[:, :-1].to(run.device), w[:, 1:].to(run.device)) for w in windows]


def autocast(run: Run) -> torch.autocast:
    """bf16 autocast when the precision asks for it (as Lightning's bf16-mixed does)."""
    enabled = run.precision == "bf16-mixed"
    return torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=enabled)


def plain_loop(run: Run, batches: list, optim: OptimConfig) -> float:
    """Tokens/s of a hand-written training loop."""
    torch.manual_seed(0)
    model = GPT(run.config).to(run.device)
    step_loss = torch.compile(next_token_loss) if run.compile else next_token_loss
    optimizer = build_optimizer(model, optim, run.device)
    started = 0.0
    for step in range(run.steps):
        if step == run.warmup:
            sync(run.device)
            started = time.perf_counter()
        inputs, targets = batches[step % len(batches)]
        with autocast(run):
            loss = step_loss(model, inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(run.device)
    return run.tokens_per_step * (run.steps - run.warmup) / (time.perf_counter() - started)


class StepTimer(pl.Callback):
    """Times the steps after warm-up, between batch hooks, with a device sync."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.started = self.ended = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: D102
        if batch_idx == self.run.warmup:
            sync(self.run.device)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if batch_idx == self.run.steps - 1:
            sync(self.run.device)
            self.ended = time.perf_counter()


def lightning_loop(run: Run, batches: list, optim: OptimConfig) -> float:
    """Tokens/s of the same step under a Lightning Trainer."""
    torch.manual_seed(0)
    module = LanguageModel(run.config, optim, compile_model=run.compile)
    timer = StepTimer(run)
    # batch_size=None: the dataset's items already are batches (on the device).
    steps = [batches[i % len(batches)] for i in range(run.steps)]
    loader = torch.utils.data.DataLoader(steps, batch_size=None)
    trainer = pl.Trainer(
        accelerator="gpu" if run.device.type == "cuda" else "cpu",
        devices=1,
        precision=run.precision,
        max_steps=run.steps,
        gradient_clip_val=1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return run.tokens_per_step * (run.steps - run.warmup) / (timer.ended - timer.started)


def main() -> None:
    """Parse arguments, run both loops, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument(
        "--vocab",
        type=int,
        default=None,
        help="vocabulary size (default: 8192, or 50304 for gpt2-small)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--sdpa",
        choices=["default", "cudnn"],
        default="default",
        help="attention backend priority (cudnn: cuDNN first)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    shape = yaml.safe_load(PARAMS.read_text())["model"]["presets"][args.preset]
    vocab = args.vocab or (50304 if args.preset == "gpt2-small" else 8192)
    config = GPTConfig(vocab_size=padded_vocab(vocab), **shape)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    run = Run(config, args.batch, args.steps, args.warmup, device, precision, args.compile)
    optim = OptimConfig(warmup_steps=10, max_steps=args.steps)
    batches = make_batches(run)

    with prefer_cudnn_attention() if args.sdpa == "cudnn" else nullcontext():
        plain = plain_loop(run, batches, optim)
        lightning = lightning_loop(run, batches, optim)
    flops = GPT(config).flops_per_token() if device.type != "meta" else 0
    peak = peak_flops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; lightning {pl.__version__}")
    print(
        f"model: {args.preset} ({GPT(config).num_parameters() / 1e6:.1f}M non-embedding "
        f"parameters), batch {run.batch}x{config.block_size}, {precision}, "
        f"compile={run.compile}, sdpa={args.sdpa}, {run.steps - run.warmup} timed steps\n"
    )
    print("| loop | tokens/s | MFU |")
    print("|---|---|---|")
    for label, rate in (("plain PyTorch", plain), ("Lightning", lightning)):
        mfu = f"{rate * flops / peak:.1%}" if peak else "n/a"
        print(f"| {label} | {rate:,.0f} | {mfu} |")
    print(f"\nLightning / plain: {lightning / plain:.3f}")


if __name__ == "__main__":
    main()
