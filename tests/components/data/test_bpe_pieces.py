import logging
import random
from itertools import chain

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import normalizers, pre_tokenizers

from components.data import bpe_pieces
from components.data.bpe_pieces import (
    PieceEncoder,
    cuts_exactly,
    piece_hashes,
    piece_starts,
    utf8_bytes,
)
from components.data.params import TokenizeParams
from components.data.tokenization import train_tokenizer
from components.data.tokenizer_file import load_tokenizer
from components.data.wordarrays import span_hashes

# What a pre-tokenizer could treat differently: every kind of white space (tabs, non-breaking
# and thin spaces, separators that Python calls white space and Unicode does not), contractions,
# letters, digits, punctuation, multi-byte and astral characters, and the special tokens.
PARTS = [
    " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u2009", "\u3000", "\x1c", "\x85",
    "the", "The", "river", "town", "Naïve", "crème", "東京", "İstanbul", "ß", "😀", "a",
    "'s", "'re", "'ll", "don't", "’s", "1", "1,234.5", "2024", "٣", "½",
    ".", ",", "!", "?", "—", "(", ")", "[[", "}}", "=", "'", '"', "-", "_",
    "<|endoftext|>", "<|pad|>", "<|", "|>",
]  # fmt: skip


def _random_texts(rng, count, parts=PARTS):
    return ["".join(rng.choices(parts, k=rng.randint(0, 40))) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    corpus = _random_texts(rng, 2000) + ["The river runs through the old town. " * 5] * 50
    params = TokenizeParams(vocab_size=400, min_frequency=2)
    trained = train_tokenizer(corpus, params)
    assert trained.get_vocab_size() == 400
    return trained


def _expected(tokenizer, texts):
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [e.ids for e in encodings]


def _encoded(encoder, texts):
    result = encoder.encode(pa.array(texts, pa.string()))
    ends = np.cumsum(result.counts).tolist()
    return [
        result.ids[end - count : end].tolist()
        for end, count in zip(ends, result.counts, strict=True)
    ]


@pytest.mark.parametrize("capacity", [bpe_pieces.CAPACITY, 30], ids=["room", "full"])
def test_pieces_give_the_tokenizers_own_ids_on_random_text(tokenizer, capacity):
    encoder = PieceEncoder(tokenizer, capacity)
    rng = random.Random(1)
    for _ in range(30):  # batches after the first find pieces kept by earlier ones
        texts = [*_random_texts(rng, 40), ""]
        assert _encoded(encoder, texts) == _expected(tokenizer, texts)
    kept = encoder.kept
    assert kept == 30 if capacity == 30 else kept > 100


def test_pieces_give_the_tokenizers_own_ids_on_long_runs_of_white_space(tokenizer):
    spaces = [" ", "  ", "\n", " \n", "\n ", "\t", "\u00a0"]
    words = ["word", "x", ".", "'s", "7"]
    texts = ["".join(random.Random(i).choices(spaces + words, k=200)) for i in range(50)]
    texts += ["   ", " x", "x ", "x  ", " ", "x \n y", "a  b", "a\n  b", "\u00a0 a"]
    assert _encoded(PieceEncoder(tokenizer), texts) == _expected(tokenizer, texts)


def test_long_pieces_are_encoded_but_not_kept(tokenizer):
    encoder = PieceEncoder(tokenizer)
    long_word = "river" * 20  # one piece of 100 bytes
    texts = [long_word, f"the {long_word}", long_word]
    assert _encoded(encoder, texts) == _expected(tokenizer, texts)
    assert encoder.kept == 1  # "the"


def test_a_saved_and_loaded_tokenizer_still_cuts_exactly(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    loaded = load_tokenizer(path)
    texts = _random_texts(random.Random(2), 100)
    assert _encoded(PieceEncoder(loaded), texts) == _expected(tokenizer, texts)


def test_slices_and_missing_texts_of_an_arrow_array(tokenizer):
    texts = pa.array(["skip me", "The river", None, "", "runs, the town."], pa.string())
    result = PieceEncoder(tokenizer).encode(texts.slice(1))
    expected = _expected(tokenizer, ["The river", "", "", "runs, the town."])
    assert result.counts.tolist() == [len(ids) for ids in expected]
    assert result.ids.tolist() == list(chain.from_iterable(expected))
    empty = PieceEncoder(tokenizer).encode(pa.array([], pa.string()))
    assert (empty.ids.size, empty.counts.size) == (0, 0)


def test_pieces_start_at_each_text_and_before_a_space_after_a_visible_character():
    texts = pa.array(["ab cd", "  x y\t z", "", "é f", "z"], pa.string())
    data, starts = utf8_bytes(texts)
    assert data.tobytes() == "ab cd  x y\t zé fz".encode()
    assert starts.tolist() == [0, 5, 13, 13, 17]
    # Before the spaces after "ab" and "x"; not before the spaces that follow a space, a tab
    # or "é" (whose last byte is not ASCII).
    assert piece_starts(data, starts).tolist() == [0, 2, 5, 8, 13, 17]


def test_pieces_hashed_a_window_at_a_time_hash_as_in_one_go(monkeypatch):
    texts = pa.array(_random_texts(random.Random(4), 300), pa.string())
    data, text_starts = utf8_bytes(texts)
    starts = piece_starts(data, text_starts)
    ends = np.append(starts[1:], data.size)
    powers = bpe_pieces._CHECK_POWERS
    whole = span_hashes(data, starts, ends, powers)
    monkeypatch.setattr(bpe_pieces, "_WINDOW", 64)
    assert data.size > 100 * 64  # many windows
    assert np.array_equal(piece_hashes(data, starts, ends, powers), whole)
    assert np.unique(whole).size > 100


@pytest.mark.parametrize(
    "change",
    [
        lambda t: setattr(t, "normalizer", normalizers.Lowercase()),
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()),
        lambda t: setattr(t, "encode_special_tokens", False),
        lambda t: t.add_tokens(["river town"]),
    ],
    ids=["normalizer", "prefix-space", "other-pre-tokenizer", "special-tokens", "added-token"],
)
def test_a_tokenizer_that_does_not_cut_at_spaces_is_refused(tokenizer, tmp_path, change):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    changed = load_tokenizer(path)
    assert cuts_exactly(changed)
    change(changed)
    assert not cuts_exactly(changed)
    with pytest.raises(ValueError, match="not a plain byte-level BPE tokenizer"):
        PieceEncoder(changed)


def test_colliding_keys_fall_back_to_the_tokenizer(tokenizer, monkeypatch, caplog):
    hashes = bpe_pieces.span_hashes

    def colliding(data, starts, ends, powers):
        found = hashes(data, starts, ends, powers)
        return found * np.uint64(0) if powers is bpe_pieces._KEY_POWERS else found

    monkeypatch.setattr(bpe_pieces, "span_hashes", colliding)
    encoder = PieceEncoder(tokenizer)
    caplog.set_level(logging.WARNING, logger=bpe_pieces.__name__)
    one, other = ["river"], ["The town, the river."]
    assert _encoded(encoder, one) == _expected(tokenizer, one)  # one distinct piece: kept
    assert not caplog.records
    assert _encoded(encoder, other) == _expected(tokenizer, other)
    assert "two pieces of a batch share a key" in caplog.text
    assert _encoded(encoder, ["town"]) == _expected(tokenizer, ["town"])
    assert "a piece shares its key with a kept piece" in caplog.text
