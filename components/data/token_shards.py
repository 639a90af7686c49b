"""Encoding the clean corpus shard by shard, resumably, into the two token files.

Each clean shard is read once: its documents go to their split (train or val), each split's
texts are encoded a batch at a time, straight from the Arrow column
(:class:`components.data.bpe_pieces.PieceEncoder`: the tokenizer's ids, each distinct word
encoded once), and their ids appended to that split's raw token file in the scratch folder
(:mod:`components.core.resume`). Once a shard's ids
are on disk it is marked done with the files' sizes and the running counts, so a killed
tokenize resumes at the first shard not done. The token files of ``data/tokens`` are then
written from the raw files (:func:`components.data.tokenbin.write_tokens`), each document
followed by the separator token, in corpus order: the same bytes as one pass would write.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer

from components.core.progress import progress
from components.core.resume import ShardProgress
from components.data.bpe_pieces import Encoded, PieceEncoder
from components.data.documents import read_batches, shard_paths, shard_rows, size_runs
from components.data.tokenbin import dtype_for, write_tokens

SPLITS = ("train", "val")
# UTF-8 bytes of text per encode call at most (a longer document is a call of its own).
_BATCH_BYTES = 4_000_000
_COPY_TOKENS = 1 << 22  # tokens per chunk when the raw files are copied into token files


@dataclass
class SplitStats:
    """Running totals of one split while it is encoded."""

    documents: int = 0
    tokens: int = 0  # without document separators: they carry no text
    bytes: int = 0  # UTF-8

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token (higher means a more efficient tokenizer)."""
        return self.bytes / self.tokens if self.tokens else 0.0


class ShardEncoder:
    """Encodes clean shards into one raw token file per split in ``work.folder``.

    ``split_of`` names the split of a document id; ``separator`` follows every document.
    """

    def __init__(
        self, tokenizer: Tokenizer, separator: int, split_of: Callable, work: ShardProgress
    ) -> None:
        self.tokenizer = tokenizer
        self.pieces = PieceEncoder(tokenizer)
        self.separator = separator
        self.split_of = split_of
        self.work = work
        self.dtype = dtype_for(tokenizer.get_vocab_size())
        self.stats = {split: SplitStats() for split in SPLITS}

    def raw_path(self, split: str) -> Path:
        """The raw token file of ``split`` in the scratch folder (ids only, no header)."""
        return self.work.folder / f"{split}.tokens"

    def encode(self, folder: Path, batch_docs: int) -> dict[str, SplitStats]:
        """Encode every shard of ``folder`` not done yet; the counts of both splits.

        A thread encodes the next batch while this one reads the shards and writes the
        last batch's ids.
        """
        shards = shard_paths(folder)
        done = self._resume()
        handles = {split: self.raw_path(split).open("ab") for split in SPLITS}
        total = sum(shard_rows(path) for path in shards[done:])
        batches = _shard_batches(shards, done, batch_docs, self.split_of)
        try:
            with (
                ThreadPoolExecutor(1, thread_name_prefix="encode") as pool,
                progress(total=total, unit="doc", desc="tokenize") as bar,
            ):
                for (index, last, by_split), encoded in _one_ahead(pool, self._encode, batches):
                    for split, texts in by_split.items():
                        ids = self._ids(texts, encoded[split], self.stats[split])
                        handles[split].write(ids.tobytes())
                    bar.update(sum(map(len, by_split.values())))
                    if last:
                        self.work.mark_done(index, self._state(handles))
        finally:
            for handle in handles.values():
                handle.close()
        return self.stats

    def _encode(self, batch: tuple[int, bool, dict[str, pa.Array]]) -> dict[str, Encoded]:
        """The ids of a batch's texts, by split."""
        return {split: self.pieces.encode(texts) for split, texts in batch[2].items()}

    def _resume(self) -> int:
        """Shards done by an earlier run; the raw files are cut back to what they wrote."""
        done, state = self.work.resume()
        for split in SPLITS:
            size = state["sizes"][split] if state else 0
            with self.raw_path(split).open("ab") as handle:
                handle.truncate(size)
            if state:
                self.stats[split] = SplitStats(**state["stats"][split])
        return done

    def _ids(self, texts: pa.Array, encoded: Encoded, stats: SplitStats) -> np.ndarray:
        """The ids of ``texts``, each followed by the separator; counted into ``stats``."""
        tokens = encoded.ids.size
        ids = np.full(tokens + len(texts), self.separator, dtype=self.dtype)
        text_positions = np.ones(ids.size, dtype=bool)
        text_positions[np.cumsum(encoded.counts + 1) - 1] = False  # where each separator goes
        ids[text_positions] = encoded.ids
        stats.tokens += tokens
        stats.bytes += pc.sum(pc.binary_length(texts)).as_py() or 0
        stats.documents += len(texts)
        return ids

    def _state(self, handles: dict) -> dict:
        """What a shard's marker records: the raw files' sizes (on disk) and the counts."""
        for handle in handles.values():
            handle.flush()
            os.fsync(handle.fileno())
        return {
            "sizes": {split: handle.tell() for split, handle in handles.items()},
            "stats": {split: asdict(stats) for split, stats in self.stats.items()},
        }

    def write_token_files(self, out: Path) -> None:
        """Write ``out/<split>.bin`` for both splits from the raw files."""
        vocab_size = self.tokenizer.get_vocab_size()
        for split in SPLITS:
            write_tokens(out / f"{split}.bin", self._chunks(split), vocab_size)

    def _chunks(self, split: str) -> Iterator[np.ndarray]:
        # Plain reads, not a memory map: every page of a mapped file read stays in the
        # process's resident memory, which then grew with the corpus.
        with self.raw_path(split).open("rb") as handle:
            while chunk := handle.read(_COPY_TOKENS * self.dtype.itemsize):
                yield np.frombuffer(chunk, dtype=self.dtype)


