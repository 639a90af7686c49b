import random
from collections import Counter

import pytest

from components.config import CleanParams
from components.errors import ConfigError
from components.filters import (
    TextView,
    duplicate_ngram_char_fraction,
    first_failure,
    quality_filters,
    repetition_filters,
    top_ngram_char_fraction,
)
from components.stopwords import GOPHER_STOP_WORDS, stop_words
from tests.conftest import make_params

PROSE = (
    "The river runs through the old town and past the market, where farmers have sold "
    "their grain with pride since the middle ages. In the nineteenth century a railway "
    "reached the valley, and the town grew quickly along the banks of the river.\n\n"
    "Today the castle on the hill houses a museum of local history, with collections of "
    "tools, costumes and paintings that show how people lived and worked in the region, "
    "and a library that is open to visitors on most days of the week."
)
# Relaxed thresholds for the rules a row is not about, so each row trips one rule only.
RELAXED = {"min_words": 5, "min_punctuated_lines_fraction": 0.0, "max_short_lines_fraction": 1.0}


def _paragraphs(*parts):
    return "\n\n".join(parts)


def _distinct_prose(n):
    """Paragraphs of varied prose without repeated lines or n-grams."""
    rng = random.Random(n)
    words = [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
    ]
    return [
        " ".join(rng.choice(words) + str(rng.randrange(10**6)) for _ in range(12)) + " the and of."
        for _ in range(n)
    ]


_BULLETS = [f"\u2022 bulleted entry number {i} within the longer list." for i in range(20)]
_TRAILING = [
    f"this particular sentence number {i} of the whole text slowly trails away into silence\u2026"
    for i in range(20)
]
CASES = [
    ("keeps-prose", PROSE, {}, None),
    ("too-few-words", "The cat and the dog.", {}, "too_few_words"),
    ("too-many-words", PROSE, {"min_words": 5, "max_words": 10}, "too_many_words"),
    ("short-words", "a an to of " * 20 + "the and.", RELAXED, "mean_word_length_out_of_range"),
    (
        "long-words",
        "incomprehensibilities " * 20 + "the and.",
        RELAXED,
        "mean_word_length_out_of_range",
    ),
    ("hashes", PROSE + " #tag" * 12, {}, "too_many_symbols"),
    ("ellipses", PROSE + " etc..." * 15, {}, "too_many_symbols"),
    ("bullets", _paragraphs(*_BULLETS), RELAXED, "too_many_bullet_lines"),
    (
        "ellipsis-lines",
        _paragraphs(*_TRAILING),
        {**RELAXED, "max_symbol_word_ratio": 1},
        "too_many_ellipsis_lines",
    ),
    ("numbers", "1234 5678 9012 3456 " * 10 + "the and of with.", RELAXED, "too_few_alpha_words"),
    (
        "unpunctuated-lines",
        _paragraphs(*[f"Name Surname{i} the and of" for i in range(20)]),
        {"min_words": 5},
        "too_few_punctuated_lines",
    ),
    (
        "short-lines",
        _paragraphs(*[f"Entry {i} of the and." for i in range(20)]),
        {"min_words": 5},
        "too_many_short_lines",
    ),
    (
        "one-stop-word",
        "Rivers run through valleys " * 15 + "the end.",
        RELAXED,
        "too_few_stop_words",
    ),
    (
        "duplicate-lines",
        _paragraphs(*_distinct_prose(6), *(["The same line of the text."] * 5)),
        RELAXED,
        "duplicate_lines",
    ),
    (
        "duplicate-line-chars",
        _paragraphs(*_distinct_prose(6), *([" ".join(_distinct_prose(8))] * 2)),
        RELAXED,
        "duplicate_line_chars",
    ),
    ("top-2gram", "the river " * 40 + "and of.", RELAXED, "top_2gram_repetition"),
    (
        "duplicate-5grams",
        " ".join(_distinct_prose(4)) + " " + " ".join(_distinct_prose(4)),
        RELAXED,
        "duplicate_5gram_repetition",
    ),
]


@pytest.mark.parametrize(
    ("text", "overrides", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_drops_with_its_stable_reason(text, overrides, reason):
    cfg = CleanParams(**overrides)
    assert first_failure(TextView(text), quality_filters(cfg) + repetition_filters(cfg)) == reason


def test_stop_word_rule_counts_distinct_words():
    cfg = CleanParams(**RELAXED)
    one = "Rivers run through valleys the " * 10 + "end."
    two = "Rivers run through valleys the " * 10 + "and end."
    assert first_failure(TextView(one), quality_filters(cfg)) == "too_few_stop_words"
    assert first_failure(TextView(two), quality_filters(cfg)) is None
    assert first_failure(
        TextView(two), quality_filters(CleanParams(**RELAXED, min_stop_words=3))
    ) == ("too_few_stop_words")


def _reference_top(words, n):
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    count = max(counts.values())
    if count < 2:
        return 0.0
    longest = max(sum(map(len, gram)) for gram, c in counts.items() if c == count)
    return longest * count / sum(map(len, words))


def _reference_duplicate(words, n):
    seen, covered = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / sum(map(len, words))


@pytest.mark.parametrize("seed", range(50))
def test_ngram_fractions_match_a_reference(seed):
    rng = random.Random(seed)
    vocabulary = ["a", "bb", "ccc", "dddd", "the", "river", "of", "x"][: rng.randint(2, 8)]
    words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 120))]
    view = TextView(" ".join(words))
    for n in range(2, 11):
        assert top_ngram_char_fraction(view, n) == pytest.approx(
            _reference_top(words, n), abs=1e-12
        )
        assert duplicate_ngram_char_fraction(view, n) == pytest.approx(
            _reference_duplicate(words, n), abs=1e-12
        )


def test_stop_word_lists():
    assert stop_words("en") == GOPHER_STOP_WORDS
    assert len(GOPHER_STOP_WORDS) == 8
    assert "und" in stop_words("de")
    assert "\u0438" in stop_words("bg")  # Bulgarian "and"
    assert "the" in stop_words("en", "stopwordsiso")


@pytest.mark.parametrize(
    ("clean", "key"),
    [
        ({"language": "xx"}, "clean.language"),
        ({"language": "de", "stop_words": "gopher"}, "clean.stop_words"),
    ],
)
def test_language_problems_are_config_errors(clean, key):
    with pytest.raises(ConfigError) as caught:
        make_params(clean=clean)
    assert any(p.startswith(key) for p in caught.value.problems)
