r"""Words as numpy arrays, against their Python definitions (str.split, the \w+ regex)."""

import random
import re
import sys

import numpy as np
import pytest

from components.data import wordarrays
from components.data.stopwords import stop_word_ratio
from components.data.wordarrays import TextArrays, hash_set, hash_strings

WORDS = re.compile(r"\w+")
# A white-space separated word without a letter: digits, "_", punctuation or symbols only.
LETTERLESS = re.compile(r"\s(?:[^\w\s]|[\d_])+(?=\s)")
# ASCII, Latin-1 and Latin Extended, general punctuation and spaces, and characters whose
# class is easy to get wrong: a dotted capital I that lowers to two characters, a capital
# sigma that lowers by context, superscript and fraction digits, Arabic and Devanagari digits
# and vowel signs, lone surrogates, CJK, emoji, a combining accent, zero-width and format
# characters, line and paragraph separators.
ALPHABET = [chr(c) for c in [*range(0x250), *range(0x2000, 0x2070)]] + [
    chr(c)
    for c in (0x3000, 0x85, 0x130, 0x3A3, 0x3A3, 0x3C3, 0x391, 0x2160, 0x660, 0x966, 0x93F)
    + (0xD800, 0xDFFF, 0x4E00, 0x1F600, 0x10400, 0x301, 0x200B, 0xFEFF, 0x2028, 0x2029, 0xAD)
]


def _same_words(words, expected):
    """Whether ``words`` (a Words) are the strings ``expected``: lengths and hashes."""
    assert words.lengths.tolist() == list(map(len, expected))
    assert words.hashes.tolist() == hash_strings(expected).tolist()
    return True


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The cat's 2 hats, (etc.)", ["the", "cat", "s", "2", "hats", "etc"]),
        ("naïve café—Über\u00a0straße", ["naïve", "café", "über", "straße"]),
        ("x² + ½ – snake_case", ["x²", "½", "snake_case"]),  # numerics are word characters
        ("中文 «guillemets» 😀 emoji", ["中文", "guillemets", "emoji"]),
        ("İstanbul", ["i", "stanbul"]),  # lower() gives i + a combining dot, not a word char
        ("ΟΔΥΣΣΕΥΣ", ["οδυσσευς"]),  # the last capital sigma lowers to a final sigma
        ("a\ud800b", ["a", "b"]),
        ("", []),
    ],
)
def test_lower_words_examples(text, words):
    assert _same_words(TextArrays(text).lower_words, words)


def test_words_equal_their_python_definitions_on_random_text():
    rng = random.Random(7)
    alphabet = ALPHABET + [" ", "\n", "\t"] * 20
    for i in range(5000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        if i % 4 == 0:  # ASCII text takes a path of its own
            text = text.encode("ascii", "ignore").decode()
        arrays = TextArrays(text)
        assert _same_words(arrays.words, text.split()), repr(text)
        assert _same_words(arrays.lower_words, WORDS.findall(text.lower())), repr(text)
        assert arrays.letterless_words() == len(LETTERLESS.findall(f" {text} ")), repr(text)


@pytest.mark.parametrize("group_chars", [1 << 16, 50], ids=["one-group", "groups"])
@pytest.mark.parametrize("kind", ["ascii", "unicode", "mixed"])
def test_a_batch_measured_at_once_equals_its_texts_measured_one_by_one(
    kind, group_chars, monkeypatch
):
    monkeypatch.setattr(wordarrays, "GROUP_CHARS", group_chars)
    rng = random.Random(11)
    alphabet = ALPHABET + [" ", "\n", "\t"] * 20
    for _ in range(200):
        texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 60))) for _ in range(8)]
        if kind != "unicode":  # ASCII texts take a path of their own, alone or in a batch
            cut = len(texts) if kind == "ascii" else len(texts) // 2
            texts[:cut] = [text.encode("ascii", "ignore").decode() for text in texts[:cut]]
        texts.append("")
        lower = wordarrays.batch_lower_words(texts)
        for text, batched, lower_words in zip(
            texts, wordarrays.batch_arrays(texts), lower, strict=True
        ):
            alone = TextArrays(text)
            assert _same_spans(lower_words, alone.lower_words)
            assert batched.text == text
            assert batched.classes.tolist() == alone.classes.tolist()
            for name in ("words", "lower_words"):
                ours, theirs = getattr(batched, name), getattr(alone, name)
                assert ours.starts.tolist() == theirs.starts.tolist(), repr(text)
                assert ours.ends.tolist() == theirs.ends.tolist(), repr(text)
                assert ours.hashes.tolist() == theirs.hashes.tolist(), repr(text)
            assert batched.letterless_words() == alone.letterless_words()
            assert batched.digest() == alone.digest()


def _same_spans(ours, theirs):
    return all(
        getattr(ours, name).tolist() == getattr(theirs, name).tolist()
        for name in ("starts", "ends", "hashes")
    )


