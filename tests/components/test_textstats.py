"""Per-document text statistics: the word splitter against its regular-expression definition."""

import random
import re

import pytest

from components.textstats import lower_words

WORDS = re.compile(r"\w+")
# ASCII, Latin-1 and Latin Extended, general punctuation and spaces, and characters whose
# class is easy to get wrong: a dotted capital I that lowers to two characters, superscript
# and fraction digits, Arabic and Devanagari digits and vowel signs, lone surrogates, CJK,
# emoji, a combining accent, zero-width and format characters, line and paragraph separators.
ALPHABET = [chr(c) for c in [*range(0x250), *range(0x2000, 0x2070)]] + [
    chr(c)
    for c in (0x3000, 0x85, 0x130, 0x2160, 0x660, 0x966, 0x93F, 0xD800, 0xDFFF, 0x4E00)
    + (0x1F600, 0x10400, 0x301, 0x200B, 0xFEFF, 0x2028, 0x2029, 0x00AD)
]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("The cat's 2 hats, (etc.)", ["the", "cat", "s", "2", "hats", "etc"]),
        ("naïve café—Über\u00a0straße", ["naïve", "café", "über", "straße"]),
        ("x² + ½ – snake_case", ["x²", "½", "snake_case"]),  # numerics are word characters
        ("中文 «guillemets» 😀 emoji", ["中文", "guillemets", "emoji"]),
        ("İstanbul", ["i", "stanbul"]),  # lower() gives i + a combining dot, not a word char
        ("a\ud800b", ["a", "b"]),
        ("", []),
    ],
)
def test_lower_words_examples(text, words):
    assert lower_words(text) == words


def test_lower_words_equals_the_regular_expression_on_random_text():
    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(rng.choices(ALPHABET, k=rng.randint(0, 60)))
        assert lower_words(text) == WORDS.findall(text.lower()), repr(text)
