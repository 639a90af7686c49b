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
        """Up to ``size`` bytes (all that is left when negative); b"" at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_CHUNK), b""))
        if not self._buffer:
            if self._finished:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._finished = True
                raise item
            if not item:
                self._finished = True
                return b""
            self._buffer = memoryview(item)
        data = bytes(self._buffer[:size])
        self._buffer = self._buffer[size:]
        return data

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
