import struct

import numpy as np
import pytest

from components.errors import ArtifactError
from components.tokenbin import HEADER_SIZE, dtype_for, open_tokens, write_tokens


@pytest.mark.parametrize(
    ("vocab_size", "dtype"),
    [(300, np.uint16), (65536, np.uint16), (65537, np.uint32), (200_000, np.uint32)],
)
def test_round_trip_picks_the_smallest_dtype(tmp_path, vocab_size, dtype):
    chunks = [np.array([0, 1, vocab_size - 1]), np.array([], dtype=np.int64), np.array([7])]
    path = tmp_path / "t.bin"
    assert write_tokens(path, chunks, vocab_size) == 4
    token_file = open_tokens(path)
    assert token_file.tokens.dtype == dtype == dtype_for(vocab_size)
    assert token_file.tokens.tolist() == [0, 1, vocab_size - 1, 7]
    assert (token_file.vocab_size, token_file.n_tokens, token_file.version) == (vocab_size, 4, 1)
    assert path.stat().st_size == HEADER_SIZE + 4 * np.dtype(dtype).itemsize


def test_out_of_vocabulary_ids_are_refused_and_nothing_is_left(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        write_tokens(tmp_path / "t.bin", [np.array([5, 300])], 300)
    assert list(tmp_path.iterdir()) == []


def _corrupt(path, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _corrupt(p, 0, b"NOTMAGIC"), "not a wikilm token file"),
        (lambda p: _corrupt(p, 8, struct.pack("<I", 2)), "format version 2"),
        (lambda p: _corrupt(p, 12, struct.pack("<I", 3)), "unknown token size"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated"),
        (lambda p: p.write_bytes(b"WIKI"), "not a wikilm token file"),
        (lambda p: p.unlink(), "not found"),
    ],
    ids=["magic", "version", "itemsize", "truncated", "short-header", "missing"],
)
def test_damaged_files_are_rejected_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "t.bin"
    write_tokens(path, [np.arange(10)], 300)
    damage(path)
    with pytest.raises(ArtifactError, match=message) as caught:
        open_tokens(path)
    assert str(path) in str(caught.value)
