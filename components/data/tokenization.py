"""Stage ``tokenize``: train a byte-level BPE tokenizer and encode the corpus to token files.

Documents are split into train and val by a seeded hash of their page id, so a document keeps
its split when the corpus changes. The tokenizer (Hugging Face ``tokenizers``, GPT-2 style
byte-level BPE, hence lossless) learns from a sample of the train split of about
``train_sample_mb`` MB of UTF-8 text (1 MB = 1,000,000 bytes), so its memory and time do not
grow with the dump; both whole splits are then encoded, shard by shard and resumably, into
``train.bin`` / ``val.bin`` (:mod:`components.data.token_shards`), each document followed by
the first special token. The trained tokenizer is kept in the scratch folder too, so a killed
run does not train it again.

The sample is drawn like the split: a document is in it when a seeded hash of its page id
falls below a fraction computed from the train split's size, so the sample is the same
whatever the order of work, and a larger sample holds every document of a smaller one. When
the train split is no larger than the sample, the tokenizer learns from all of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
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
from components.core.resume import ShardProgress, work_folder
from components.core.schema import Report
from components.data.documents import read_batches, shard_paths
from components.data.params import DataSections, TokenizeParams
from components.data.token_shards import SPLITS, ShardEncoder, SplitStats
from components.data.tokenbin import VERSION, dtype_for
from components.data.tokenizer_file import load_tokenizer

log = logging.getLogger(__name__)

SAMPLE_FILE = "sample.json"  # in the scratch folder: the tokenizer is trained
# Bumped when the scratch folder's files change meaning: older work is then redone.
WORK_FORMAT = 1
MB = 1_000_000  # train_sample_mb counts decimal megabytes of UTF-8 text


class TokenizeResult(Report):
    """What ``tokenize`` did: written to ``metrics/tokenize.json``."""

    vocab_size: int
    documents_train: int
    documents_val: int
    tokens_train: int
    tokens_val: int
    bytes_per_token_val: float
    bytes_per_token_train: float
    documents_sample: int  # train documents the tokenizer learned from
    bytes_sample: int  # their UTF-8 bytes
    seconds: float


def _unit_hash(key: str) -> float:
    """A number in [0, 1) that depends on ``key`` alone, spread evenly over keys."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(doc_id: int, seed: int, val_fraction: float) -> str:
    """``"val"`` for a seeded, stable fraction of document ids, else ``"train"``.

    The id alone decides, so a document keeps its split when others are added or removed.
    """
    return "val" if _unit_hash(f"{seed}:{doc_id}") < val_fraction else "train"


def in_sample(doc_id: int, seed: int, fraction: float) -> bool:
    """Whether a train document is in the tokenizer's sample of about ``fraction`` of them.

    The id alone decides, so the sample does not depend on other documents or on the order
    of reading, and a larger fraction selects a superset. Salted apart from :func:`split_of`:
    with the same hash, the sample would be correlated with the split.
    """
    return fraction >= 1 or _unit_hash(f"{seed}:train_sample:{doc_id}") < fraction


def sample_fraction(train_bytes: int, cfg: TokenizeParams) -> float:
    """The share of train documents to learn from: about ``train_sample_mb`` MB, or all."""
    return min(1.0, cfg.train_sample_mb * MB / train_bytes) if train_bytes else 1.0


def _id_text_batches(folder: Path, batch_docs: int) -> Iterator[tuple[list[int], pa.Array]]:
    """Ids (as ints) and texts (as Arrow strings) of the documents, in corpus order."""
    for path in shard_paths(folder):
        for batch in read_batches(path, columns=["id", "text"], batch_size=batch_docs):
            yield batch.column(0).to_pylist(), batch.column(1)


def _utf8_lengths(texts: pa.Array) -> np.ndarray:
    """UTF-8 bytes of each string, from the Arrow offsets alone (no decoding)."""
    offsets = np.frombuffer(texts.buffers()[1], np.int32, len(texts) + 1, texts.offset * 4)
    return np.diff(offsets)


