"""The token file format: a 64-byte versioned header, then a flat array of token ids.

Header (little-endian): magic ``WIKILMTK`` (8 bytes), format version (u32), item size in
bytes (u32: 2 for uint16, 4 for uint32), vocabulary size (u64), token count (u64), zero
padding to 64 bytes. Readers memory-map the tokens, so training never loads a split.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.errors import ArtifactError

MAGIC = b"WIKILMTK"
VERSION = 1
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sIIQQ")


@dataclass(frozen=True)
class TokenFile:
    """A token file, memory-mapped read-only."""

    path: Path
    tokens: np.memmap
    vocab_size: int
    version: int

    @property
    def n_tokens(self) -> int:
        """Number of tokens in the file."""
        return int(self.tokens.shape[0])


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _header(vocab_size: int, itemsize: int, n_tokens: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, itemsize, vocab_size, n_tokens).ljust(HEADER_SIZE, b"\0")


def write_tokens(path: Path, chunks: Iterable[np.ndarray], vocab_size: int) -> int:
    """Stream token chunks to ``path`` atomically; returns the number of tokens written.

    Raises:
        ValueError: a token id is outside the vocabulary (an internal error).
    """
    dtype = dtype_for(vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_header(vocab_size, dtype.itemsize, 0))  # count filled in at the end
            for chunk in chunks:
                if chunk.size and int(chunk.max()) >= vocab_size:
                    raise ValueError(f"token id {int(chunk.max())} >= vocab_size {vocab_size}")
                out.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
                count += int(chunk.size)
            out.seek(0)
            out.write(_header(vocab_size, dtype.itemsize, count))
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def open_tokens(path: Path) -> TokenFile:
    """Memory-map a token file after checking its header against its size.

    Raises:
        ArtifactError: missing file, wrong magic, unknown version or item size, truncated.
    """
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run the 'tokenize' stage (dvc repro tokenize)")
    with path.open("rb") as handle:
        raw = handle.read(HEADER_SIZE)
    if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
        raise ArtifactError(f"{path} is not a wikilm token file (bad header): rerun 'tokenize'")
    _, version, itemsize, vocab_size, n_tokens = _HEADER.unpack(raw[: _HEADER.size])
    if version != VERSION:
        raise ArtifactError(
            f"{path} was written by format version {version}; this wikilm reads version "
            f"{VERSION}: rerun 'tokenize'"
        )
    if itemsize not in (2, 4):
        raise ArtifactError(f"{path}: unknown token size {itemsize} bytes: rerun 'tokenize'")
    expected = HEADER_SIZE + n_tokens * itemsize
    if path.stat().st_size != expected:
        raise ArtifactError(
            f"{path} is truncated or corrupt: {path.stat().st_size} bytes, expected {expected}: "
            "rerun 'tokenize'"
        )
    dtype = np.uint16 if itemsize == 2 else np.uint32
    tokens = np.memmap(path, dtype=dtype, mode="r", offset=HEADER_SIZE, shape=(n_tokens,))
    return TokenFile(path=path, tokens=tokens, vocab_size=vocab_size, version=version)
