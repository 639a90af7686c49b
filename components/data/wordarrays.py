r"""A text's words as numpy arrays: where each word starts and ends, and a 64-bit hash of it.

The quality rules, the duplicate checks and the MinHash shingles need each word's length
and identity, not the word itself. ``str.split`` makes a Python string of every word, and
measuring or hashing them one at a time cost more than all the rules together. Here the
text becomes an array of code points (one ``encode``), a table gives each code point its
character class, and word boundaries, lengths and hashes come from a few numpy passes.

Two kinds of words, with the definitions the stages use:

- :attr:`TextArrays.words`: the white-space separated words of ``text.split()``;
- :attr:`TextArrays.lower_words`: the runs of ``\w`` in ``text.lower()``, what
  ``re.findall(r"\w+", text.lower())`` finds (case and punctuation do not count).

A batch of texts is best measured a group at a time (:func:`batch_arrays`,
:func:`batch_lower_words`): a group's texts joined, a few numpy passes over the whole, and
each text's arrays cut out of them. The numpy calls per text, not the characters, were most
of the cost of measuring one text at a time; groups of about :data:`GROUP_CHARS` characters
keep the arrays small enough for the processor's cache.

Word hashes are polynomial hashes of the code points modulo 2**64, then mixed (MurmurHash3's
64-bit finaliser). They are the same in every process and run, and distinct for distinct
words short of a 64-bit collision; they are not built to resist crafted collisions.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from components.data.documents import size_runs

# Character classes, as bit flags of one byte per code point.
SPACE = 1  # str.isspace(): what str.split() splits on
WORD = 2  # matches \w
LETTER = 4  # \w but neither a decimal digit nor "_": what makes a word alphabetic
# str.lower() gives several characters, depends on context (capital sigma), or gives a
# character that is a word character where this one is not (or the other way round).
COMPLEX_LOWER = 8
KNOWN = 128  # classified (the table is filled as characters first appear)

_WORD_CHAR = re.compile(r"\w")
_DIGIT_OR_UNDERSCORE = re.compile(r"[\d_]")
_CAPITAL_SIGMA = 0x3A3  # lowers to a final sigma at the end of a word, to sigma elsewhere
_CLASSES = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
_LOWER = np.arange(sys.maxunicode + 1, dtype=np.uint32)

GROUP_CHARS = 1 << 16  # characters measured at once: see _groups
_BASE = 0x9E3779B97F4A7C15  # odd, so that it has an inverse modulo 2**64
_U64 = np.uint64


def _learn(code_points: Iterable[int]) -> None:
    """Classify these code points into the class and lower-case tables."""
    for code in code_points:
        char = chr(code)
        flags = KNOWN | (SPACE if char.isspace() else 0)
        if _WORD_CHAR.match(char):
            flags |= WORD if _DIGIT_OR_UNDERSCORE.match(char) else WORD | LETTER
        lower = char.lower()
        same_class = bool(_WORD_CHAR.match(lower)) == bool(flags & WORD)
        if len(lower) == 1 and code != _CAPITAL_SIGMA and same_class:
            _LOWER[code] = ord(lower)
        else:
            flags |= COMPLEX_LOWER
        _CLASSES[code] = flags


_learn(range(128))


def code_points(text: str) -> np.ndarray:
    """The text's code points: uint8 for ASCII text, else uint32."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def classes(points: np.ndarray) -> np.ndarray:
    """The class flags of each code point (classifying those not seen before)."""
    # np.take: indexing with an array of code points (uint8 or uint32, not intp) casts each
    # index on its own, at three times the cost.
    found = np.take(_CLASSES, points)
    if found.size and found.min() < KNOWN:
        _learn(np.unique(points[found < KNOWN]).tolist())
        found = np.take(_CLASSES, points)
    return found


