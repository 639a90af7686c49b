import struct

import numpy as np
import pytest

from components.core.errors import ArtifactError
from components.data.tokenbin import (
    HEADER_SIZE,
    MAGIC,
    VERSION,
    dtype_for,
    open_tokens,
    write_tokens,
)


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [(300, np.uint16), (65536, np.uint16), (65537, np.uint32), (200_000, np.uint32)],
)
def test_round_trip_picks_the_smallest_dtype(tmp_path, vocab_size, dtype):
    chunks = [np.array([0, 1, vocab_size - 1]), np.array([], dtype=np.int64), np.array([7])]
    path = tmp_path / "t.bin"
    assert write_tokens(path, iter(chunks), vocab_size) == 4
    token_file = open_tokens(path)
    assert token_file.tokens.dtype == dtype == token_file.dtype == dtype_for(vocab_size)
    assert isinstance(token_file.tokens, np.memmap)
    assert token_file.tokens.tolist() == [0, 1, vocab_size - 1, 7]
    assert (token_file.vocab_size, token_file.n_tokens, token_file.version) == (vocab_size, 4, 1)
    assert path.stat().st_size == HEADER_SIZE + 4 * np.dtype(dtype).itemsize


def test_header_fields_are_little_endian_at_fixed_offsets(tmp_path):
    path = tmp_path / "t.bin"
    write_tokens(path, [np.arange(5), np.arange(5, 12)], 70_000)
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    assert struct.unpack_from("<IIQQ", raw, 8) == (VERSION, 4, 70_000, 12)
    assert raw[8 + struct.calcsize("<IIQQ") : HEADER_SIZE] == b"\0" * 32
    assert np.frombuffer(raw[HEADER_SIZE:], dtype="<u4").tolist() == list(range(12))


def test_large_stream_keeps_order_and_is_read_only(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 512, size=int(n)) for n in rng.integers(0, 5000, size=50)]
    path = tmp_path / "t.bin"
    assert write_tokens(path, chunks, 512) == sum(c.size for c in chunks)
    tokens = open_tokens(path).tokens
    assert np.array_equal(tokens, np.concatenate(chunks))
    with pytest.raises(ValueError, match="read-only"):
        tokens[0] = 1


def test_empty_stream_is_a_valid_file(tmp_path):
    path = tmp_path / "t.bin"
    assert write_tokens(path, [], 300) == 0
    assert open_tokens(path).n_tokens == 0
    assert path.stat().st_size == HEADER_SIZE


@pytest.mark.parametrize(
    "chunk",
    [np.array([5, 300]), np.array([-1, 2]), np.array([1.0, 2.0])],
    ids=["too-large", "negative", "float"],
)
def test_bad_ids_are_refused_and_nothing_is_left(tmp_path, chunk):
    (tmp_path / "t.bin").write_bytes(b"previous")
    with pytest.raises(ValueError, match="token ids"):
        write_tokens(tmp_path / "t.bin", [np.array([1, 2]), chunk], 300)
    # The previous file is untouched and no temporary is left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]
    assert (tmp_path / "t.bin").read_bytes() == b"previous"


def _corrupt(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _corrupt(p, 0, b"NOTMAGIC"), "not a wikilm token file"),
        (lambda p: _corrupt(p, 8, struct.pack("<I", 2)), "version 2; this wikilm reads version 1"),
        (lambda p: _corrupt(p, 12, struct.pack("<I", 3)), "unknown dtype code 3"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0\0"), "truncated or corrupt"),
        (lambda p: _corrupt(p, 24, struct.pack("<Q", 11)), "announces 11 tokens"),
        (lambda p: p.write_bytes(b"WIKI"), "not a wikilm token file"),
        (lambda p: p.unlink(), "not found"),
    ],
    ids=["magic", "version", "dtype", "truncated", "padded", "count", "short-header", "missing"],
)
def test_damaged_files_are_rejected_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "t.bin"
    write_tokens(path, [np.arange(10)], 300)
    damage(path)
    with pytest.raises(ArtifactError, match=message) as err:
        open_tokens(path)
    assert str(path) in str(err.value)
    assert "rerun 'tokenize'" in str(err.value)
    assert "\n" not in str(err.value)