def count_splits(folder: Path, cfg: TokenizeParams) -> dict[str, SplitStats]:
    """Documents and UTF-8 bytes of text per split, in one streaming pass.

    Counting the bytes reads the text column, but only Arrow offsets, not Python strings: the
    train split's exact size is what lets a corpus smaller than the sample be learned whole.
    """
    stats = {split: SplitStats() for split in SPLITS}
    for ids, texts in _id_text_batches(folder, cfg.batch_docs):
        for doc_id, size in zip(ids, _utf8_lengths(texts).tolist(), strict=True):
            split = stats[split_of(doc_id, cfg.seed, cfg.val_fraction)]
            split.documents += 1
            split.bytes += size
    return stats


def check_splits(counts: dict[str, SplitStats], cfg: TokenizeParams) -> None:
    """Fail before any training when a split would be empty.

    Raises:
        WikilmError: the train or val split has no document.
    """
    total = sum(c.documents for c in counts.values())
    for split, fix in (("val", "raise"), ("train", "lower")):
        if counts[split].documents == 0:
            raise WikilmError(
                f"the {split} split is empty: tokenize.val_fraction={cfg.val_fraction} sends "
                f"none of the {total} clean documents there; {fix} val_fraction or add data"
            )


def split_texts(
    folder: Path, cfg: TokenizeParams, split: str, fraction: float = 1.0
) -> Iterator[list[str]]:
    """Batches of the texts of one split, in corpus order; of the train split, the sample.

    Args:
        folder: The clean corpus.
        cfg: The stage's params (seed, val_fraction, batch_docs).
        split: ``"train"`` or ``"val"``.
        fraction: The share of the split's documents to keep, chosen by :func:`in_sample`.
    """
    for ids, texts in _id_text_batches(folder, cfg.batch_docs):
        keep = [
            i
            for i, doc_id in enumerate(ids)
            if split_of(doc_id, cfg.seed, cfg.val_fraction) == split
            and in_sample(doc_id, cfg.seed, fraction)
        ]
        if keep:
            # Element by element when some are dropped: only kept texts become Python strings.
            yield texts.to_pylist() if len(keep) == len(ids) else [texts[i].as_py() for i in keep]


def sample_texts(
    folder: Path, cfg: TokenizeParams, fraction: float, stats: SplitStats
) -> Iterator[str]:
    """The texts of the tokenizer's sample of the train split; counts them into ``stats``."""
    for texts in split_texts(folder, cfg, "train", fraction):
        stats.documents += len(texts)
        stats.bytes += sum(len(text.encode("utf-8")) for text in texts)
        yield from texts


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


def run(params: DataSections, paths: Paths) -> TokenizeResult:
    """Tokenize ``paths.clean`` into ``paths.tokens``.

    Raises:
        ArtifactError: the clean corpus is missing or from another stage.
        WikilmError: a split would be empty, or the sample has no document.
    """
    started = time.perf_counter()
    cfg = params.tokenize
    read_meta(paths.clean, "clean")
    counts = count_splits(paths.clean, cfg)
    check_splits(counts, cfg)
    log.info(
        "tokenize: %d train / %d val documents", counts["train"].documents, counts["val"].documents
    )
    clean_digest = dir_digest(paths.clean)
    origin = {"format": WORK_FORMAT, "params": cfg.model_dump(mode="json"), "clean": clean_digest}
    work = ShardProgress(work_folder(paths.tokens), origin)
    with work.kept_for_a_rerun():
        tokenizer, sample = _trained(paths, cfg, counts["train"], work)
        separator = tokenizer.token_to_id(cfg.special_tokens[0])
        split = partial(split_of, seed=cfg.seed, val_fraction=cfg.val_fraction)
        encoder = ShardEncoder(tokenizer, separator, split, work)
        stats = encoder.encode(paths.clean, cfg.batch_docs)
    with atomic_dir(paths.tokens) as out:
        shutil.copyfile(work.folder / TOKENIZER_FILE, out / TOKENIZER_FILE)
        encoder.write_token_files(out)
        meta = _meta(cfg, clean_digest, out, tokenizer, stats, sample)
        write_json(out / "meta.json", meta)
    work.remove()
    result = _result(tokenizer.get_vocab_size(), stats, sample, time.perf_counter() - started)
    log.info(
        "tokenize: vocab %d, %d train / %d val tokens, %.3f bytes per token on val",
        result.vocab_size,
        result.tokens_train,
        result.tokens_val,
        result.bytes_per_token_val,
    )
    return result