class Powers:
    """``base**i``, ``base**-i`` and ``sum(base**j for j < i)`` modulo 2**64, grown on demand.

    ``base`` must be odd, so that it has an inverse modulo 2**64.
    """

    def __init__(self, base: int = _BASE) -> None:
        self.base, self.base_inverse = base, pow(base, -1, 1 << 64)
        self.size = 0
        self.power = self.inverse = self.prefix_sum = np.ones(0, dtype=_U64)

    def at_least(self, size: int) -> Powers:
        """These powers, grown to at least ``size`` of each."""
        if size > self.size:
            self.size = max(size, 2 * self.size, 1 << 16)
            base, inverse = _U64(self.base), _U64(self.base_inverse)
            # uint64 products and sums wrap: the modulo 2**64 of the hash is the hardware's.
            self.power = np.cumprod(np.full(self.size, base, dtype=_U64)) * inverse
            self.inverse = np.cumprod(np.full(self.size, inverse, dtype=_U64)) * base
            self.prefix_sum = np.concatenate(([_U64(0)], np.cumsum(self.power)[:-1]))
        return self


_POWERS = Powers()


def _mix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every input bit affects every output bit."""
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xFF51AFD7ED558CCD)
    values = values ^ (values >> _U64(33))
    values = values * _U64(0xC4CEB9FE1A85EC53)
    return values ^ (values >> _U64(33))


def span_hashes(
    points: np.ndarray, starts: np.ndarray, ends: np.ndarray, powers: Powers = _POWERS
) -> np.ndarray:
    """64-bit hash of each span ``points[start:end]``, equal for equal code point sequences.

    ``sum((c + 1) * base**(j - start))`` over the span, from prefix sums: each code point
    counts with its offset in the span, so that equal words hash alike wherever they are.
    """
    size = points.size
    powers = powers.at_least(size + 1)
    prefix = np.zeros(size + 1, dtype=_U64)
    np.cumsum(np.multiply(points, powers.power[:size], dtype=_U64), out=prefix[1:])
    sums = prefix[ends] - prefix[starts] + powers.prefix_sum[ends] - powers.prefix_sum[starts]
    return _mix64(sums * powers.inverse[starts])


def hash_strings(strings: Iterable[str]) -> np.ndarray:
    """The hash :func:`span_hashes` gives each whole string, in order."""
    strings = list(strings)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    ends = np.cumsum(lengths)
    return span_hashes(code_points("".join(strings)), ends - lengths, ends)


def runs(inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the runs of True in a boolean array."""
    # Padded with False at both ends, every run has a rising and a falling edge (np.diff's
    # prepend and append did the same at twice the cost).
    padded = np.zeros(inside.size + 2, dtype=bool)
    padded[1:-1] = inside
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


@dataclass(frozen=True)
class Words:
    """Words as spans of code points (``starts``, ``ends``) with a hash of each."""

    starts: np.ndarray
    ends: np.ndarray
    hashes: np.ndarray

    def __len__(self) -> int:
        return self.starts.size

    @property
    def lengths(self) -> np.ndarray:
        """Characters in each word."""
        return self.ends - self.starts

    @classmethod
    def where(cls, points: np.ndarray, inside: np.ndarray) -> Words:
        """The runs of ``inside`` as words of ``points``."""
        starts, ends = runs(inside)
        return cls(starts, ends, span_hashes(points, starts, ends))

    def among(self, sorted_hashes: np.ndarray) -> np.ndarray:
        """For each word, whether its hash is among ``sorted_hashes`` (see :func:`hash_set`)."""
        return _among(self.hashes, sorted_hashes)


def _among(hashes: np.ndarray, sorted_hashes: np.ndarray) -> np.ndarray:
    """For each hash, whether it is among ``sorted_hashes``."""
    return _positions(hashes, sorted_hashes) >= 0


# Sets up to this size are matched by comparing with each member: Gopher's eight stop words
# in half the time of a binary search (10 ns a word).
_COMPARED = 16


def _positions(hashes: np.ndarray, sorted_hashes: np.ndarray) -> np.ndarray:
    """For each hash, its index in ``sorted_hashes``, or -1 where it is not there."""
    if sorted_hashes.size > _COMPARED:
        at = np.searchsorted(sorted_hashes, hashes).clip(max=sorted_hashes.size - 1)
        return np.where(sorted_hashes[at] == hashes, at, -1)
    positions = np.full(hashes.size, -1, dtype=np.int64)
    for index, member in enumerate(sorted_hashes.tolist()):
        positions[hashes == member] = index
    return positions


