"""Encoding the clean corpus shard by shard, resumably, into the two token files.

Each clean shard is read once: its documents go to their split (train or val), each split's
texts are batch-encoded (Rust threads on every core) and their ids appended to that split's
raw token file in the scratch folder (:mod:`components.core.resume`). Once a shard's ids
are on disk it is marked done with the files' sizes and the running counts, so a killed
tokenize resumes at the first shard not done. The token files of ``data/tokens`` are then
written from the raw files (:func:`components.data.tokenbin.write_tokens`), each document
followed by the separator token, in corpus order: the same bytes as one pass would write.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from components.core.progress import progress
from components.core.resume import ShardProgress
from components.data.documents import read_batches, shard_paths, shard_rows
from components.data.tokenbin import dtype_for, write_tokens

SPLITS = ("train", "val")
# Documents per encode call: their encodings (ids, offsets, token strings) are held at once.
_BATCH_CHARS = 4_000_000
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
        self.separator = separator
        self.split_of = split_of
        self.work = work
        self.dtype = dtype_for(tokenizer.get_vocab_size())
        self.stats = {split: SplitStats() for split in SPLITS}

    def raw_path(self, split: str) -> Path:
        """The raw token file of ``split`` in the scratch folder (ids only, no header)."""
        return self.work.folder / f"{split}.tokens"

    def encode(self, folder: Path, batch_docs: int) -> dict[str, SplitStats]:
        """Encode every shard of ``folder`` not done yet; the counts of both splits."""
        shards = shard_paths(folder)
        done = self._resume()
        handles = {split: self.raw_path(split).open("ab") for split in SPLITS}
        total = sum(shard_rows(path) for path in shards[done:])
        try:
            with progress(total=total, unit="doc", desc="tokenize") as bar:
                for index in range(done, len(shards)):
                    for ids, texts in _batches(shards[index], batch_docs):
                        self._encode_batch(ids, texts, handles)
                        bar.update(len(ids))
                    self.work.mark_done(index, self._state(handles))
        finally:
            for handle in handles.values():
                handle.close()
        return self.stats

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

    def _encode_batch(self, ids: list[int], texts: list[str], handles: dict) -> None:
        by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
        for doc_id, text in zip(ids, texts, strict=True):
            by_split[self.split_of(doc_id)].append(text)
        for split, chosen in by_split.items():
            if chosen:
                handles[split].write(self._encoded(chosen, self.stats[split]).tobytes())

    def _encoded(self, texts: list[str], stats: SplitStats) -> np.ndarray:
        """Token ids of ``texts``, each followed by the separator; counted into ``stats``."""
        # The _fast variant skips character offsets, which token files do not need.
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ids: list[int] = []
        for text, encoding in zip(texts, encodings, strict=True):
            ids.extend(encoding.ids)
            ids.append(self.separator)
            stats.tokens += len(encoding.ids)
            stats.bytes += len(text.encode("utf-8"))
        stats.documents += len(texts)
        return np.asarray(ids, dtype=self.dtype)

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
        path = self.raw_path(split)
        if not path.stat().st_size:
            return
        tokens = np.memmap(path, dtype=self.dtype, mode="r")
        for start in range(0, tokens.size, _COPY_TOKENS):
            yield np.asarray(tokens[start : start + _COPY_TOKENS])


def _batches(path: Path, batch_docs: int) -> Iterator[tuple[list[int], list[str]]]:
    """Ids and texts of one shard's documents, in batches of at most ``batch_docs``.

    A batch also ends after about 4 MB of text, so long documents do not make it large.
    """
    for batch in read_batches(path, columns=["id", "text"], batch_size=batch_docs):
        ids, texts = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        start, chars = 0, 0
        for end, text in enumerate(texts, start=1):
            chars += len(text)
            if chars >= _BATCH_CHARS:
                yield ids[start:end], texts[start:end]
                start, chars = end, 0
        if start < len(texts):
            yield ids[start:], texts[start:]
