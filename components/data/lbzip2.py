"""Decompressed bytes of a bz2 file, decoded by lbzip2 in a child process.

Python's bz2 module decodes with libbz2 on one core, about 30 MB of XML a second here: a third
of ``ingest``'s CPU time, and the pace of its main process. lbzip2 (Debian's and Ubuntu's
``lbzip2`` package) decodes one file on several cores, single-stream or multistream, with
a decoder that takes about a third less CPU per byte; its output is the same bytes.

This process still reads the file, and writes it to lbzip2's input from a thread: the dump is
read once, and the reader's byte count and checksum
(:class:`components.data.wikixml.CountingReader`) work as with the bz2 module. Errors keep
the bz2 module's types: ``EOFError`` for a file that ends inside a stream, ``OSError`` with
lbzip2's message for corrupt data. Data after the last stream that is not bz2 is ignored, as
the bz2 module does.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
from typing import IO

LBZIP2 = "lbzip2"
_CHUNK = 1 << 20
# A bz2 stream ends with this 48-bit marker, its 32-bit checksum, and 0 to 7 bits of padding
# to the byte: a file whose last 11 bytes hold no marker there stops inside a stream.
_STREAM_END = 0x177245385090
_TAIL = 11
# A stream starts "BZh" and a block size digit, then a block's 48-bit magic (or the end marker,
# when the stream is empty): a file that starts otherwise is corrupt, however it ends.
_BLOCK_START = 0x314159265359
_HEAD = 10
_STARTS = [
    b"BZh%d" % level + magic.to_bytes(6, "big")
    for level in range(1, 10)
    for magic in (_BLOCK_START, _STREAM_END)
]
_NOT_BZ2 = "not a valid bzip2 file"


def lbzip2_path() -> str | None:
    """The lbzip2 executable on PATH, or None when it is not installed."""
    return shutil.which(LBZIP2)


class Lbzip2Stream:
    """File-like ``read1()``/``read()`` of the decompressed bytes of ``raw``, via lbzip2.

    Use as a context manager, or call :meth:`close`: it stops lbzip2 and the feeding thread
    when the reader stops before the end.
    """

    def __init__(self, raw: IO[bytes], threads: int, chunk: int = _CHUNK) -> None:
        executable = lbzip2_path()
        if executable is None:
            raise FileNotFoundError(f"{LBZIP2} is not installed (apt install {LBZIP2})")
        self._process = subprocess.Popen(
            [executable, "-d", "-c", f"-n{max(threads, 1)}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._chunk = chunk
        self._feed_error: BaseException | None = None
        self._head = b""  # the file's first bytes
        self._tail = b""  # the file's last bytes, once it was read to its end
        self._fed_all = False
        self._feeder = threading.Thread(
            target=self._feed, args=(raw,), name="lbzip2-feed", daemon=True
        )
        self._feeder.start()

    def _feed(self, raw: IO[bytes]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            while data := raw.read(self._chunk):
                if len(self._head) < _HEAD:
                    self._head = (self._head + data)[:_HEAD]
                self._tail = (self._tail + data[-_TAIL:])[-_TAIL:]
                stdin.write(data)
            self._fed_all = True
        except BrokenPipeError:
            pass  # lbzip2 stopped reading: it failed (its exit status says how) or was stopped
        except BaseException as error:  # noqa: BLE001 - raised by the read that ends the data
            self._feed_error = error
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def readable(self) -> bool:
        """Always readable."""
        return True

    def read1(self, size: int = -1) -> bytes:
        """Up to ``size`` decompressed bytes (``chunk`` when negative); b"" at the end.

        Raises:
            EOFError: the file ends inside a bz2 stream.
            OSError: the data is corrupt, or reading the file failed.
        """
        stdout = self._process.stdout
        assert stdout is not None
        data = stdout.read1(self._chunk if size is None or size < 0 else size)
        if not data:
            self._check_end()
        return data

    read = read1

    def _check_end(self) -> None:
        """Raise what stopped the data, if anything did; else lbzip2 read the whole file."""
        self._feeder.join()
        status = self._process.wait()
        if self._feed_error is not None:
            raise self._feed_error
        if status == 0:
            return
        detail = _last_line(self._process.stderr.read() if self._process.stderr else b"")
        if self._fed_all and _NOT_BZ2 not in detail and self._cut_short():
            raise EOFError("the file ends inside a bz2 stream")
        raise OSError(f"{LBZIP2}: {detail}")

    def _cut_short(self) -> bool:
        """Whether the file, which lbzip2 failed on, is a bz2 file whose end is missing.

        lbzip2 reports most truncations as bad block headers, as it does damaged data: the
        file's first block header and its end tell the two apart.
        """
        return starts_a_stream(self._head) and not ends_a_stream(self._tail)

    def close(self) -> None:
        """Stop lbzip2 if it is still running, and wait for it and the feeding thread."""
        if self._process.poll() is None:
            self._process.kill()
        self._feeder.join()
        self._process.wait()
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Lbzip2Stream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def starts_a_stream(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes, up to 10) begins as a bz2 stream does."""
    return any(start.startswith(head[:_HEAD]) for start in _STARTS)


def ends_a_stream(tail: bytes) -> bool:
    """Whether ``tail`` (a file's last bytes) is the end of a bz2 stream."""
    bits = int.from_bytes(tail[-_TAIL:], "big")
    return any((bits >> (pad + 32)) & (2**48 - 1) == _STREAM_END for pad in range(8))


def _last_line(stderr: bytes) -> str:
    """lbzip2's complaint, without its name and the input's name."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"]
    # lbzip2 says "lbzip2: stdin: compressed data error: bad block header magic".
    return lines[-1].removeprefix(f"{LBZIP2}: ").removeprefix("stdin: ")
