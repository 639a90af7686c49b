"""The bz2 stream gives BZ2File's bytes and errors, whatever its step sizes."""

import bz2
import io
import random

import pytest

from components.data.bz2stream import Bz2Stream

_RNG = random.Random(7)
# Text-like data that compresses into more than one 100 KB block at level 1.
PAYLOAD = b" ".join(_RNG.choice([b"alpha", b"beta", b"gamma", b"\xce\xb4"]) for _ in range(60_000))


def _read_all(data: bytes, chunk: int, size: int) -> bytes:
    stream = Bz2Stream(io.BytesIO(data), chunk=chunk)
    return b"".join(iter(lambda: stream.read1(size), b""))


@pytest.mark.parametrize(("chunk", "size"), [(1, 1000), (100, 7), (4096, 65536), (1 << 20, -1)])
def test_single_stream_gives_the_decompressed_bytes(chunk, size):
    assert _read_all(bz2.compress(PAYLOAD, 1), chunk, size) == PAYLOAD


@pytest.mark.parametrize("chunk", [3, 5000, 1 << 20])
def test_every_stream_of_a_multistream_file_is_read(chunk):
    parts = [PAYLOAD[:1000], b"", PAYLOAD[1000:50_000], PAYLOAD[50_000:]]
    data = b"".join(bz2.compress(part) for part in parts)
    assert _read_all(data, chunk, 4096) == PAYLOAD


def test_output_steps_stay_within_the_size_asked():
    stream = Bz2Stream(io.BytesIO(bz2.compress(PAYLOAD)), chunk=1 << 20)
    steps = list(iter(lambda: stream.read1(10_000), b""))
    assert max(map(len, steps)) <= 10_000
    assert b"".join(steps) == PAYLOAD


def test_trailing_data_that_is_not_bz2_is_ignored_like_bz2file():
    data = bz2.compress(PAYLOAD) + b"\x00" * 300
    assert _read_all(data, 1000, 4096) == PAYLOAD == bz2.BZ2File(io.BytesIO(data)).read()


def test_a_stream_that_ends_early_raises_eoferror_after_its_bytes():
    data = bz2.compress(PAYLOAD, 1)
    stream = Bz2Stream(io.BytesIO(data[: len(data) * 3 // 4]), chunk=1000)
    received = []
    error = None
    while error is None:
        try:
            received.append(stream.read1(4096))
        except EOFError as raised:
            error = raised
    assert "ended before the end-of-stream marker" in str(error)
    assert len(b"".join(received)) > 100_000  # the complete blocks before the cut
    assert PAYLOAD.startswith(b"".join(received))


def test_corrupt_data_raises_oserror():
    data = bytearray(bz2.compress(PAYLOAD))
    data[200:400] = bytes(200)
    with pytest.raises(OSError, match="Invalid data stream"):
        _read_all(bytes(data), 1 << 20, 4096)
