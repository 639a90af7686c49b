"""The token file format: a 64-byte versioned header, then a flat array of token ids.

Header (little-endian): magic ``WIKILMTK`` (8 bytes), format version (u32), dtype code (u32:
the item size in bytes, 2 for uint16 and 4 for uint32), vocabulary size (u64), token count
(u64), zero padding to 64 bytes. Tokens follow as little-endian unsigned integers, so readers
memory-map them (as nanoGPT does with its ``.bin`` files) and training never loads a split.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.core.artifacts import temp_prefix
from components.core.errors import ArtifactError

MAGIC = b"WIKILMTK"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQ")  # magic, version, dtype code, vocab_size, n_tokens
# dtype code -> dtype; explicit byte order so a file reads the same on any machine.
DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}
_RERUN = "rerun 'tokenize' (dvc repro tokenize)"


@dataclass(frozen=True)
class TokenFile:
    """A token file whose tokens are memory-mapped read-only."""

    path: Path
    tokens: np.memmap
    vocab_size: int
    dtype: np.dtype
    n_tokens: int
    version: int


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest dtype holding every id: uint16 up to 65536 tokens, else uint32."""
    if not 0 < vocab_size <= 1 << 32:
        raise ValueError(f"vocab_size {vocab_size} does not fit a token file (1 to 2**32)")
    return DTYPES[2] if vocab_size <= 1 << 16 else DTYPES[4]


def _header(vocab_size: int, dtype: np.dtype, n_tokens: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, dtype.itemsize, vocab_size, n_tokens).ljust(
        HEADER_SIZE, b"\0"
    )


def _checked(chunk: np.ndarray, vocab_size: int, dtype: np.dtype) -> np.ndarray:
    """``chunk`` as a flat array of ``dtype``, refusing ids a narrowing cast would corrupt."""
    chunk = np.asarray(chunk).ravel()
    if chunk.size and not np.issubdtype(chunk.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got {chunk.dtype}")
    if chunk.size and (int(chunk.min()) < 0 or int(chunk.max()) >= vocab_size):
        raise ValueError(f"token ids must lie in [0, vocab_size={vocab_size})")
    return chunk.astype(dtype, copy=False)


def write_tokens(path: Path, chunks: Iterable[np.ndarray], vocab_size: int) -> int:
    """Stream token chunks to ``path`` atomically; returns the number of tokens written.

    Memory stays constant: chunks are written as they come, behind a header whose count is
    filled in at the end. The file appears under its name only once complete.

    Raises:
        ValueError: a token id is outside the vocabulary (an internal error of the caller).
    """
    dtype = dtype_for(vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_header(vocab_size, dtype, 0))
            for chunk in chunks:
                array = _checked(chunk, vocab_size, dtype)
                out.write(memoryview(array))
                count += int(array.size)
            out.seek(0)
            out.write(_header(vocab_size, dtype, count))
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _read_header(path: Path) -> tuple[int, np.dtype, int, int]:
    """Version, dtype, vocab_size and n_tokens of ``path``, each checked."""
    if not path.is_file():
        raise ArtifactError(f"{path} not found: {_RERUN}")
    with path.open("rb") as handle:
        raw = handle.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE or raw[: len(MAGIC)] != MAGIC:
        raise ArtifactError(f"{path} is not a wikilm token file (bad magic or header): {_RERUN}")
    _, version, code, vocab_size, n_tokens = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise ArtifactError(
            f"{path} was written by format version {version}; this wikilm reads version "
            f"{VERSION}: {_RERUN}"
        )
    if code not in DTYPES:
        raise ArtifactError(f"{path} has unknown dtype code {code} (expected 2 or 4): {_RERUN}")
    return version, DTYPES[code], vocab_size, n_tokens


def open_tokens(path: Path) -> TokenFile:
    """Memory-map a token file after checking its header against its size.

    Raises:
        ArtifactError: missing file, wrong magic, unknown version or dtype code, or a size
            that does not match the header (truncated or padded).
    """
    version, dtype, vocab_size, n_tokens = _read_header(path)
    expected, actual = HEADER_SIZE + n_tokens * dtype.itemsize, path.stat().st_size
    if actual != expected:
        raise ArtifactError(
            f"{path} is truncated or corrupt: {actual} bytes, but its header announces "
            f"{n_tokens} tokens ({expected} bytes): {_RERUN}"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(n_tokens,))
    return TokenFile(path, tokens, vocab_size, dtype, n_tokens, version)
