"""Word n-gram statistics of a batch: checked against a reference, and documents kept apart."""

import random
from collections import Counter

import numpy as np
import pytest

from components.data.filters import TextView
from components.data.ngrams import (
    NgramChain,
    NgramLevel,
    WordBatch,
    duplicate_ngram_char_fractions,
    top_ngram_char_fractions,
)

VOCABULARY = ["a", "bb", "ccc", "dddd", "the", "river", "of", "x", "eeeeeee"]


def _chain(texts, first=1):
    views = [TextView(text) for text in texts]
    batch = WordBatch.of([v.arrays.words.hashes for v in views], [v.word_lengths for v in views])
    return NgramChain(batch, first)


def _reference_top(words, n):
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    count = max(counts.values())
    if count < 2:
        return 0.0
    # Equally frequent n-grams: the longest counts (the implementation's documented choice).
    longest = max(sum(map(len, gram)) for gram, c in counts.items() if c == count)
    return longest * count / max(sum(map(len, words)), 1)


def _reference_duplicate(words, n):
    seen, covered = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            covered[i : i + n] = [True] * n
        seen.add(gram)
    covered_chars = sum(len(w) for w, c in zip(words, covered, strict=True) if c)
    return covered_chars / max(sum(map(len, words)), 1)


def _random_words(rng, most=150):
    vocabulary = VOCABULARY[: rng.randint(2, len(VOCABULARY))]
    return [rng.choice(vocabulary) for _ in range(rng.randint(1, most))]


def test_fractions_by_hand():
    chain = _chain(["a bb a bb a"])  # 7 word characters
    assert top_ngram_char_fractions(chain, 2)[0] == pytest.approx(3 * 2 / 7)  # "a bb" twice
    assert duplicate_ngram_char_fractions(chain, 2)[0] == pytest.approx(4 / 7)  # words 2 to 4
    assert duplicate_ngram_char_fractions(chain, 3)[0] == pytest.approx(4 / 7)  # "a bb a" again
    assert top_ngram_char_fractions(chain, 4)[0] == 0.0  # no 4-gram occurs twice
    assert duplicate_ngram_char_fractions(chain, 4)[0] == 0.0


@pytest.mark.parametrize("seed", range(50))
def test_fractions_match_a_reference(seed):
    words = _random_words(random.Random(seed))
    chain = _chain([" ".join(words)])
    for n in range(1, 11):
        top, duplicate = _reference_top(words, n), _reference_duplicate(words, n)
        assert top_ngram_char_fractions(chain, n)[0] == pytest.approx(top, abs=1e-12, rel=0)
        assert duplicate_ngram_char_fractions(chain, n)[0] == pytest.approx(
            duplicate, abs=1e-12, rel=0
        )


@pytest.mark.parametrize("first", [1, 4, 10])
def test_a_level_is_the_same_whichever_size_the_chain_starts_at(first):
    words = _random_words(random.Random(first), most=300)
    chain = _chain([" ".join(words)], first)
    for n in range(first, 11):
        assert top_ngram_char_fractions(chain, n)[0] == pytest.approx(
            _reference_top(words, n), abs=1e-12, rel=0
        )
    with pytest.raises(ValueError, match="10 words and more, not 9"):
        _chain(["a b"], 10).level(9)


@pytest.mark.parametrize("seed", range(20))
def test_documents_of_a_batch_are_counted_apart(seed):
    """Each document gets exactly its fractions alone, though all share one vocabulary.

    Copies of one document follow each other, so their shared n-grams would count as
    repeats if they were not kept apart, and n-grams across a document's end would appear.
    """
    rng = random.Random(seed)
    documents = [_random_words(rng, most=60) for _ in range(rng.randint(1, 12))]
    documents += [documents[0], [], ["a"], documents[0]]
    rng.shuffle(documents)
    texts = [" ".join(words) for words in documents]
    batch = _chain(texts)
    for n in range(1, 11):
        alone_top = [top_ngram_char_fractions(_chain([t]), n)[0] for t in texts]
        alone_duplicate = [duplicate_ngram_char_fractions(_chain([t]), n)[0] for t in texts]
        assert top_ngram_char_fractions(batch, n).tolist() == alone_top
        assert duplicate_ngram_char_fractions(batch, n).tolist() == alone_duplicate
        assert alone_top == [pytest.approx(_reference_top(w, n)) for w in documents]


def test_an_empty_batch_has_no_fractions():
    chain = NgramChain(WordBatch.of([], []), 2)
    assert top_ngram_char_fractions(chain, 2).size == 0
    assert duplicate_ngram_char_fractions(chain, 5).size == 0


@pytest.mark.parametrize("size", [0, 1, 2, 50, 5000])
def test_level_finds_counts_first_and_later_occurrences(size):
    rng = np.random.default_rng(size)
    pool = rng.integers(0, 2**64, max(size // 4, 1), dtype=np.uint64)  # 64-bit n-gram hashes
    hashes = rng.choice(pool, size)
    position = np.uint64((1 << size.bit_length()) - 1)
    level, repeated = NgramLevel.of(np.arange(size), hashes, position)
    values, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    assert sorted(level.counts.tolist()) == sorted(counts.tolist())
    assert sorted(level.first_starts.tolist()) == sorted(first.tolist())
    later = sorted(set(range(size)) - set(first.tolist()))
    assert sorted(level.repeat_starts.tolist()) == later
    twice = np.isin(hashes, values[counts >= 2])
    assert sorted((repeated & position).tolist()) == np.flatnonzero(twice).tolist()
