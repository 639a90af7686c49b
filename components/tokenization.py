"""Stage ``tokenize``: train a byte-level BPE tokenizer and encode the corpus to token files.

Documents are split into train and val by a seeded hash of their page id, so a document keeps
its split when the corpus changes. The tokenizer (Hugging Face ``tokenizers``) learns from the
train split only; both splits are then batch-encoded (Rust threads on every core) and streamed
to ``train.bin`` / ``val.bin`` (see :mod:`components.tokenbin`), documents separated by the
first special token.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from components.artifacts import (
    atomic_dir,
    build_meta,
    dir_digest,
    file_digest,
    read_meta,
    write_json,
)
from components.config import Params, Paths, TokenizeParams
from components.documents import iter_batches
from components.errors import ArtifactError
from components.tokenbin import dtype_for, write_tokens

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


class TokenizeResult(BaseModel):
    """What ``tokenize`` did: written to ``metrics/tokenize.json``."""

    model_config = ConfigDict(frozen=True)

    vocab_size: int
    documents_train: int
    documents_val: int
    tokens_train: int
    tokens_val: int
    bytes_per_token_train: float
    bytes_per_token_val: float
    seconds: float


@dataclass
class SplitStats:
    """Running totals of one split while it is encoded."""

    documents: int = 0
    tokens: int = 0  # without document separators
    bytes: int = 0

    @property
    def bytes_per_token(self) -> float:
        """UTF-8 bytes per token (higher is a more efficient tokenizer)."""
        return self.bytes / self.tokens if self.tokens else 0.0


def split_of(doc_id: int, seed: int, val_fraction: float) -> str:
    """``val`` for a seeded, stable fraction of document ids, else ``train``."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"


def split_texts(folder: Path, cfg: TokenizeParams, split: str) -> Iterator[list[str]]:
    """Batches of the texts of one split, in corpus order."""
    for batch in iter_batches(folder, cfg.batch_docs):
        texts = [d.text for d in batch if split_of(d.id, cfg.seed, cfg.val_fraction) == split]
        if texts:
            yield texts


def train_tokenizer(batches: Iterable[list[str]], cfg: TokenizeParams) -> Tokenizer:
    """Train a byte-level BPE tokenizer (GPT-2 style) on the given texts."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(cfg.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=sys.stderr.isatty(),
    )
    tokenizer.train_from_iterator((text for batch in batches for text in batch), trainer=trainer)
    # A document that quotes "<|endoftext|>" must not produce a real separator.
    tokenizer.encode_special_tokens = True
    return tokenizer


def encode(
    tokenizer: Tokenizer, batches: Iterable[list[str]], separator: int, stats: SplitStats
) -> Iterator[np.ndarray]:
    """Token ids of each batch, each document followed by ``separator``; updates ``stats``."""
    for texts in batches:
        encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ids: list[int] = []
        for text, encoding in zip(texts, encodings, strict=True):
            ids.extend(encoding.ids)
            ids.append(separator)
            stats.documents += 1
            stats.tokens += len(encoding.ids)
            stats.bytes += len(text.encode("utf-8"))
        yield np.asarray(ids, dtype=np.int64)


def run(params: Params, paths: Paths) -> TokenizeResult:
    """Tokenize ``paths.clean`` into ``paths.tokens``.

    Raises:
        ArtifactError: the clean corpus is missing, or a split would be empty.
    """
    cfg = params.tokenize
    read_meta(paths.clean, "clean")
    started = time.perf_counter()
    tokenizer = train_tokenizer(split_texts(paths.clean, cfg, "train"), cfg)
    separator = tokenizer.token_to_id(cfg.special_tokens[0])
    vocab_size = tokenizer.get_vocab_size()
    stats = {split: SplitStats() for split in SPLITS}
    with atomic_dir(paths.tokens) as out:
        tokenizer.save(str(out / "tokenizer.json"))
        for split in SPLITS:
            batches = split_texts(paths.clean, cfg, split)
            chunks = encode(tokenizer, batches, separator, stats[split])
            write_tokens(out / f"{split}.bin", chunks, vocab_size)
        _check_splits(stats, cfg)
        write_json(out / "meta.json", _meta(cfg, paths, out, tokenizer, stats))
    result = TokenizeResult(
        vocab_size=vocab_size,
        documents_train=stats["train"].documents,
        documents_val=stats["val"].documents,
        tokens_train=stats["train"].tokens,
        tokens_val=stats["val"].tokens,
        bytes_per_token_train=round(stats["train"].bytes_per_token, 4),
        bytes_per_token_val=round(stats["val"].bytes_per_token, 4),
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "tokenize: vocab %d, %d train / %d val tokens, %.2f bytes per token on val",
        vocab_size,
        result.tokens_train,
        result.tokens_val,
        result.bytes_per_token_val,
    )
    return result


def _check_splits(stats: dict[str, SplitStats], cfg: TokenizeParams) -> None:
    total = sum(s.documents for s in stats.values())
    for split, split_stats in stats.items():
        if split_stats.documents == 0:
            raise ArtifactError(
                f"the {split} split is empty ({total} documents, tokenize.val_fraction="
                f"{cfg.val_fraction}): change val_fraction or add documents"
            )


def _meta(
    cfg: TokenizeParams, paths: Paths, out: Path, tokenizer: Tokenizer, stats: dict[str, SplitStats]
) -> dict:
    vocab_size = tokenizer.get_vocab_size()
    return build_meta(
        "tokenize",
        cfg.model_dump(),
        {"clean": dir_digest(paths.clean)},
        vocab_size=vocab_size,
        dtype=dtype_for(vocab_size).name,
        separator=cfg.special_tokens[0],
        special_tokens={t: tokenizer.token_to_id(t) for t in cfg.special_tokens},
        splits={
            s: {"documents": v.documents, "tokens": v.tokens, "bytes": v.bytes}
            for s, v in stats.items()
        },
        tokenizer_sha256=file_digest(out / "tokenizer.json"),
    )
