"""Exact and near-duplicate detection.

Exact duplicates share :func:`components.textstats.text_hash` (equal up to case, punctuation
and white space). Near duplicates are found with MinHash signatures over word shingles and a
MinHash LSH index (datasketch): a document whose estimated Jaccard similarity to an earlier
kept document reaches the threshold is dropped, so the first occurrence is the one kept.
"""

from __future__ import annotations

import zlib

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from components.config import DedupParams

_PRIME = np.uint64(1_000_003)


def shingle_hashes(words: list[str], size: int) -> np.ndarray:
    """Distinct 32-bit hashes of the word ``size``-grams (of all words when fewer).

    Word hashes are CRC32 (deterministic across processes and runs, unlike ``hash``), combined
    in numpy; datasketch then mixes and permutes them, so 32 bits of input suffice.
    """
    table = {word: zlib.crc32(word.encode()) for word in set(words)}
    codes = np.fromiter(map(table.__getitem__, words), np.uint64, len(words))
    span = max(len(words) - size + 1, 1)
    hashes = codes[:span].copy()
    with np.errstate(over="ignore"):  # wrapping arithmetic is intended: a hash
        for offset in range(1, min(size, len(words))):
            hashes = hashes * _PRIME + codes[offset : offset + span]
    return np.unique((hashes >> np.uint64(32)) ^ (hashes & np.uint64(0xFFFFFFFF)))


def signatures(word_lists: list[list[str]], cfg: DedupParams) -> list[LeanMinHash]:
    """MinHash signature of each document's words, in bulk (compact and picklable)."""
    hashed = [shingle_hashes(words, cfg.shingle_words).tolist() for words in word_lists]
    minhashes = MinHash.bulk(hashed, num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=_identity)
    return [LeanMinHash(m) for m in minhashes]


def _identity(value: int) -> int:
    """Shingles arrive already hashed."""
    return value


class Deduplicator:
    """Remembers kept documents and names the duplicates among later ones."""

    def __init__(self, cfg: DedupParams) -> None:
        self.cfg = cfg
        self._hashes: set[str] = set()
        self._lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
        self._count = 0

    def check(self, text_hash: str, signature: LeanMinHash | None) -> str | None:
        """``exact_duplicate``, ``near_duplicate``, or None after remembering the document."""
        if self.cfg.exact and text_hash in self._hashes:
            return "exact_duplicate"
        if self._lsh is not None and signature is not None:
            if self._lsh.query(signature):
                return "near_duplicate"
            self._lsh.insert(str(self._count), signature, check_duplication=False)
        self._hashes.add(text_hash)
        self._count += 1
        return None
