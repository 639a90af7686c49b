"""Document quality filters: the Gopher quality and repetition rules, and FineWeb's line rules.

Each filter is a predicate over a :class:`TextView` returning None (keep) or a stable
snake_case reason (drop); the word n-gram rules are counted for a batch of documents at once
(:mod:`components.data.ngrams`), and :func:`failures` applies them all in order. Rules and default
thresholds follow Rae et al. 2021 (Gopher, appendix A, table A1) and Penedo et al. 2024
(FineWeb: punctuated and short lines); statistics are computed with numpy over word ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from components.data.ngrams import (
    NgramChain,
    WordBatch,
    duplicate_ngram_char_fractions,
    top_ngram_char_fractions,
)
from components.data.stopwords import stop_words
from components.data.wordarrays import (
    TextArrays,
    Words,
    batch_arrays,
    distinct_among,
    hash_set,
)

if TYPE_CHECKING:
    from components.data.params import CleanParams, RepetitionParams

BULLETS = ("\u2022", "\u2023", "\u25e6", "\u2043", "-", "*", "\u2013", "\u2014")
ELLIPSES = ("...", "\u2026")
# Terminal punctuation of a prose line, in Latin, Greek, Arabic, CJK and Devanagari scripts.
LINE_END_PUNCTUATION = (
    ".",
    "!",
    "?",
    '"',
    "\u201d",
    "\u2026",
    ":",
    ";",
    "\u3002",
    "\uff01",
    "\uff1f",
    "\u061f",
    "\u0964",
    "\u037e",
)


@dataclass
class TextView:
    """A document's text split once into the units every rule needs.

    Words are numpy arrays (:mod:`components.data.wordarrays`): their lengths and hashes, never a
    Python string per word.
    """

    text: str
    # Distinct stop words, when counted for the whole batch (see :func:`failures`).
    distinct_stop_words: int | None = None

    @classmethod
    def batch(cls, texts: list[str], lines: list[list[str]] | None = None) -> list[TextView]:
        """Views of a batch of texts, whose arrays are measured at once (:func:`batch_arrays`).

        ``lines``: each text's lines, where the texts are normalised
        (:func:`components.data.assess.normal_lines`): its lines are then also its paragraphs.
        """
        views = [cls(text) for text in texts]
        for view, arrays in zip(views, batch_arrays(texts), strict=True):
            view.__dict__["arrays"] = arrays  # the cached property, filled
        if lines is not None:
            for view, known in zip(views, lines, strict=True):
                view.__dict__.update(lines=known, paragraphs=known)
        return views

    @cached_property
    def arrays(self) -> TextArrays:
        """The text's code points and character classes, and its words."""
        return TextArrays(self.text)

    @property
    def word_count(self) -> int:
        """White-space separated words, as Gopher counts them."""
        return len(self.arrays.words)

    @property
    def word_lengths(self) -> np.ndarray:
        """Character count of each white-space separated word."""
        return self.arrays.words.lengths

    @property
    def lower_words(self) -> Words:
        """Lower-cased runs of word characters (for stop words, hashing and shingles)."""
        return self.arrays.lower_words

    @cached_property
    def lines(self) -> list[str]:
        """Non-empty lines."""
        return [line for line in self.text.split("\n") if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        """Blocks separated by blank lines."""
        return [p for p in self.text.split("\n\n") if p.strip()]

    @cached_property
    def line_repeats(self) -> tuple[float, float]:
        """:func:`duplicate_stats` of the lines."""
        return duplicate_stats(self.lines)

    @cached_property
    def paragraph_repeats(self) -> tuple[float, float]:
        """:func:`duplicate_stats` of the paragraphs (the lines', where they are the same)."""
        if self.paragraphs is self.lines:
            return self.line_repeats
        return duplicate_stats(self.paragraphs)


Filter = Callable[[TextView], str | None]


def duplicate_stats(items: list[str]) -> tuple[float, float]:
    """Fraction of items, and of their characters, that repeat an earlier item."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    total_chars = sum(map(len, items))
    return dup_items / max(len(items), 1), dup_chars / max(total_chars, 1)


def quality_filters(cfg: CleanParams) -> list[Filter]:
    """Gopher quality rules, cheapest first (word count first: later rules divide by it)."""
    stops = hash_set(stop_words(cfg.language, cfg.stop_words))

    def word_count(v: TextView) -> str | None:
        if v.word_count < cfg.min_words:
            return "too_few_words"
        return "too_many_words" if v.word_count > cfg.max_words else None

    def mean_word_length(v: TextView) -> str | None:
        mean = float(v.word_lengths.mean())
        ok = cfg.min_mean_word_length <= mean <= cfg.max_mean_word_length
        return None if ok else "mean_word_length_out_of_range"

    def symbol_ratio(v: TextView) -> str | None:
        # Gopher: over the limit "for either the hash symbol or the ellipsis", each on its own.
        symbols = max(v.text.count("#"), sum(v.text.count(e) for e in ELLIPSES))
        return "too_many_symbols" if symbols / v.word_count > cfg.max_symbol_word_ratio else None

    def bullet_lines(v: TextView) -> str | None:
        bullets = sum(line.lstrip().startswith(BULLETS) for line in v.lines)
        too_many = bullets / max(len(v.lines), 1) > cfg.max_bullet_lines_fraction
        return "too_many_bullet_lines" if too_many else None

    def ellipsis_lines(v: TextView) -> str | None:
        ends = sum(line.rstrip().endswith(ELLIPSES) for line in v.lines)
        too_many = ends / max(len(v.lines), 1) > cfg.max_ellipsis_lines_fraction
        return "too_many_ellipsis_lines" if too_many else None

    def alpha_words(v: TextView) -> str | None:
        alpha = 1 - v.arrays.letterless_words() / v.word_count
        return "too_few_alpha_words" if alpha < cfg.min_alpha_words_fraction else None

    def punctuated_lines(v: TextView) -> str | None:
        ends = sum(line.rstrip().endswith(LINE_END_PUNCTUATION) for line in v.lines)
        too_few = ends / max(len(v.lines), 1) < cfg.min_punctuated_lines_fraction
        return "too_few_punctuated_lines" if too_few else None

    def short_lines(v: TextView) -> str | None:
        short = sum(len(line) <= cfg.short_line_chars for line in v.lines)
        too_many = short / max(len(v.lines), 1) > cfg.max_short_lines_fraction
        return "too_many_short_lines" if too_many else None

    def stop_word_count(v: TextView) -> str | None:
        distinct = v.distinct_stop_words
        if distinct is None:
            distinct = np.unique(v.lower_words.hashes[v.lower_words.among(stops)]).size
        return "too_few_stop_words" if distinct < cfg.min_stop_words else None

    return [
        word_count,
        mean_word_length,
        symbol_ratio,
        bullet_lines,
        ellipsis_lines,
        alpha_words,
        punctuated_lines,
        short_lines,
        stop_word_count,
    ]


def repetition_filters(cfg: CleanParams) -> list[Filter]:
    """Gopher repetition rules over lines and paragraphs (for n-grams: :func:`ngram_failures`)."""
    rep = cfg.repetition

    def lines(v: TextView) -> str | None:
        items, chars = v.line_repeats
        if items > rep.duplicate_line_fraction:
            return "duplicate_lines"
        return "duplicate_line_chars" if chars > rep.duplicate_line_char_fraction else None

    def paragraphs(v: TextView) -> str | None:
        items, chars = v.paragraph_repeats
        if items > rep.duplicate_paragraph_fraction:
            return "duplicate_paragraphs"
        return (
            "duplicate_paragraph_chars" if chars > rep.duplicate_paragraph_char_fraction else None
        )

    return [lines, paragraphs]


def ngram_failures(views: list[TextView], rep: RepetitionParams) -> list[str | None]:
    """Gopher's n-gram repetition rules for a batch: the reason each document fails, or None.

    Top n-gram sizes are checked first, smallest first, then duplicate n-gram sizes.
    """
    rules = [
        (n, limit, f"top_{n}gram_repetition", top_ngram_char_fractions)
        for n, limit in sorted(rep.top_ngram_char_fraction.items())
    ] + [
        (n, limit, f"duplicate_{n}gram_repetition", duplicate_ngram_char_fractions)
        for n, limit in sorted(rep.duplicate_ngram_char_fraction.items())
    ]
    reasons: list[str | None] = [None] * len(views)
    if not views or not rules:
        return reasons
    words = WordBatch.of([v.arrays.words.hashes for v in views], [v.word_lengths for v in views])
    chain = NgramChain(words, min(n for n, *_ in rules))
    for n, limit, reason, fractions in rules:
        for index in np.flatnonzero(fractions(chain, n) > limit).tolist():
            reasons[index] = reasons[index] or reason
    return reasons


def failures(views: list[TextView], cfg: CleanParams) -> list[str | None]:
    """Every rule over a batch: the reason each document is dropped, or None to keep it.

    Each document goes through the per-document rules in order; the n-gram rules, counted
    for the whole batch at once (:mod:`components.data.ngrams`), come last, for those that pass.
    """
    rules = quality_filters(cfg) + repetition_filters(cfg)
    stops = hash_set(stop_words(cfg.language, cfg.stop_words))
    counts = distinct_among([view.lower_words for view in views], stops)
    for view, count in zip(views, counts, strict=True):
        view.distinct_stop_words = count
    reasons = [first_failure(view, rules) for view in views]
    passed = [i for i, reason in enumerate(reasons) if reason is None]
    found = ngram_failures([views[i] for i in passed], cfg.repetition)
    for index, reason in zip(passed, found, strict=True):
        reasons[index] = reason
    return reasons


def first_failure(view: TextView, filters: list[Filter]) -> str | None:
    """The reason of the first filter that drops the document, or None to keep it."""
    for check in filters:
        reason = check(view)
        if reason is not None:
            return reason
    return None
