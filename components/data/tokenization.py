"""Stage ``tokenize``: train a byte-level BPE tokenizer and encode the corpus to token files.

Documents are split into train and val by a seeded hash of their page id, so a document keeps
its split when the corpus changes. The tokenizer (Hugging Face ``tokenizers``, GPT-2 style
byte-level BPE, hence lossless) learns from the train split only; both splits are then
batch-encoded (Rust threads on every core) and streamed to ``train.bin`` / ``val.bin`` (see
:mod:`components.data.tokenbin`), each document followed by the first special token.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from components.core.artifacts import (
    TOKENIZER_FILE,
    atomic_dir,
    build_meta,
    dir_digest,
    file_digest,
    read_meta,
    write_json,
)
from components.core.errors import WikilmError
from components.core.paths import Paths
from components.core.progress import progress
from components.core.schema import Report
from components.data.documents import iter_batches, read_batches, shard_paths
from components.data.params import DataSections, TokenizeParams
from components.data.tokenbin import VERSION, dtype_for, write_tokens

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


class TokenizeResult(Report):
    """What ``tokenize`` did: written to ``metrics/tokenize.json``."""

    vocab_size: int
    documents_train: int
    documents_val: int
    tokens_train: int
    tokens_val: int
    bytes_per_token_val: float
    bytes_per_token_train: float
    seconds: float


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


def split_of(doc_id: int, seed: int, val_fraction: float) -> str:
    """``"val"`` for a seeded, stable fraction of document ids, else ``"train"``.

    The id alone decides, so a document keeps its split when others are added or removed.
    """
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"


def count_splits(folder: Path, cfg: TokenizeParams) -> dict[str, int]:
    """Documents per split, reading only the ``id`` column (cheap: Parquet is columnar)."""
    counts = dict.fromkeys(SPLITS, 0)
    for path in shard_paths(folder):
        for batch in read_batches(path, columns=["id"], batch_size=65_536):
            for doc_id in batch.column(0).to_pylist():
                counts[split_of(doc_id, cfg.seed, cfg.val_fraction)] += 1
    return counts


def check_splits(counts: dict[str, int], cfg: TokenizeParams) -> None:
    """Fail before any training when a split would be empty.

    Raises:
        WikilmError: the train or val split has no document.
    """
    total = sum(counts.values())
    for split, fix in (("val", "raise"), ("train", "lower")):
        if counts[split] == 0:
            raise WikilmError(
                f"the {split} split is empty: tokenize.val_fraction={cfg.val_fraction} sends "
                f"none of the {total} clean documents there; {fix} val_fraction or add data"
            )


def split_texts(folder: Path, cfg: TokenizeParams, split: str) -> Iterator[list[str]]:
    """Batches of the texts of one split, in corpus order."""
    for batch in iter_batches(folder, cfg.batch_docs):
        texts = [d.text for d in batch if split_of(d.id, cfg.seed, cfg.val_fraction) == split]
        if texts:
            yield texts


def train_tokenizer(
    texts: Iterable[str], cfg: TokenizeParams, length: int | None = None
) -> Tokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 style) on streamed texts."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(cfg.special_tokens),
        # Every byte is in the vocabulary from the start, so any text encodes losslessly.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    # A document quoting "<|endoftext|>" must not produce a real separator.
    tokenizer.encode_special_tokens = True
    return tokenizer


def encode(
    tokenizer: Tokenizer, batches: Iterable[list[str]], separator: int, stats: SplitStats
) -> Iterator[np.ndarray]:
    """Token ids of each batch, each document followed by ``separator``; updates ``stats``."""
    for texts in batches:
        # The _fast variant skips character offsets, which token files do not need.
        encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ids: list[int] = []
        for text, encoding in zip(texts, encodings, strict=True):
            ids.extend(encoding.ids)
            ids.append(separator)
            stats.tokens += len(encoding.ids)
            stats.bytes += len(text.encode("utf-8"))
        stats.documents += len(texts)
        yield np.asarray(ids, dtype=np.uint32)


def _counted(batches: Iterable[list[str]], bar: Any) -> Iterator[list[str]]:
    """Pass batches through, advancing a progress bar by their document count."""
    for batch in batches:
        bar.update(len(batch))
        yield batch


def _encode_split(
    tokenizer: Tokenizer, paths: Paths, cfg: TokenizeParams, split: str, out: Path, total: int
) -> SplitStats:
    """Encode one split into ``out/<split>.bin``, with a progress bar on a terminal."""
    stats = SplitStats()
    separator = tokenizer.token_to_id(cfg.special_tokens[0])
    with progress(total=total, desc=f"tokenize {split}", unit="doc") as bar:
        chunks = encode(
            tokenizer, _counted(split_texts(paths.clean, cfg, split), bar), separator, stats
        )
        write_tokens(out / f"{split}.bin", chunks, tokenizer.get_vocab_size())
    return stats


def run(params: DataSections, paths: Paths) -> TokenizeResult:
    """Tokenize ``paths.clean`` into ``paths.tokens``.

    Raises:
        ArtifactError: the clean corpus is missing or from another stage.
        WikilmError: a split would be empty.
    """
    started = time.perf_counter()
    cfg = params.tokenize
    read_meta(paths.clean, "clean")
    counts = count_splits(paths.clean, cfg)
    check_splits(counts, cfg)
    log.info("tokenize: %d train / %d val documents", counts["train"], counts["val"])
    texts = (t for batch in split_texts(paths.clean, cfg, "train") for t in batch)
    tokenizer = train_tokenizer(texts, cfg, length=counts["train"])
    if tokenizer.get_vocab_size() < cfg.vocab_size:
        log.warning(
            "tokenize: the corpus supports %d tokens, fewer than vocab_size=%d",
            tokenizer.get_vocab_size(),
            cfg.vocab_size,
        )
    with atomic_dir(paths.tokens) as out:
        tokenizer.save(str(out / TOKENIZER_FILE))
        stats = {s: _encode_split(tokenizer, paths, cfg, s, out, counts[s]) for s in SPLITS}
        write_json(out / "meta.json", _meta(cfg, paths, out, tokenizer, stats))
    result = _result(tokenizer.get_vocab_size(), stats, time.perf_counter() - started)
    log.info(
        "tokenize: vocab %d, %d train / %d val tokens, %.3f bytes per token on val",
        result.vocab_size,
        result.tokens_train,
        result.tokens_val,
        result.bytes_per_token_val,
    )
    return result


def _result(vocab_size: int, stats: dict[str, SplitStats], seconds: float) -> TokenizeResult:
    train, val = stats["train"], stats["val"]
    return TokenizeResult(
        vocab_size=vocab_size,
        documents_train=train.documents,
        documents_val=val.documents,
        tokens_train=train.tokens,
        tokens_val=val.tokens,
        bytes_per_token_val=round(val.bytes_per_token, 4),
        bytes_per_token_train=round(train.bytes_per_token, 4),
        seconds=round(seconds, 3),
    )


def _meta(
    cfg: TokenizeParams, paths: Paths, out: Path, tokenizer: Tokenizer, stats: dict[str, SplitStats]
) -> dict:
    vocab_size = tokenizer.get_vocab_size()
    return build_meta(
        "tokenize",
        cfg.model_dump(mode="json"),
        {"clean": dir_digest(paths.clean)},
        vocab_size=vocab_size,
        dtype=dtype_for(vocab_size).name,
        token_format_version=VERSION,
        separator=cfg.special_tokens[0],
        special_tokens={t: tokenizer.token_to_id(t) for t in cfg.special_tokens},
        encode_special_tokens=True,  # see tokenizer_file.load_tokenizer
        splits={
            s: {"documents": v.documents, "tokens": v.tokens, "bytes": v.bytes}
            for s, v in stats.items()
        },
        tokenizer_sha256=file_digest(out / TOKENIZER_FILE),
    )