class TextArrays:
    """One text's code points and classes, and the words the stages count on them."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.points = code_points(text)
        self.classes = classes(self.points)
        self.letterless: int | None = None  # counted once, for the text or its batch

    @classmethod
    def cut(
        cls, text: str, points: np.ndarray, classes_: np.ndarray, words: Words, lower: Words
    ) -> TextArrays:
        """The arrays of ``text`` from a batch's (see :func:`batch_arrays`)."""
        arrays = cls.__new__(cls)
        arrays.text, arrays.points, arrays.classes = text, points, classes_
        arrays.letterless = None
        arrays.__dict__.update(words=words, lower_words=lower)  # the cached properties
        return arrays

    @cached_property
    def words(self) -> Words:
        """White-space separated words (``text.split()``)."""
        return Words.where(self.points, (self.classes & SPACE) == 0)

    @cached_property
    def lower_words(self) -> Words:
        r"""Runs of word characters in the lower-cased text (``re.findall(r"\w+", ...)``)."""
        if self.points.dtype == np.uint8:  # ASCII: bytes.lower() is exact and fastest
            lowered = np.frombuffer(self.points.tobytes().lower(), dtype=np.uint8)
        elif (self.classes & COMPLEX_LOWER).any():
            lowered = code_points(self.text.lower())
            return Words.where(lowered, (classes(lowered) & WORD) != 0)
        else:
            lowered = np.take(_LOWER, self.points)  # see classes()
        # Lower-casing these characters one for one keeps each a word character or not.
        return Words.where(lowered, (self.classes & WORD) != 0)

    def letterless_words(self) -> int:
        """White-space separated words without a letter (only digits, punctuation, symbols)."""
        if self.letterless is None:
            self.letterless = int(np.count_nonzero(_letterless(self.classes, self.words)))
        return self.letterless

    def digest(self) -> str:
        """Hash of the lower-cased word sequence (equal for exact duplicates).

        Texts that differ only in case, punctuation and white space get the same digest.
        """
        return hashlib.sha1(self.lower_words.hashes.tobytes()).hexdigest()


def batch_arrays(texts: list[str]) -> list[TextArrays]:
    """The :class:`TextArrays` of each text, measured a group of texts at once.

    Equal to ``TextArrays(text)`` for each text: the texts are joined with line breaks,
    which no word spans, and word hashes do not depend on where a word is.
    """
    return [arrays for group in _groups(texts) for arrays in _group_arrays(group)]


def _group_arrays(texts: list[str]) -> list[TextArrays]:
    """The arrays of each of ``texts``, from the arrays of the texts joined."""
    whole, starts = _joined(texts)
    cuts = _cuts(whole.words, starts)
    words = _split(whole.words, cuts, starts)
    lower = _split_lower(whole, starts, texts)
    letterless = _per_text(_letterless(whole.classes, whole.words), cuts)
    batch = []
    for index, (at, size) in enumerate(zip(starts.tolist(), map(len, texts), strict=True)):
        span = slice(at, at + size)
        arrays = TextArrays.cut(
            texts[index], whole.points[span], whole.classes[span], words[index], lower[index]
        )
        arrays.letterless = letterless[index]
        batch.append(arrays)
    return batch


def batch_lower_words(texts: list[str]) -> list[Words]:
    """The :attr:`TextArrays.lower_words` of each text, measured a group of texts at once.

    Cheaper than :func:`batch_arrays` for a caller that needs no other words.
    """
    return [words for group in _groups(texts) for words in _split_lower(*_joined(group), group)]


def _groups(texts: list[str]) -> Iterator[list[str]]:
    """The texts in consecutive groups of about :data:`GROUP_CHARS` characters.

    A batch is measured group by group: arrays of a few hundred kilobytes stay in the
    processor's cache, where numpy runs several times faster than from memory.
    """
    for start, end in size_runs(map(len, texts), GROUP_CHARS):
        yield texts[start:end]


def count_among(words: list[Words], sorted_hashes: np.ndarray) -> list[int]:
    """For each text's words, how many are among ``sorted_hashes`` (repeats counted)."""
    if not words:
        return []
    hashes = np.concatenate([w.hashes for w in words])
    cuts = np.cumsum([0, *map(len, words)]).tolist()
    return _per_text(_among(hashes, sorted_hashes), cuts)