def _trained(
    paths: Paths, cfg: TokenizeParams, train: SplitStats, work: ShardProgress
) -> tuple[Tokenizer, SplitStats]:
    """The tokenizer and its sample's size: trained now, or by a killed run before.

    Both are saved in the scratch folder, the sample's size last: it marks the training
    done.
    """
    saved, sample_file = work.folder / TOKENIZER_FILE, work.folder / SAMPLE_FILE
    if sample_file.is_file():
        log.info("tokenize: the tokenizer was trained by an earlier run")
        sample = SplitStats(**json.loads(sample_file.read_text(encoding="utf-8")))
        return load_tokenizer(saved), sample
    tokenizer, sample = _train_on_sample(paths, cfg, train)
    partial_file = saved.with_name(f".{saved.name}.partial")
    tokenizer.save(str(partial_file))
    partial_file.replace(saved)
    write_json(sample_file, asdict(sample))
    return tokenizer, sample


def _train_on_sample(
    paths: Paths, cfg: TokenizeParams, train: SplitStats
) -> tuple[Tokenizer, SplitStats]:
    """Train the tokenizer on the sample of the train split; returns it and the sample's size.

    Raises:
        WikilmError: the sample has no document (train_sample_mb is too small).
    """
    fraction = sample_fraction(train.bytes, cfg)
    sample = SplitStats()
    texts = sample_texts(paths.clean, cfg, fraction, sample)
    # length only sizes the progress bar: the sample's exact count is known after training.
    tokenizer = train_tokenizer(texts, cfg, length=round(fraction * train.documents))
    if sample.documents == 0:
        raise WikilmError(
            f"the tokenizer's sample is empty: tokenize.train_sample_mb={cfg.train_sample_mb} "
            f"selects none of the {train.documents} train documents; raise train_sample_mb"
        )
    log.info(
        "tokenize: the tokenizer learned from %d of %d train documents (%.1f of %.1f MB)",
        sample.documents,
        train.documents,
        sample.bytes / MB,
        train.bytes / MB,
    )
    if tokenizer.get_vocab_size() < cfg.vocab_size:
        log.warning(
            "tokenize: the corpus supports %d tokens, fewer than vocab_size=%d",
            tokenizer.get_vocab_size(),
            cfg.vocab_size,
        )
    return tokenizer, sample


def _result(
    vocab_size: int, stats: dict[str, SplitStats], sample: SplitStats, seconds: float
) -> TokenizeResult:
    train, val = stats["train"], stats["val"]
    return TokenizeResult(
        vocab_size=vocab_size,
        documents_train=train.documents,
        documents_val=val.documents,
        tokens_train=train.tokens,
        tokens_val=val.tokens,
        bytes_per_token_val=round(val.bytes_per_token, 4),
        bytes_per_token_train=round(train.bytes_per_token, 4),
        documents_sample=sample.documents,
        bytes_sample=sample.bytes,
        seconds=round(seconds, 3),
    )


def _meta(
    cfg: TokenizeParams,
    clean_digest: str,
    out: Path,
    tokenizer: Tokenizer,
    stats: dict[str, SplitStats],
    sample: SplitStats,
) -> dict:
    vocab_size = tokenizer.get_vocab_size()
    return build_meta(
        "tokenize",
        cfg.model_dump(mode="json"),
        {"clean": clean_digest},
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
        train_sample={"documents": sample.documents, "bytes": sample.bytes},
        tokenizer_sha256=file_digest(out / TOKENIZER_FILE),
    )
