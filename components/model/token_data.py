"""Random training windows over a memory-mapped token file, resumable and rank-aware.

Each batch's window offsets come from a random generator keyed by ``(seed, rank, step)``
(numpy's SeedSequence), not from a generator whose state advances. So batch ``step`` is the
same whether training ran straight through or was killed and resumed at ``step``: resuming
needs the step number only, and data-parallel ranks draw disjoint, reproducible streams.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from components.core.errors import ArtifactError
from components.data.tokenbin import open_tokens


@dataclass(frozen=True)
class WindowSpec:
    """Which windows to draw: their length, how many per batch, and the random stream."""

    block_size: int
    batch_size: int
    seed: int
    rank: int = 0


def window_offsets(spec: WindowSpec, step: int, n_tokens: int) -> np.ndarray:
    """Start offsets of batch ``step``'s windows (each needs block_size + 1 tokens)."""
    high = n_tokens - spec.block_size  # exclusive: the target of the last input is in range
    if high <= 0:
        raise ArtifactError(
            f"{n_tokens} tokens cannot fill a window of block_size {spec.block_size} + 1: "
            "lower model.block_size or add data"
        )
    rng = np.random.default_rng([spec.seed, spec.rank, step])
    return rng.integers(0, high, size=spec.batch_size)


def make_batch(
    tokens: np.ndarray, offsets: np.ndarray, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, (B, T) int64 each, for windows starting at ``offsets``."""
    index = offsets[:, None] + np.arange(block_size + 1)  # (B, T + 1)
    windows = torch.from_numpy(tokens[index].astype(np.int64))
    return windows[:, :-1], windows[:, 1:]


class TokenWindows(IterableDataset):
    """Endless batches of random windows, starting at batch ``start_step``.

    Yields whole batches (use ``DataLoader(dataset, batch_size=None)``). The token file is
    opened lazily in each worker, so the dataset pickles cheaply.
    """

    def __init__(self, path: Path, spec: WindowSpec, start_step: int = 0) -> None:
        super().__init__()
        self.path = path
        self.spec = spec
        self.start_step = start_step

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches ``start_step``, ``start_step + 1``, ...

        With several loader workers, worker ``i`` of ``n`` makes every n-th batch; the
        loader takes them round-robin, so the order is the same as with none.
        """
        worker = get_worker_info()
        first, stride = (worker.id, worker.num_workers) if worker else (0, 1)
        tokens = open_tokens(self.path).tokens
        for step in itertools.count(self.start_step + first, stride):
            offsets = window_offsets(self.spec, step, len(tokens))
            yield make_batch(tokens, offsets, self.spec.block_size)


def evaluation_batches(
    path: Path, block_size: int, batch_size: int, max_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, non-overlapping windows from the start of a split, for comparable val losses."""
    tokens = open_tokens(path).tokens
    window = block_size + 1
    count = min(max_batches * batch_size, (len(tokens) - 1) // block_size)
    if count == 0:
        raise ArtifactError(f"{path} holds fewer than {window} tokens: add validation data")
    offsets = np.arange(count) * block_size
    return [
        make_batch(tokens, offsets[i : i + batch_size], block_size)
        for i in range(0, count, batch_size)
    ]


class TokenDataModule(pl.LightningDataModule):
    """Training windows from ``train.bin`` and fixed validation windows from ``val.bin``.

    Each rank draws its own stream (the rank is part of the random key). A resumed run
    continues the stream at the restored step: micro-batch ``global_step * grad_accum``.
    """

    def __init__(
        self,
        folder: Path,
        spec: WindowSpec,
        val_batches: int,
        grad_accum: int = 1,
        workers: int = 0,
    ) -> None:
        super().__init__()
        self.folder = folder
        self.spec = spec
        self.val_batches = val_batches
        self.grad_accum = grad_accum
        self.workers = workers

    def train_dataloader(self) -> DataLoader:
        """Endless batches for this rank, from the restored step on."""
        spec = WindowSpec(
            self.spec.block_size, self.spec.batch_size, self.spec.seed, self.trainer.global_rank
        )
        start = self.trainer.global_step * self.grad_accum
        dataset = TokenWindows(self.folder / "train.bin", spec, start_step=start)
        return self._loader(dataset)

    def val_dataloader(self) -> DataLoader:
        """The same fixed windows every time, on every rank."""
        batches = evaluation_batches(
            self.folder / "val.bin", self.spec.block_size, self.spec.batch_size, self.val_batches
        )
        return self._loader(batches, workers=0)

    def _loader(self, dataset: object, workers: int | None = None) -> DataLoader:
        workers = self.workers if workers is None else workers
        return DataLoader(
            dataset,
            batch_size=None,  # items already are batches
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )
