"""Quality and repetition filters: one table row per rule, and the n-gram statistics."""

import random
import string
from itertools import islice

import pytest
import stopwordsiso

from components.core.errors import ConfigError
from components.data.assess import normal_lines
from components.data.filters import TextView, failures, first_failure, quality_filters
from components.data.params import CleanParams, RepetitionParams
from components.data.stopwords import GOPHER_STOP_WORDS, stop_words
from tests.conftest import make_params

PROSE = (
    "The river runs through the old town and past the market, where farmers have sold "
    "their grain with pride since the middle ages. In the nineteenth century a railway "
    "reached the valley, and the town grew quickly along the banks of the river.\n\n"
    "Today the castle on the hill houses a museum of local history, with collections of "
    "tools, costumes and paintings that show how people lived and worked in the region, "
    "and a library that is open to visitors on most days of the week."
)
DEFAULT_DUPLICATE_NGRAMS = RepetitionParams().duplicate_ngram_char_fraction
NO_NGRAM_RULES = {"top_ngram_char_fraction": {}, "duplicate_ngram_char_fraction": {}}
NO_LINE_RULES = {"duplicate_line_fraction": 1, "duplicate_line_char_fraction": 1}


def _vocab(count, seed=0, lengths=(4, 8)):
    """``count`` distinct made-up lower-case words, none of them a Gopher stop word."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < count:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(*lengths)))
        if word not in GOPHER_STOP_WORDS:
            words[word] = None
    return list(words)


def _lines(count, seed=0, per_line=10, glue=("The", "and"), end="."):
    """Distinct prose-like lines, ``glue[0] w w w w w glue[1] w w w w w.``.

    Every content word occurs once in the whole set, so no word n-gram (n >= 2) repeats, and
    the glue words supply the stop words.
    """
    words = iter(_vocab(count * per_line, seed))
    half = per_line // 2
    lines = []
    for _ in range(count):
        first, second = " ".join(islice(words, half)), " ".join(islice(words, per_line - half))
        lines.append(f"{glue[0]} {first} {glue[1]} {second}{end}")
    return lines


def _paragraphs(*parts):
    return "\n\n".join(parts)


def _with_words_inside(lines, extra):
    """Insert one word of ``extra`` into the middle of successive lines (cycling)."""
    out = [line.split() for line in lines]
    for i, word in enumerate(extra):
        words = out[i % len(out)]
        words.insert(len(words) // 2, word)
    return [" ".join(words) for words in out]


def _repeated_phrase(phrase_words, filler_words, seed, filler_length=8):
    """A paragraph with a phrase twice, separated and surrounded by distinct filler words."""
    phrase = " ".join(_vocab(phrase_words, seed + 100, (7, 7)))
    filler = _vocab(filler_words, seed, (filler_length, filler_length))
    third = len(filler) // 3
    parts = [
        "The",
        *filler[:third],
        phrase,
        "and",
        *filler[third : 2 * third],
        phrase,
        *filler[2 * third :],
    ]
    return " ".join(parts) + "."


def _top_ngram_text(gram, groups, distinct_per_group):
    """``gram`` repeated ``groups`` times, each followed by distinct words."""
    filler = iter(_vocab(groups * distinct_per_group, 7, (8, 8)))
    body = [f"{gram} {' '.join(islice(filler, distinct_per_group))}" for _ in range(groups)]
    return "The " + " ".join(body) + " and of."


SHORT = "See below."  # a short line: its repeats add no 5-gram and little to the top n-grams
LONG_LINE = _lines(1, seed=5, per_line=40)[0]
CASES = [
    # (id, text, params of the row, expected reason, overrides that switch the rule off)
    ("keeps-english-prose", PROSE, {}, None, None),
    ("keeps-generated-prose", _paragraphs(*_lines(6)), {}, None, None),
    (
        "too-few-words",
        "The cat and the dog sat with the owner.",
        {},
        "too_few_words",
        {"min_words": 1},
    ),
    (
        "too-many-words",
        _paragraphs(*_lines(6)),
        {"max_words": 60},
        "too_many_words",
        {"max_words": 100},
    ),
    (
        "short-words",
        "The " + " ".join(_vocab(60, 1, (1, 2))) + " and of.",
        {},
        "mean_word_length_out_of_range",
        {"min_mean_word_length": 0},
    ),
    (
        "long-words",
        "The " + " ".join(_vocab(50, 2, (12, 16))) + " and of.",
        {},
        "mean_word_length_out_of_range",
        {"max_mean_word_length": 100},
    ),
    (
        "hash-symbols",
        _paragraphs(*_with_words_inside(_lines(6), [f"#{w}" for w in _vocab(10, 3)])),
        {},
        "too_many_symbols",
        {"max_symbol_word_ratio": 1},
    ),
    (
        "dot-ellipses",
        _paragraphs(*_with_words_inside(_lines(6), [f"{w}..." for w in _vocab(10, 3)])),
        {},
        "too_many_symbols",
        {"max_symbol_word_ratio": 1},
    ),
    (
        "unicode-ellipses",
        _paragraphs(*_with_words_inside(_lines(6), [f"{w}\u2026" for w in _vocab(10, 3)])),
        {},
        "too_many_symbols",
        {"max_symbol_word_ratio": 1},
    ),
    (
        # Gopher: the ratio is over 0.1 "for either the hash symbol or the ellipsis", not for
        # both together: 6 of each in 84 words is 0.07 each.
        "hashes-and-ellipses-each-below-the-limit",
        _paragraphs(
            *_with_words_inside(
                _lines(6), [f"#{w}" for w in _vocab(6, 4)] + [f"{w}..." for w in _vocab(6, 5)]
            )
        ),
        {},
        None,
        None,
    ),
    (
        "bullet-lines",
        _paragraphs(*[f"{'•-*–'[i % 4]} {line}" for i, line in enumerate(_lines(10))]),
        {},
        "too_many_bullet_lines",
        {"max_bullet_lines_fraction": 1},
    ),
    (
        "ellipsis-lines",
        _paragraphs(*_lines(6), *_lines(4, seed=9, end="\u2026")),
        {},
        "too_many_ellipsis_lines",
        {"max_ellipsis_lines_fraction": 1},
    ),
    (
        "numbers",
        _paragraphs(*_with_words_inside(_lines(6), [str(1000 + 7 * i) for i in range(24)])),
        {},
        "too_few_alpha_words",
        {"min_alpha_words_fraction": 0},
    ),
    (
        "unpunctuated-lines",
        _paragraphs(*_lines(8, end="")),
        {},
        "too_few_punctuated_lines",
        {"min_punctuated_lines_fraction": 0},
    ),
    (
        "short-lines",
        _paragraphs(*_lines(16, per_line=2)),
        {},
        "too_many_short_lines",
        {"max_short_lines_fraction": 1},
    ),
    (
        "one-distinct-stop-word",
        _paragraphs(*_lines(6, glue=("The", "the"))),
        {},
        "too_few_stop_words",
        {"min_stop_words": 1},
    ),
    (
        "duplicate-lines",
        "\n".join(line for d in _lines(5) for line in (d, SHORT)),
        {},
        "duplicate_lines",
        {"repetition": {"duplicate_line_fraction": 1}},
    ),
    (
        "duplicate-line-chars",
        "\n".join([*_lines(3), LONG_LINE, *_lines(3, seed=6), LONG_LINE]),
        {"repetition": NO_NGRAM_RULES},
        "duplicate_line_chars",
        {"repetition": {**NO_NGRAM_RULES, "duplicate_line_char_fraction": 1}},
    ),
    (
        "duplicate-paragraphs",
        _paragraphs(*(p for i in range(3) for p in ("\n".join(_lines(4, seed=i)), SHORT))),
        {},
        "duplicate_paragraphs",
        {"repetition": {"duplicate_paragraph_fraction": 1}},
    ),
    (
        "duplicate-paragraph-chars",
        _paragraphs(
            *_lines(4),
            "\n".join(_lines(4, seed=5)),
            *_lines(2, seed=6),
            "\n".join(_lines(4, seed=5)),
        ),
        {"repetition": {**NO_NGRAM_RULES, **NO_LINE_RULES}},
        "duplicate_paragraph_chars",
        {
            "repetition": {
                **NO_NGRAM_RULES,
                **NO_LINE_RULES,
                "duplicate_paragraph_char_fraction": 1,
            }
        },
    ),
    (
        "top-2gram",
        _top_ngram_text("remarkable consistency", 15, 2),
        {},
        "top_2gram_repetition",
        {"repetition": {"top_ngram_char_fraction": {3: 0.18, 4: 0.16}}},
    ),
    (
        "top-4gram",
        _top_ngram_text("golden silver copper bronze", 5, 12),
        {},
        "top_4gram_repetition",
        {"repetition": {"top_ngram_char_fraction": {2: 0.20, 3: 0.18}}},
    ),
    (
        # A 5-word phrase twice: only the 5-gram rule sees it (no 6-gram repeats).
        "duplicate-5gram-only",
        _repeated_phrase(5, 45, seed=11, filler_length=3),
        {"repetition": {"top_ngram_char_fraction": {}}},
        "duplicate_5gram_repetition",
        {
            "repetition": {
                "top_ngram_char_fraction": {},
                "duplicate_ngram_char_fraction": {
                    n: f for n, f in DEFAULT_DUPLICATE_NGRAMS.items() if n != 5
                },
            }
        },
    ),
    (
        # A 20-word phrase twice, 20% of the characters: every n trips, 5 is checked first.
        "duplicate-5gram-long-phrase",
        _repeated_phrase(20, 60, seed=12),
        {},
        "duplicate_5gram_repetition",
        {"repetition": {"duplicate_ngram_char_fraction": {}}},
    ),
    (
        # A 12-word phrase twice covering 10.5% of the characters: within the 5- to 9-gram
        # limits (0.15 .. 0.11) but over the 10-gram one (0.10).
        "duplicate-10gram",
        _repeated_phrase(12, 79, seed=13),
        {},
        "duplicate_10gram_repetition",
        {
            "repetition": {
                "duplicate_ngram_char_fraction": {
                    n: f for n, f in DEFAULT_DUPLICATE_NGRAMS.items() if n != 10
                }
            }
        },
    ),
]
FAILING = [c for c in CASES if c[3] is not None]


def _reason(text, overrides):
    return failures([TextView(text)], CleanParams(**overrides))[0]


@pytest.mark.parametrize(
    ("text", "overrides", "reason"), [c[1:4] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_drops_with_its_stable_reason(text, overrides, reason):
    assert _reason(text, overrides) == reason


@pytest.mark.parametrize(
    ("text", "overrides", "switch_off"),
    [(c[1], c[2], c[4]) for c in FAILING],
    ids=[c[0] for c in FAILING],
)
def test_each_row_trips_only_its_own_rule(text, overrides, switch_off):
    """With the row's rule switched off the same text passes every other rule."""
    assert _reason(text, {**overrides, **switch_off}) is None


