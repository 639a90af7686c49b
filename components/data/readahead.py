"""A binary stream read by a background thread, a few chunks ahead of its consumer.

Decompressing a bz2 dump costs as much as parsing its XML. Both ran one after the other in
the process that feeds the converters; CPython's bz2, gzip and zlib decompressors release the
GIL, so a reader thread decompresses the next chunks while the parser works on this one.
Memory stays bounded: at most ``depth`` chunks wait in the queue.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

_CHUNK = 1 << 20


class ByteSource(Protocol):
    """What the reader thread reads from: a binary file, or a decompressor's stream."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; b"" at the end."""
        ...


class ReadAhead:
    """File-like ``read()`` over ``stream``, filled by a daemon thread.

    An exception raised while reading (a truncated archive, say) is raised again by the
    ``read()`` that reaches its position. Use as a context manager, or call :meth:`close`,
    to stop the thread before the underlying file is closed.
    """

    def __init__(self, stream: ByteSource, chunk: int = _CHUNK, depth: int = 16) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._buffer = memoryview(b"")
        self._finished = False
        self._error: BaseException | None = None  # raised by the read after the bytes before it
        self._thread = threading.Thread(
            target=self._fill, args=(stream, chunk), name="read-ahead", daemon=True
        )
        self._thread.start()

    def _fill(self, stream: ByteSource, chunk: int) -> None:
        # read1 returns what one decompression step gives: read() would wait for a whole
        # chunk and lose the bytes before an error (a truncated archive) with the error.
        read = getattr(stream, "read1", stream.read)
        try:
            while not self._stop.is_set():
                data = read(chunk)
                self._put(data)  # b"" tells the consumer the stream ended
                if not data:
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            self._put(error)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (all that is left when negative), fewer only at the end or an error.

        The thread's pieces are gathered up to ``size``: a pipe gives at most 64 KB a read,
        and a consumer that appends each read to the bytes it holds copied them all again
        for every 64 KB (9 GB of copying for a 1 GB dump cut into 1 MB chunks). The bytes
        before an error come first; the next read raises it.
        """
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        pieces: list[memoryview] = []
        while size > 0 and (self._buffer or self._next_piece()):
            piece = self._buffer[:size]
            self._buffer = self._buffer[len(piece) :]
            pieces.append(piece)
            size -= len(piece)
        if not pieces and self._error is not None:
            error, self._error = self._error, None
            raise error
        return b"".join(pieces)

    def _next_piece(self) -> bool:
        """Take the thread's next piece; False at the end or at an error (kept to raise)."""
        if self._finished:
            return False
        item = self._queue.get()
        if isinstance(item, BaseException) or not item:
            self._finished = True
            self._error = item if isinstance(item, BaseException) else None
            return False
        self._buffer = memoryview(item)
        return True

    def close(self) -> None:
        """Stop the reader thread (it may be blocked on a full queue) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
