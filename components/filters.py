"""Document quality filters: the Gopher quality and repetition rules, and FineWeb's line rules.

Each filter is a predicate over a :class:`TextView` returning None (keep) or a stable
snake_case reason (drop). Rules and default thresholds follow Rae et al. 2021 (Gopher,
appendix A, table A1) and Penedo et al. 2024 (FineWeb: punctuated and short lines);
repetition statistics are computed with numpy over word ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from components.stopwords import stop_words
from components.wordarrays import TextArrays, Words, hash_set

if TYPE_CHECKING:
    from components.config import CleanParams

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
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for n-gram hashing


@dataclass
class TextView:
    """A document's text split once into the units every rule needs.

    Words are numpy arrays (:mod:`components.wordarrays`): their lengths and hashes, never a
    Python string per word.
    """

    text: str
    _ngrams: NgramChain | None = field(default=None, init=False, repr=False)

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

    def ngram_level(self, n: int) -> NgramLevel:
        """The word n-grams that occur twice or more (see :class:`NgramLevel`)."""
        if self._ngrams is None or n < self._ngrams.first:
            self._ngrams = NgramChain.starting_at(self.arrays.words.hashes, n)
        return self._ngrams.level(n)


class NgramChain:
    """A document's n-gram levels from size ``first`` up, each counted when first asked for.

    An n-gram can repeat only if its (n-1)-gram prefix repeats, so each level after the
    first looks only at the survivors of the previous one: one full sort per document,
    then small ones. A level holds the same repeats whichever size the chain starts at.
    """

    def __init__(self, ids: np.ndarray, first: int, starts: np.ndarray, hashes: np.ndarray):
        self.ids, self.first = ids, first
        self.position = np.uint64((1 << int(ids.size).bit_length()) - 1)  # see NgramLevel.of
        self.levels: dict[int, NgramLevel] = {}
        self._next, self._starts, self._hashes = first, starts, hashes

    @classmethod
    def starting_at(cls, ids: np.ndarray, first: int) -> NgramChain:
        """The chain of the words with hashes ``ids``, from every ``first``-gram."""
        starts = np.arange(max(ids.size - first + 1, 0))
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is intended: a hash
            hashes = ids[starts] * _MIX
            for offset in range(1, first):
                hashes = _mix(hashes) + ids[starts + offset]
        return cls(ids, first, starts, hashes)

    def level(self, n: int) -> NgramLevel:
        """Level ``n`` (at least ``first``), counting the levels up to it if not done yet."""
        while n not in self.levels:
            self._count_next()
        return self.levels[n]

    def _count_next(self) -> None:
        n, position = self._next, self.position
        self.levels[n], keys = NgramLevel.of(self._starts, self._hashes, position)
        starts = (keys & position).astype(np.int64)
        room = starts + n < self.ids.size  # for one more word
        starts = starts[room]
        with np.errstate(over="ignore"):
            self._hashes = _mix(keys[room] & ~position) + self.ids[starts + n]
        self._next, self._starts = n + 1, starts


@dataclass(frozen=True)
class NgramLevel:
    """Repetition facts about a document's n-grams of one size.

    Attributes:
        counts: for each distinct n-gram considered, how often it occurs.
        first_starts: for each distinct n-gram, the word position of its first occurrence.
        repeat_starts: word positions of the occurrences after the first (in no order).
    """

    counts: np.ndarray
    first_starts: np.ndarray
    repeat_starts: np.ndarray

    @classmethod
    def of(
        cls, starts: np.ndarray, hashes: np.ndarray, position: np.uint64
    ) -> tuple[NgramLevel, np.ndarray]:
        """Count the n-grams at word positions ``starts`` with one sort of plain integers.

        Each key holds an n-gram's hash in its high bits and its position in the low bits
        that ``position`` masks: sorted, equal n-grams are adjacent and in text order, so the
        first of each group is its first occurrence. That sort is three times faster than an
        ``argsort``. Hashes keep 64 bits less the position's: at least 40 bits for documents
        under 16M words.

        Returns the level, and the keys of the n-grams that occur twice or more (those whose
        next word may still make a repeated (n+1)-gram).
        """
        keys = np.sort((hashes & ~position) | starts.astype(np.uint64))
        new_value = np.empty(keys.size, dtype=bool)
        new_value[:1] = True
        values = keys & ~position
        np.not_equal(values[1:], values[:-1], out=new_value[1:])
        group_starts = np.flatnonzero(new_value)
        counts = np.diff(group_starts, append=keys.size)
        positions = (keys & position).astype(np.int64)
        level = cls(counts, positions[group_starts], positions[~new_value])
        return level, keys[np.repeat(counts >= 2, counts)]


def _mix(values: np.ndarray) -> np.ndarray:
    """Scramble 64-bit hashes before adding the next word (order-sensitive n-gram hash)."""
    return (values ^ (values >> np.uint64(29))) * _MIX


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


def top_ngram_char_fraction(view: TextView, n: int) -> float:
    """Fraction of word characters inside the most frequent n-gram (counted if it repeats).

    When several n-grams are equally frequent, the longest counts: the strictest reading of
    Gopher's rule, and independent of hash order.
    """
    level = view.ngram_level(n)
    if level.counts.size == 0 or level.counts.max() < 2:
        return 0.0
    starts = level.first_starts[level.counts == level.counts.max()]
    edges = np.concatenate(([0], np.cumsum(view.word_lengths)))
    longest = int((edges[starts + n] - edges[starts]).max())
    return longest * int(level.counts.max()) / max(int(edges[-1]), 1)


def duplicate_ngram_char_fraction(view: TextView, n: int) -> float:
    """Fraction of word characters covered by n-grams that repeat an earlier n-gram."""
    repeats = view.ngram_level(n).repeat_starts
    if repeats.size == 0:
        return 0.0
    size = view.word_count + 1
    cover = np.bincount(repeats, minlength=size) - np.bincount(repeats + n, minlength=size)
    covered = np.cumsum(cover[:-1]) > 0
    return int(view.word_lengths[covered].sum()) / max(int(view.word_lengths.sum()), 1)


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
    """Gopher repetition rules over lines, paragraphs and word n-grams."""
    rep = cfg.repetition

    def lines(v: TextView) -> str | None:
        items, chars = duplicate_stats(v.lines)
        if items > rep.duplicate_line_fraction:
            return "duplicate_lines"
        return "duplicate_line_chars" if chars > rep.duplicate_line_char_fraction else None

    def paragraphs(v: TextView) -> str | None:
        items, chars = duplicate_stats(v.paragraphs)
        if items > rep.duplicate_paragraph_fraction:
            return "duplicate_paragraphs"
        return (
            "duplicate_paragraph_chars" if chars > rep.duplicate_paragraph_char_fraction else None
        )

    def top_ngrams(v: TextView) -> str | None:
        for n, limit in sorted(rep.top_ngram_char_fraction.items()):
            if top_ngram_char_fraction(v, n) > limit:
                return f"top_{n}gram_repetition"
        return None

    def duplicate_ngrams(v: TextView) -> str | None:
        for n, limit in sorted(rep.duplicate_ngram_char_fraction.items()):
            if duplicate_ngram_char_fraction(v, n) > limit:
                return f"duplicate_{n}gram_repetition"
        return None

    return [lines, paragraphs, top_ngrams, duplicate_ngrams]


def first_failure(view: TextView, filters: list[Filter]) -> str | None:
    """The reason of the first filter that drops the document, or None to keep it."""
    for check in filters:
        reason = check(view)
        if reason is not None:
            return reason
    return None
