"""The lbzip2 stream gives the bz2 module's bytes and error types, and cleans up after itself."""

import bz2
import io
import random
import time

import psutil
import pytest

from components.data.lbzip2 import Lbzip2Stream, ends_a_stream, starts_a_stream
from tests.dumps import needs_lbzip2

_RNG = random.Random(11)
# Text-like data that compresses into several 100 KB blocks at level 1.
PAYLOAD = b" ".join(_RNG.choice([b"alpha", b"beta", b"gamma", b"\xce\xb4"]) for _ in range(150_000))


def _read_all(data: bytes, size: int = 65536, threads: int = 2) -> bytes:
    with Lbzip2Stream(io.BytesIO(data), threads, chunk=10_000) as stream:
        return b"".join(iter(lambda: stream.read1(size), b""))


def _read_until_error(data: bytes | io.BytesIO) -> tuple[bytes, BaseException]:
    """The bytes read before the error, and the error."""
    raw = io.BytesIO(data) if isinstance(data, bytes) else data
    received = []
    with Lbzip2Stream(raw, 2, chunk=10_000) as stream:
        try:
            while chunk := stream.read1(4096):
                received.append(chunk)
        except (EOFError, OSError) as error:
            return b"".join(received), error
    raise AssertionError("no error")


def _lbzip2_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if p.name() == "lbzip2"]


@needs_lbzip2
@pytest.mark.parametrize(("threads", "size"), [(1, 7), (2, 4096), (4, -1)])
def test_single_stream_gives_the_decompressed_bytes(threads, size):
    assert _read_all(bz2.compress(PAYLOAD, 1), size, threads) == PAYLOAD


@needs_lbzip2
def test_every_stream_of_a_multistream_file_is_read():
    parts = [PAYLOAD[:1000], b"", PAYLOAD[1000:500_000], PAYLOAD[500_000:]]
    assert _read_all(b"".join(bz2.compress(part) for part in parts)) == PAYLOAD


@needs_lbzip2
def test_output_steps_stay_within_the_size_asked():
    with Lbzip2Stream(io.BytesIO(bz2.compress(PAYLOAD)), 2) as stream:
        steps = list(iter(lambda: stream.read1(10_000), b""))
    assert max(map(len, steps)) <= 10_000
    assert b"".join(steps) == PAYLOAD


@needs_lbzip2
def test_trailing_data_that_is_not_bz2_is_ignored_like_the_bz2_module():
    data = bz2.compress(PAYLOAD) + b"\x00" * 300
    assert _read_all(data) == PAYLOAD == bz2.decompress(bz2.compress(PAYLOAD))


@needs_lbzip2
@pytest.mark.parametrize("keep", [0.3, 0.75, 0.999])
def test_a_file_that_ends_inside_a_stream_raises_eoferror(keep):
    data = bz2.compress(PAYLOAD, 1)
    received, error = _read_until_error(data[: int(len(data) * keep)])
    assert isinstance(error, EOFError)
    assert "ends inside a bz2 stream" in str(error)
    assert PAYLOAD.startswith(received)


@needs_lbzip2
def test_corrupt_data_raises_oserror_with_lbzip2s_reason():
    data = bytearray(bz2.compress(PAYLOAD, 1))
    data[len(data) // 2 : len(data) // 2 + 200] = bytes(200)  # the file still ends a stream
    _, error = _read_until_error(bytes(data))
    assert type(error) is OSError
    assert str(error).startswith("lbzip2: ")
    assert "error" in str(error)  # lbzip2's words: "compressed data error: ..."


@needs_lbzip2
def test_a_bz2_header_followed_by_garbage_is_corrupt_not_truncated():
    _, error = _read_until_error(b"BZh9" + bytes(range(7, 250)) * 8)
    assert type(error) is OSError
    assert str(error) == "lbzip2: compressed data error: bad block header magic"


def test_the_start_of_a_stream_is_recognised_in_a_file_cut_at_any_length():
    for data in (bz2.compress(PAYLOAD, 1), bz2.compress(b"", 9)):
        assert all(starts_a_stream(data[:cut]) for cut in range(12))
    assert not starts_a_stream(b"BZh0" + bz2.compress(PAYLOAD)[4:])
    assert not starts_a_stream(b"BZh9" + bytes(range(7, 13)))
    assert not starts_a_stream(b"<mediawiki>")


@needs_lbzip2
def test_data_that_is_not_bz2_raises_oserror():
    _, error = _read_until_error(b"<mediawiki>" * 100)
    assert type(error) is OSError
    assert str(error) == "lbzip2: not a valid bzip2 file"


class _FailingFile(io.BytesIO):
    """A file whose reads fail after its first ``good`` bytes, like a disk error."""

    def __init__(self, data: bytes, good: int) -> None:
        super().__init__(data)
        self.good = good

    def read(self, size=-1):
        if self.tell() >= self.good:
            raise OSError(5, "Input/output error")
        return super().read(min(size, self.good - self.tell()))


@needs_lbzip2
def test_an_error_reading_the_file_is_raised_at_the_end_of_the_data():
    data = bz2.compress(PAYLOAD, 1)
    received, error = _read_until_error(_FailingFile(data, len(data) // 2))
    assert str(error) == "[Errno 5] Input/output error"
    assert PAYLOAD.startswith(received)


@needs_lbzip2
def test_closing_early_stops_lbzip2_and_the_feeding_thread():
    data = bz2.compress(PAYLOAD * 4, 1)
    stream = Lbzip2Stream(io.BytesIO(data), 2, chunk=10_000)
    assert stream.read1(100)
    assert _lbzip2_children()
    started = time.perf_counter()
    stream.close()
    assert time.perf_counter() - started < 5
    assert _lbzip2_children() == []
    assert not stream._feeder.is_alive()


def test_the_end_of_a_stream_is_recognised_at_any_bit_offset():
    rng = random.Random(3)
    for _ in range(100):
        data = rng.randbytes(rng.randrange(0, 3000))
        packed = bz2.compress(data, rng.randint(1, 9))
        assert ends_a_stream(packed)
        assert not any(ends_a_stream(packed[:-cut]) for cut in range(1, 12))
