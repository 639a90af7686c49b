"""Exact and near-duplicate detection.

Exact duplicates share :meth:`components.data.wordarrays.TextArrays.digest` (equal up to case,
punctuation and white space). Near duplicates are found with MinHash signatures over word
shingles and a MinHash LSH index (datasketch): a document whose estimated Jaccard similarity
to an earlier kept document reaches the threshold is dropped, so the first occurrence is kept.

Signatures use datasketch's ``affine32`` permutation scheme (its recommended one since 2.0)
with datasketch's own permutations. Workers apply them to a whole document at once in numpy:
the values equal ``MinHash(scheme="affine32", hashfunc=<identity>).update_batch(hashes)``
(a test checks), without its Python call per shingle, which used to cost more than every
quality rule together. Only the main process imports datasketch (it pulls in scipy, a second
of start-up), for the LSH index. It builds the index in a background thread while the
workers start, and a threshold the index cannot serve fails before any document is decided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from components.core.errors import ConfigError
from components.data.params import DedupParams

if TYPE_CHECKING:
    from datasketch import LeanMinHash, MinHashLSH

SCHEME = "affine32"
_PRIME = np.uint64(1_000_003)
_UINT32_MAX = np.iinfo(np.uint32).max
# Shingles per block when permuting: the temporary stays at 4 MB (128 x 8192 x 4 bytes)
# whatever a document's length.
_BLOCK = 8192
# Memory the indexes take per document kept (datasketch 2.0, CPython 3.11, measured on
# 100,000 documents): the exact index's digest, the near index's entry in each band, and
# the signature kept to check the index's candidates (numpy's array header, then 4 bytes a
# value).
EXACT_INDEX_BYTES = 140
NEAR_INDEX_BYTES_PER_BAND = 410
SIGNATURE_HEADER_BYTES = 112

log = logging.getLogger(__name__)


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
    """MinHash signature of each document, from its word hashes."""
    return [signature(shingle_hashes(h, shingle_words), permutations) for h in word_hashes]


def index_bytes(documents: int, bands: int, num_perm: int) -> int:
    """Memory the indexes need once ``documents`` are kept (``bands``: 0 without near dedup)."""
    near = bands * NEAR_INDEX_BYTES_PER_BAND + SIGNATURE_HEADER_BYTES + 4 * num_perm
    return documents * (EXACT_INDEX_BYTES + (near if bands else 0))


class Deduplicator:
    """Remembers kept documents and names the duplicates among later ones.

    ``documents`` (how many will be checked, when known) lets the near index warn at once
    when keeping them all could exhaust the machine's memory.
    """

    def __init__(self, cfg: DedupParams, documents: int = 0) -> None:
        self.cfg = cfg
        self.documents = documents
        self._hashes: set[str] = set()
        self.permutations = Permutations.of(cfg) if cfg.near else None
        self._index: tuple[MinHashLSH, Callable[..., LeanMinHash]] | None = None
        self._build: Future[None] | None = None
        self._signatures: list[np.ndarray] = []  # of the kept documents, by LSH key

    def prepare(self) -> Future[None]:
        """Start building the near-duplicate index in a background thread.

        Importing datasketch takes a second (it loads scipy): started before the workers,
        the build overlaps with their first batches. A threshold the index cannot serve is
        raised by the returned future and by the first :meth:`check`, before any document
        is decided.

        Raises (through the future):
            ConfigError: datasketch finds no LSH banding for the threshold and num_perm.
        """
        if self._build is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="lsh-index")
            self._build = pool.submit(self._build_index)
            pool.shutdown(wait=False)  # the build goes on; the pool takes no more work
        return self._build

    def ready(self) -> bool:
        """Whether :meth:`check` can answer without waiting for the index to be built.

        Also true once the build failed: :meth:`check` then raises its error.
        """
        return self.prepare().done()

    def _near_index(self) -> tuple[MinHashLSH, Callable[..., LeanMinHash]]:
        """The LSH index and a signature wrapper (waits for :meth:`prepare`'s build)."""
        if self._index is None:
            self.prepare().result()
        assert self._index is not None
        return self._index

    def _build_index(self) -> None:
        if not self.cfg.near:
            return
        from datasketch import LeanMinHash, MinHashLSH

        try:
            lsh = MinHashLSH(threshold=self.cfg.threshold, num_perm=self.cfg.num_perm)
        except ValueError as error:
            raise ConfigError(
                [
                    f"clean.dedup.threshold: {self.cfg.threshold} with clean.dedup.num_perm "
                    f"{self.cfg.num_perm} gives no usable LSH index ({error}); raise "
                    "num_perm or lower the threshold"
                ]
            ) from None
        self._warn_if_too_large(lsh.b)
        self._index = lsh, partial(LeanMinHash, seed=self.cfg.seed, scheme=SCHEME)

    def _warn_if_too_large(self, bands: int) -> None:
        """Warn when the indexes could take more than half of this machine's memory."""
        import psutil  # main process only, like datasketch

        needed = index_bytes(self.documents, bands, self.cfg.num_perm)
        total = psutil.virtual_memory().total
        if needed > total / 2:
            log.warning(
                "the dedup indexes may grow to %.1f GB if all %d documents are kept (%.1f KB "
                "each), on a machine with %.1f GB; set clean.dedup.near: false to keep only "
                "the exact index (%.2f KB each)",
                needed / 1e9,
                self.documents,
                needed / max(self.documents, 1) / 1e3,
                total / 1e9,
                EXACT_INDEX_BYTES / 1e3,
            )

    def check(self, text_hash: str, signature: np.ndarray | None) -> str | None:
        """``exact_duplicate``, ``near_duplicate``, or None after remembering the document."""
        if self.cfg.exact and text_hash in self._hashes:
            return "exact_duplicate"
        if self.cfg.near and signature is not None:
            lsh, wrap = self._near_index()
            minhash = wrap(hashvalues=signature)
            # LSH candidates share a band only: keep those whose estimate is below threshold.
            if any(self._similar(signature, int(key)) for key in lsh.query(minhash)):
                return "near_duplicate"
            lsh.insert(str(len(self._signatures)), minhash, check_duplication=False)
            self._signatures.append(signature)
        self._hashes.add(text_hash)
        return None

    def _similar(self, signature: np.ndarray, kept: int) -> bool:
        """Whether the similarity to kept document ``kept`` reaches the threshold.

        The share of equal MinHash values estimates the Jaccard similarity.
        """
        equal = np.count_nonzero(signature == self._signatures[kept])
        return equal >= self.cfg.threshold * signature.size
