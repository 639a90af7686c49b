"""MinHash signatures of documents, and the LSH bands that make two of them candidates.

Signatures use datasketch's ``affine32`` permutation scheme (its recommended one since 2.0)
with datasketch's own permutations. Workers apply them to a whole document at once in numpy:
the values equal ``MinHash(scheme="affine32", hashfunc=<identity>).update_batch(hashes)``
(a test checks), without its Python call per shingle, which used to cost more than every
quality rule together. Only the stage's own process imports datasketch (it pulls in scipy,
a second of start-up), for the banding that :func:`lsh_bands` takes from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.core.errors import ConfigError
from components.data.params import DedupParams

SCHEME = "affine32"
_PRIME = np.uint64(1_000_003)
_UINT32_MAX = np.iinfo(np.uint32).max
# Shingles per block when permuting: the temporary stays at 4 MB (128 x 8192 x 4 bytes)
# whatever a document's length.
_BLOCK = 8192


@dataclass(frozen=True)
class Permutations:
    """The MinHash permutations ``h -> a * h + b (mod 2**32)``, one per signature value."""

    a: np.ndarray
    b: np.ndarray

    @classmethod
    def of(cls, cfg: DedupParams) -> Permutations:
        """The permutations datasketch draws for ``cfg.num_perm`` and ``cfg.seed``.

        Drawn here as ``MinHash(scheme="affine32")`` draws them (a test checks they are
        equal), so that workers get them before the main process has loaded datasketch.
        """
        rng = np.random.RandomState(cfg.seed)
        a = rng.randint(0, 1 << 31, cfg.num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = rng.randint(0, 1 << 32, cfg.num_perm, dtype=np.uint32)
        return cls(a, b)


def shingle_hashes(word_hashes: np.ndarray, size: int) -> np.ndarray:
    """Distinct 32-bit hashes of the word ``size``-grams (of all words when fewer).

    ``word_hashes`` are 64-bit word hashes that are the same in every process and run
    (:mod:`components.data.wordarrays`, unlike ``hash``), combined in numpy into one hash per
    shingle.
    """
    codes = word_hashes.astype(np.uint64, copy=False)
    words = codes.size
    span = max(words - size + 1, 1)
    hashes = codes[:span].copy()
    with np.errstate(over="ignore"):  # wrapping arithmetic is intended: a hash
        for offset in range(1, min(size, words)):
            hashes = hashes * _PRIME + codes[offset : offset + span]
    folded = np.sort(((hashes >> np.uint64(32)) ^ hashes).astype(np.uint32))
    # Distinct values from the sorted array: np.unique's hash table is 10x slower here.
    distinct = np.empty(folded.size, dtype=bool)
    distinct[:1] = True
    np.not_equal(folded[1:], folded[:-1], out=distinct[1:])
    return folded[distinct]


def _fmix32(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: the pre-mix datasketch applies before permuting."""
    values = values ^ (values >> np.uint32(16))
    values = values * np.uint32(0x85EBCA6B)
    values = values ^ (values >> np.uint32(13))
    values = values * np.uint32(0xC2B2AE35)
    return values ^ (values >> np.uint32(16))


def signature(hashes: np.ndarray, permutations: Permutations) -> np.ndarray:
    """MinHash values (uint32) of a set of 32-bit shingle hashes."""
    a, b = permutations.a, permutations.b[:, None]
    values = np.full(a.size, _UINT32_MAX, dtype=np.uint32)
    mixed = _fmix32(hashes.astype(np.uint32, copy=False))
    for start in range(0, mixed.size, _BLOCK):
        # uint32 products wrap: the modulo 2**32 of the scheme is the hardware's.
        block = np.multiply.outer(a, mixed[start : start + _BLOCK])
        block += b
        np.minimum(values, block.min(axis=1), out=values)
    return values


def signatures(
    word_hashes: list[np.ndarray], shingle_words: int, permutations: Permutations
) -> list[np.ndarray]:
    """MinHash signature of each document, from its word hashes.

    Documents are permuted together, as many as fill a block: one product and one
    segmented minimum for the block cost less than a few numpy calls per document.
    """
    sets = [shingle_hashes(h, shingle_words) for h in word_hashes]
    values = np.full((len(sets), permutations.a.size), _UINT32_MAX, dtype=np.uint32)
    group: list[int] = []
    size = 0
    for index, hashes in enumerate(sets):
        if hashes.size > _BLOCK:  # a long document fills blocks on its own
            values[index] = signature(hashes, permutations)
            continue
        if size + hashes.size > _BLOCK:
            values[group] = _permute_together([sets[i] for i in group], permutations)
            group, size = [], 0
        if hashes.size:  # the empty set keeps the maximum
            group.append(index)
            size += hashes.size
    if group:
        values[group] = _permute_together([sets[i] for i in group], permutations)
    return list(values)


def _permute_together(sets: list[np.ndarray], permutations: Permutations) -> np.ndarray:
    """The signatures of non-empty shingle sets of at most ``_BLOCK`` shingles in all."""
    sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    starts = np.zeros(len(sets), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    mixed = _fmix32(np.concatenate(sets).astype(np.uint32, copy=False))
    block = np.multiply.outer(permutations.a, mixed)  # uint32 products wrap, as in signature
    block += permutations.b[:, None]
    return np.minimum.reduceat(block, starts, axis=1).T


def lsh_bands(cfg: DedupParams) -> list[tuple[int, int]]:
    """The signature slices ``[start, end)`` of datasketch's LSH banding for ``cfg``.

    Two documents are candidates when their signatures are equal in at least one band, as
    in ``MinHashLSH(threshold, num_perm)``, whose false-positive and false-negative weights
    choose the number of bands.

    Raises:
        ConfigError: datasketch finds no banding for the threshold and num_perm.
    """
    from datasketch import MinHashLSH  # loads scipy: the stage's process only

    try:
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    except ValueError as error:
        raise ConfigError(
            [
                f"clean.dedup.threshold: {cfg.threshold} with clean.dedup.num_perm "
                f"{cfg.num_perm} gives no usable LSH index ({error}); raise num_perm or "
                "lower the threshold"
            ]
        ) from None
    return [(int(start), int(end)) for start, end in lsh.hashranges]