@pytest.mark.parametrize("word", sorted(GOPHER_STOP_WORDS))
def test_stop_word_rule_counts_distinct_gopher_words(word):
    one = _paragraphs(*_lines(6, glue=(word, word)))
    two = _paragraphs(*_lines(6, glue=(word, "the" if word != "the" else "of")))
    cfg = CleanParams()
    assert first_failure(TextView(one), quality_filters(cfg)) == "too_few_stop_words"
    assert first_failure(TextView(two), quality_filters(cfg)) is None
    strict = CleanParams(min_stop_words=3)
    assert first_failure(TextView(two), quality_filters(strict)) == "too_few_stop_words"


def test_common_english_words_outside_the_gopher_list_do_not_count():
    rules = quality_filters(CleanParams())
    others = _paragraphs(*_lines(6, glue=("The", "is in a it on as")))
    assert first_failure(TextView(others), rules) == "too_few_stop_words"
    with_gopher = others.replace(" is ", " with ")
    assert first_failure(TextView(with_gopher), rules) is None


def test_stop_word_lists():
    assert stop_words("en") == {"the", "be", "to", "of", "and", "that", "have", "with"}
    assert stop_words("de") == frozenset(stopwordsiso.stopwords("de"))
    assert "und" in stop_words("de")
    assert "\u0438" in stop_words("bg")  # Bulgarian "and"
    assert stop_words("bg") == frozenset(stopwordsiso.stopwords("bg"))
    assert "the" in stop_words("en", "stopwordsiso")