def _shard_batches(
    shards: list[Path], first: int, batch_docs: int, split_of: Callable
) -> Iterator[tuple[int, bool, dict[str, pa.Array]]]:
    """(shard index, its last batch?, texts by split) for the shards from ``first`` on.

    Every shard gives at least one batch, maybe empty, so each is marked done.
    """
    for index in range(first, len(shards)):
        previous = None
        for batch in _batches(shards[index], batch_docs, split_of):
            if previous is not None:
                yield index, False, previous
            previous = batch
        yield index, True, previous or {}


def _batches(path: Path, batch_docs: int, split_of: Callable) -> Iterator[dict[str, pa.Array]]:
    """The texts of one shard's documents by split, in batches of at most ``batch_docs``.

    A batch also ends after about 4 MB of text, so long documents do not make it large.
    """
    for batch in read_batches(path, columns=["id", "text"], batch_size=batch_docs):
        ids, texts = batch.column(0).to_pylist(), batch.column(1)
        sizes = pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False)
        for start, end in size_runs(sizes.tolist(), _BATCH_BYTES):
            yield _by_split(ids[start:end], texts.slice(start, end - start), split_of)


def _by_split(ids: list[int], texts: pa.Array, split_of: Callable) -> dict[str, pa.Array]:
    splits = [split_of(doc_id) for doc_id in ids]
    return {
        split: texts.filter(pa.array([s == split for s in splits]))
        for split in dict.fromkeys(splits)
    }


def _one_ahead(pool: Executor, fn: Callable, items: Iterator) -> Iterator[tuple]:
    """``(item, fn(item))`` in order, ``fn`` of the next item running in ``pool`` meanwhile."""
    pending: Future | None = None
    previous = None
    for item in items:
        future = pool.submit(fn, item)
        if pending is not None:
            yield previous, pending.result()
        pending, previous = future, item
    if pending is not None:
        yield previous, pending.result()
