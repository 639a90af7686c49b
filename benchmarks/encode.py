r"""Benchmark: tokenize's piece encoder beside the tokenizer's own batch encoding.

Both encode the same clean texts with the same trained tokenizer, in this process: the peer is
``tokenizer.encode_batch_fast`` (Hugging Face ``tokenizers``, Rust threads on every core), as
tokenize used it before; ours is :class:`components.data.bpe_pieces.PieceEncoder`, fed the
Arrow column in the stage's batches. Prints each one's MB of UTF-8 text per second, the ratio,
and whether the ids are the same (they must be).

    python benchmarks/encode.py                               # this checkout's data/
    python benchmarks/encode.py --clean /tmp/wikilm-scale/runs/1000mb/clean \
        --tokens /tmp/wikilm-scale/runs/1000mb/tokens --mb 200    # a scale run kept (--keep)

The first needs ``data/clean`` and ``data/tokens`` (``make run`` or ``dvc repro tokenize``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from itertools import chain
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.data.bpe_pieces import PieceEncoder  # noqa: E402
from components.data.documents import read_batches, shard_paths  # noqa: E402
from components.data.tokenizer_file import load_tokenizer  # noqa: E402

BATCH_DOCS = 256  # tokenize.batch_docs' default
PEER_BATCH_DOCS = 1000  # about the 4 MB batches tokenize gave the tokenizer


def texts(folder: Path, limit_mb: float) -> pa.Array:
    """The first ``limit_mb`` MB (UTF-8) of the corpus's texts, as one Arrow array."""
    chunks, size = [], 0
    for path in shard_paths(folder):
        for batch in read_batches(path, columns=["text"], batch_size=BATCH_DOCS):
            chunks.append(batch.column(0))
            size += batch.column(0).nbytes
            if size >= limit_mb * 1e6:
                return pa.concat_arrays(chunks)
    return pa.concat_arrays(chunks)


def digest(ids: np.ndarray) -> str:
    """SHA-256 of the ids as 64-bit integers."""
    return hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest()


def ours(tokenizer, column: pa.Array) -> tuple[float, str]:
    """Seconds and digest of the ids, by :class:`PieceEncoder` in the stage's batches."""
    encoder = PieceEncoder(tokenizer)
    started = time.perf_counter()
    parts = [
        encoder.encode(column.slice(start, BATCH_DOCS)).ids
        for start in range(0, len(column), BATCH_DOCS)
    ]
    return time.perf_counter() - started, digest(np.concatenate(parts))


def peer(tokenizer, column: pa.Array) -> tuple[float, str]:
    """Seconds and digest of the ids, by the tokenizer's own batch encoding."""
    strings = column.to_pylist()
    started = time.perf_counter()
    parts = []
    for start in range(0, len(strings), PEER_BATCH_DOCS):
        batch = strings[start : start + PEER_BATCH_DOCS]
        encodings = tokenizer.encode_batch_fast(batch, add_special_tokens=False)
        parts.append(np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64))
    return time.perf_counter() - started, digest(np.concatenate(parts))


def main() -> None:
    """Encode the texts both ways and print the speeds and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", type=Path, default=ROOT / "data" / "clean")
    parser.add_argument("--tokens", type=Path, default=ROOT / "data" / "tokens")
    parser.add_argument("--mb", type=float, default=100, help="MB of text to encode at most")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.tokens / "tokenizer.json")
    column = texts(args.clean, args.mb)
    mb = pc.sum(pc.binary_length(column)).as_py() / 1e6
    vocab = tokenizer.get_vocab_size()
    print(f"{len(column):,} documents, {mb:.1f} MB of UTF-8 text, vocabulary {vocab}")
    peer_s, peer_digest = peer(tokenizer, column)
    ours_s, ours_digest = ours(tokenizer, column)
    print(f"tokenizers encode_batch_fast: {peer_s:.2f} s, {mb / peer_s:.1f} MB/s")
    print(f"PieceEncoder:                 {ours_s:.2f} s, {mb / ours_s:.1f} MB/s")
    print(f"speed ratio (peer seconds / ours): {peer_s / ours_s:.2f}x")
    print(f"same ids: {ours_digest == peer_digest}")
    if ours_digest != peer_digest:
        sys.exit(1)


if __name__ == "__main__":
    main()