@pytest.mark.parametrize(
    ("clean", "key"),
    [
        ({"language": "xx"}, "clean.language"),
        ({"language": "de", "stop_words": "gopher"}, "clean.stop_words"),
    ],
    ids=["unknown-language", "gopher-list-in-german"],
)
def test_language_problems_are_config_errors(clean, key):
    with pytest.raises(ConfigError) as caught:
        make_params(clean=clean)
    assert any(p.startswith(f"{key}:") for p in caught.value.problems)
    assert key in str(caught.value)


def test_a_batch_gets_the_reasons_its_documents_get_alone():
    """Rows of the table in one batch, with the n-gram rules counted for all of them at once."""
    cfg = CleanParams()
    stream = PROSE.replace("river", "stream")
    # Documents repeating one another (the last three) are still counted apart.
    texts = [c[1] for c in CASES] + [PROSE, stream, stream, CASES[-1][1]]
    alone = [failures([TextView(text)], cfg)[0] for text in texts]
    assert failures([TextView(text) for text in texts], cfg) == alone
    assert {"too_few_words", "duplicate_10gram_repetition", "top_2gram_repetition"} <= set(alone)
    normal = [normal_lines(text) for text in texts]  # lines known from normalising
    views = TextView.batch([text for text, _ in normal], [lines for _, lines in normal])
    assert failures(views, cfg) == [failures([TextView(text)], cfg)[0] for text, _ in normal]
    assert alone.count(None) >= 3


def test_an_empty_batch_has_no_reasons():
    assert failures([], CleanParams()) == []