def _joined(texts: list[str]) -> tuple[TextArrays, np.ndarray]:
    """The arrays of the texts joined with line breaks, and where each text starts there."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    return TextArrays("\n".join(texts)), _offsets(lengths)


def _split_lower(whole: TextArrays, starts: np.ndarray, texts: list[str]) -> list[Words]:
    """Each text's lower words, from the joined texts' arrays."""
    lower_words, lower_starts = _batch_lower_words(whole, texts, starts)
    return _split(lower_words, _cuts(lower_words, lower_starts), lower_starts)


def _letterless(classes_: np.ndarray, words: Words) -> np.ndarray:
    """For each word, whether it holds no letter."""
    # Most words start with a letter: only the others are looked at, each word's classes
    # or-ed together (a count of letters over every character cost four times as much).
    letterless = np.zeros(len(words), dtype=bool)
    suspects = np.flatnonzero((np.take(classes_, words.starts) & LETTER) == 0)
    if not suspects.size:
        return letterless
    bounds = np.empty(2 * suspects.size, dtype=np.intp)
    bounds[0::2], bounds[1::2] = words.starts[suspects], words.ends[suspects]
    if bounds[-1] == classes_.size:  # the last span then runs to the end on its own
        bounds = bounds[:-1]
    found = np.bitwise_or.reduceat(classes_, bounds)[0::2]  # odd spans: between words
    letterless[suspects] = (found & LETTER) == 0
    return letterless


def _per_text(flags: np.ndarray, cuts: list[int]) -> list[int]:
    """How many of each text's words are flagged (``cuts``: where each text's words start)."""
    counts = np.zeros(flags.size + 1, dtype=np.int64)
    np.cumsum(flags, out=counts[1:])
    return np.diff(counts[cuts]).tolist()


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Where each text starts in the texts joined by one separator."""
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return starts


def _batch_lower_words(
    whole: TextArrays, texts: list[str], starts: np.ndarray
) -> tuple[Words, np.ndarray]:
    """The lower words of the joined texts, and where each text starts among them.

    Where lower-casing may change lengths, each text is lowered on its own, so that the
    texts' offsets in the lowered whole are known.
    """
    if whole.points.dtype == np.uint8 or not (whole.classes & COMPLEX_LOWER).any():
        return whole.lower_words, starts
    lowered_texts = [text.lower() for text in texts]
    lowered = code_points("\n".join(lowered_texts))
    lengths = np.fromiter(map(len, lowered_texts), np.int64, len(texts))
    return Words.where(lowered, (classes(lowered) & WORD) != 0), _offsets(lengths)


def _cuts(words: Words, starts: np.ndarray) -> list[int]:
    """Where each text's words start among the joined texts' words, and their end."""
    return [*np.searchsorted(words.starts, starts).tolist(), len(words)]


def _split(words: Words, cuts: list[int], starts: np.ndarray) -> list[Words]:
    """The words of each text, from those of the joined texts (offsets back to each text)."""
    return [
        Words(words.starts[a:b] - at, words.ends[a:b] - at, words.hashes[a:b])
        for a, b, at in zip(cuts[:-1], cuts[1:], starts.tolist(), strict=True)
    ]


def distinct_among(words: list[Words], sorted_hashes: np.ndarray) -> list[int]:
    """For each text's words, how many distinct ones are among ``sorted_hashes``.

    ``len(np.unique(w.hashes[w.among(sorted_hashes)]))`` for each, in one pass for all.
    """
    if sorted_hashes.size == 0 or not words:
        return [0] * len(words)
    at = _positions(np.concatenate([w.hashes for w in words]), sorted_hashes)
    found = at >= 0
    text = np.repeat(np.arange(len(words)), [len(w) for w in words])
    # One key per (text, word of the set): distinct keys, counted per text.
    keys = np.unique(text[found] * sorted_hashes.size + at[found])
    return np.bincount(keys // sorted_hashes.size, minlength=len(words)).tolist()


@lru_cache(maxsize=16)
def hash_set(strings: frozenset[str]) -> np.ndarray:
    """Sorted distinct hashes of ``strings`` (a word list), for :meth:`Words.among`."""
    hashes = np.unique(hash_strings(sorted(strings)))
    hashes.flags.writeable = False  # shared by every caller
    return hashes
