"""The read-ahead stream: same bytes, errors where they happened, and a thread that stops."""

import io
import threading

import pytest

from components.data.readahead import ReadAhead


class _Failing(io.RawIOBase):
    """Yields ``good`` bytes, then raises EOFError (like a truncated bz2 stream)."""

    def __init__(self, good: bytes) -> None:
        self.good = io.BytesIO(good)

    def read(self, size: int = -1) -> bytes:
        data = self.good.read(size)
        if not data:
            raise EOFError("compressed stream ends early")
        return data


@pytest.mark.parametrize("size", [1, 7, 4096, -1])
def test_reads_the_same_bytes_in_any_read_size(size):
    payload = bytes(range(256)) * 1000
    with ReadAhead(io.BytesIO(payload), chunk=1000) as stream:
        parts = iter(lambda: stream.read(size), b"")
        assert b"".join(parts) == payload
        assert stream.read(10) == b""


def test_a_read_gathers_the_pieces_read_ahead_up_to_its_size():
    with ReadAhead(io.BytesIO(b"z" * 10_000), chunk=1000) as stream:
        assert stream.read(4096) == b"z" * 4096
        assert stream.read(10_000) == b"z" * 5904


def test_an_error_is_raised_after_the_bytes_before_it():
    with ReadAhead(_Failing(b"x" * 2500), chunk=1000) as stream:
        assert stream.read(5000) == b"x" * 2500
        with pytest.raises(EOFError, match="ends early"):
            stream.read(1)
        assert stream.read(1) == b""


def test_close_stops_a_reader_blocked_on_a_full_queue():
    before = threading.active_count()
    stream = ReadAhead(io.BytesIO(b"y" * 100_000), chunk=10, depth=2)
    assert stream.read(5) == b"yyyyy"
    stream.close()
    assert threading.active_count() == before
