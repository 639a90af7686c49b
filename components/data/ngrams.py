"""Repeated word n-grams of a batch of documents, for the Gopher repetition rules.

The rules ask, for each document and n-gram size, how much of its text the most frequent
n-gram covers and how much repeats an earlier n-gram. Counted one document at a time, a few
thousand words each, these were dozens of numpy calls on small arrays per document, and the
calls cost more than the counting. Here the words of a whole batch are laid end to end and
each n-gram size is counted for every document at once: n-grams never cross a document's
end, and each document's n-grams hash apart from the others', so the counts are each
document's own (a test checks them against documents counted alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for n-gram hashing


@dataclass(frozen=True)
class WordBatch:
    """The words of several documents end to end: a hash and a character count per word.

    Attributes:
        hashes: each word's 64-bit hash (:mod:`components.data.wordarrays`).
        lengths: each word's characters.
        document: for each word, the index of its document.
        document_end: for each word, the position just past its document's last word.
        edges: characters before each word position (``edges[-1]``: all words' characters).
        characters: each document's word characters.
    """

    hashes: np.ndarray
    lengths: np.ndarray
    document: np.ndarray
    document_end: np.ndarray
    edges: np.ndarray
    characters: np.ndarray

    @classmethod
    def of(cls, hashes: list[np.ndarray], lengths: list[np.ndarray]) -> WordBatch:
        """The batch of documents whose words have these ``hashes`` and ``lengths``."""
        sizes = np.fromiter(map(len, hashes), dtype=np.int64, count=len(hashes))
        ends = np.cumsum(sizes)
        edges = np.zeros(int(ends[-1]) + 1 if sizes.size else 1, dtype=np.int64)
        word_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        np.cumsum(word_lengths, out=edges[1:])
        return cls(
            hashes=np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64),
            lengths=word_lengths,
            document=np.repeat(np.arange(sizes.size), sizes),
            document_end=np.repeat(ends, sizes),
            edges=edges,
            characters=edges[ends] - edges[ends - sizes],
        )

    @property
    def documents(self) -> int:
        """How many documents the batch holds."""
        return self.characters.size

    @property
    def size(self) -> int:
        """How many words the batch holds."""
        return self.hashes.size


@dataclass(frozen=True)
class NgramLevel:
    """Repetition facts about the n-grams of one size.

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
        ``argsort``. Hashes keep 64 bits less the position's: at least 40 bits for batches
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


class NgramChain:
    """A batch's n-gram levels from size ``first`` up, each counted when first asked for.

    An n-gram can repeat only if its (n-1)-gram prefix repeats, so each level after the
    first looks only at the survivors of the previous one: one full sort per batch, then
    small ones. A level holds the same repeats whichever size the chain starts at.
    """

    def __init__(self, words: WordBatch, first: int) -> None:
        self.words, self.first = words, first
        self.position = np.uint64((1 << words.size.bit_length()) - 1)  # see NgramLevel.of
        self.levels: dict[int, NgramLevel] = {}
        starts = np.flatnonzero(np.arange(words.size) + first <= words.document_end)
        # A salt per document: the same words in two documents make two different n-grams.
        salt = _mix(words.document[starts].astype(np.uint64) + np.uint64(1))
        with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is intended: a hash
            hashes = (words.hashes[starts] + salt) * _MIX
            for offset in range(1, first):
                hashes = _mix(hashes) + words.hashes[starts + offset]
        self._next, self._starts, self._hashes = first, starts, hashes

    def level(self, n: int) -> NgramLevel:
        """Level ``n`` (at least ``first``), counting the levels up to it if not done yet."""
        if n < self.first:
            raise ValueError(f"this chain counts n-grams of {self.first} words and more, not {n}")
        while n not in self.levels:
            self._count_next()
        return self.levels[n]

    def _count_next(self) -> None:
        n, position = self._next, self.position
        self.levels[n], keys = NgramLevel.of(self._starts, self._hashes, position)
        starts = (keys & position).astype(np.int64)
        room = starts + n < self.words.document_end[starts]  # for one more word
        starts = starts[room]
        with np.errstate(over="ignore"):
            self._hashes = _mix(keys[room] & ~position) + self.words.hashes[starts + n]
        self._next, self._starts = n + 1, starts


def _mix(values: np.ndarray) -> np.ndarray:
    """Scramble 64-bit hashes before adding the next word (order-sensitive n-gram hash)."""
    return (values ^ (values >> np.uint64(29))) * _MIX


def top_ngram_char_fractions(chain: NgramChain, n: int) -> np.ndarray:
    """Per document: the fraction of word characters inside its most frequent n-gram.

    Counted only if that n-gram repeats (else 0). When several n-grams are equally frequent,
    the longest counts: the strictest reading of Gopher's rule, and independent of hash order.
    """
    words, level = chain.words, chain.level(n)
    document = words.document[level.first_starts]
    most = np.zeros(words.documents, dtype=np.int64)
    np.maximum.at(most, document, level.counts)
    top = (level.counts == most[document]) & (level.counts >= 2)
    starts = level.first_starts[top]
    longest = np.zeros(words.documents, dtype=np.int64)
    np.maximum.at(longest, document[top], words.edges[starts + n] - words.edges[starts])
    return longest * most / np.maximum(words.characters, 1)


def duplicate_ngram_char_fractions(chain: NgramChain, n: int) -> np.ndarray:
    """Per document: the fraction of word characters in n-grams that repeat an earlier one.

    The repeats are few: their word spans are merged where they overlap and measured by
    their ends, where marking every word of the batch as covered or not took six passes over
    all of its words for each n-gram size.
    """
    words = chain.words
    starts = np.sort(chain.level(n).repeat_starts)
    if not starts.size:
        return np.zeros(words.documents)
    reach = np.maximum.accumulate(starts + n)  # the furthest end of the spans so far
    # A span starts a merged one where it begins at or after the end of every earlier one.
    # Repeats end within their document, so no merged span crosses a document's end.
    first = np.flatnonzero(np.concatenate(([True], starts[1:] >= reach[:-1])))
    last = np.append(first[1:] - 1, starts.size - 1)
    characters = words.edges[reach[last]] - words.edges[starts[first]]
    covered = np.bincount(
        words.document[starts[first]], weights=characters, minlength=words.documents
    )
    return covered / np.maximum(words.characters, 1)
