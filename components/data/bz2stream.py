"""Decompressed bytes of a bz2 file (every stream of a multistream one), in large steps.

``bz2.BZ2File`` feeds its decompressor 8 KB of input at a time and takes the GIL back after
each step. Run by the read-ahead thread next to a busy XML parser, every one of those steps
waited for the parser's next GIL release (up to the 5 ms switch interval): decompression,
the longest serial part of ``ingest``, went at the parser's pace. Here each step takes up to
``chunk`` bytes of input and gives up to ``size`` bytes out, so the thread asks for the GIL
a hundred times less often. Errors are BZ2File's: ``EOFError`` for a stream that ends early,
``OSError`` for corrupt data; data after the last stream that is not bz2 is ignored.
"""

from __future__ import annotations

import bz2
from typing import IO

_CHUNK = 1 << 20


class Bz2Stream:
    """File-like ``read1()``/``read()`` of the decompressed bytes of ``raw``."""

    def __init__(self, raw: IO[bytes], chunk: int = _CHUNK) -> None:
        self._raw = raw
        self._chunk = chunk
        self._decompressor = bz2.BZ2Decompressor()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def read1(self, size: int = -1) -> bytes:
        """Up to ``size`` decompressed bytes (``chunk`` when negative); b"" at the end."""
        if size is None or size < 0:
            size = self._chunk
        while True:
            step = self._step(size)
            if step is None:
                return b""
            if step:
                return step

    read = read1

    def _step(self, size: int) -> bytes | None:
        """One decompression step: its output (maybe b""), or None at the end of the data."""
        decompressor = self._decompressor
        if decompressor.eof:
            rest = decompressor.unused_data or self._raw.read(self._chunk)
            if not rest:
                return None
            self._decompressor = bz2.BZ2Decompressor()  # the next stream of a multistream file
            try:
                return self._decompressor.decompress(rest, size)
            except OSError:
                return None  # trailing data that is not a bz2 stream, ignored as BZ2File does
        if not decompressor.needs_input:
            return decompressor.decompress(b"", size)  # output left from the last input
        data = self._raw.read(self._chunk)
        if not data:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        return decompressor.decompress(data, size)