def test_words_of_a_set_are_counted_for_a_batch_as_one_by_one():
    rng = random.Random(3)
    vocabulary = ["the", "of", "and", "cat", "dog", "ôde", "Ünter"]
    stops = hash_set(frozenset(["the", "of", "and", "ünter"]))
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 30))) for _ in range(300)]
    words = wordarrays.batch_lower_words(texts)
    expected = [int(np.count_nonzero(w.among(stops))) for w in words]
    assert wordarrays.count_among(words, stops) == expected
    assert sum(expected) > 0
    assert 0 in expected  # the empty texts are there
    assert wordarrays.count_among(words, hash_set(frozenset())) == [0] * len(words)
    assert wordarrays.count_among([], stops) == []


def test_distinct_words_of_a_set_are_counted_for_a_batch_as_one_by_one():
    rng = random.Random(5)
    vocabulary = ["the", "of", "and", "that", "cat", "dog", "be", "to", "with", "ôde"]
    stops = hash_set(frozenset(["the", "of", "and", "that", "be", "to", "with", "have"]))
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(0, 30))) for _ in range(300)]
    words = [arrays.lower_words for arrays in wordarrays.batch_arrays(texts)]
    expected = [np.unique(w.hashes[w.among(stops)]).size for w in words]
    assert wordarrays.distinct_among(words, stops) == expected
    assert max(expected) > 1  # the cases are there
    assert min(expected) == 0
    assert wordarrays.distinct_among(words, hash_set(frozenset())) == [0] * len(words)


def test_distinct_strings_get_distinct_hashes():
    alphabet = ["a", "b", "é", "\x00", " ", "中", "😀"]
    strings = [""] + alphabet + [x + y for x in alphabet for y in alphabet]
    strings += [x + y + z for x in alphabet for y in alphabet for z in alphabet]
    assert len(set(hash_strings(strings).tolist())) == len(strings)


def test_a_word_hashes_alike_wherever_it_is_in_a_long_text():
    text = "river " + "x" * 300_000 + " river Straße " + "é" * 100_000 + " river straße"
    arrays = TextArrays(text)
    assert len(set(arrays.words.hashes[[0, 2, 5]].tolist())) == 1
    lower = arrays.lower_words.hashes
    assert lower[3] == lower[6] == hash_strings(["straße"])[0]


def test_digest_ignores_case_punctuation_and_white_space_only():
    assert (
        TextArrays("The cat, sat.\n\nOn mats!").digest()
        == TextArrays("the CAT sat on   mats").digest()
    )
    assert TextArrays("the cat sat").digest() != TextArrays("the cat sat on").digest()
    assert TextArrays("the cat sat").digest() != TextArrays("the sat cat").digest()
    assert TextArrays("").digest() != TextArrays("a").digest()


def test_stop_words_are_found_by_hash():
    stops = frozenset({"the", "of", "und"})
    words = TextArrays("The end of THE story, theory und so").lower_words
    assert words.among(hash_set(stops)).tolist() == [1, 0, 1, 1, 0, 0, 1, 0]
    assert stop_word_ratio(words, stops) == pytest.approx(4 / 8)
    assert stop_word_ratio(TextArrays("").lower_words, stops) == 0.0
    assert not TextArrays("the").lower_words.among(hash_set(frozenset())).any()
    assert hash_set(stops).dtype == np.uint64
    assert not hash_set(stops).flags.writeable


def test_lower_casing_keeps_word_characters_unless_flagged():
    """lower_words reuses a text's word classes unless a character is flagged COMPLEX_LOWER."""
    every = np.arange(sys.maxunicode + 1)
    every = every[(every < 0xD800) | (every > 0xDFFF)]  # no surrogates
    flags = wordarrays.classes(every)
    simple = every[(flags & wordarrays.COMPLEX_LOWER) == 0]
    lowered = wordarrays.classes(wordarrays._LOWER[simple])
    word = (flags[(flags & wordarrays.COMPLEX_LOWER) == 0] & wordarrays.WORD) != 0
    assert np.array_equal((lowered & wordarrays.WORD) != 0, word)
    assert wordarrays.classes(np.array([0x130]))[0] & wordarrays.COMPLEX_LOWER  # "İ": two chars


@pytest.mark.parametrize("members", [3, 16, 17, 60])
def test_membership_in_small_and_large_sets_matches_a_python_set(members):
    """Sets up to 16 members are compared member by member, larger ones searched."""
    rng = random.Random(members)
    vocabulary = [f"w{i}" for i in range(100)]
    chosen = frozenset(rng.sample(vocabulary, members))
    text = " ".join(rng.choices(vocabulary, k=500))
    words = TextArrays(text).lower_words
    assert words.among(hash_set(chosen)).tolist() == [w in chosen for w in text.split()]
    distinct = len({w for w in text.split() if w in chosen})
    assert wordarrays.distinct_among([words], hash_set(chosen)) == [distinct]
    assert wordarrays.count_among([words], hash_set(chosen)) == [
        sum(w in chosen for w in text.split())
    ]
