"""Exact and near-duplicate removal out of core: records on disk, sorted in bounded pieces.

The documents that pass the quality rules are the *candidates*, numbered in input order.
As they are assessed, :class:`DedupStore` appends to files (never to memory):

- each candidate's MinHash signature (:mod:`components.data.minhash`), one row per
  candidate in ``signatures.u32``;
- its exact-dedup digest, to one of ``exact-<p>.bin`` by the digest's value;
- for each LSH band, a 64-bit key of the band's slice of the signature, to one of
  ``band-<b>-<p>.bin`` by the key's value.

:meth:`DedupStore.decide` then reads one partition file at a time (their count comes from
``clean.dedup.memory_mb``, so one partition and its sort fit in it): equal digests are
exact duplicates; candidates sharing a band key are checked against the signatures on disk
(the band really equal, the share of equal values at the threshold), which gives the
near-duplicate pairs. The decisions follow the rule of an in-memory index, in input order:
a candidate is an exact duplicate when an earlier *kept* candidate has its digest, a near
duplicate when an earlier *kept* candidate shares a band with it and reaches the threshold,
and kept otherwise, so the first occurrence is the one kept, as with datasketch's
``MinHashLSH`` holding every kept document (a test holds the two to the same decisions).

This is the design of datatrove's MinHash stages (signatures, buckets, clusters, filter),
with its union-find over duplicate pairs replaced by that first-kept rule. Besides the
partition being sorted, memory holds one byte per candidate (the decisions) and the
duplicate pairs found; the files take ``4 * num_perm + 16 * bands + 24`` bytes a candidate.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from components.data.params import DedupParams

log = logging.getLogger(__name__)

KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "exact_duplicate", NEAR: "near_duplicate"}
SIGNATURES_FILE = "signatures.u32"
_BAND_RECORD = np.dtype([("key", "<u8"), ("doc", "<u8")])
_DIGEST_RECORD = np.dtype([("high", "<u8"), ("low", "<u8"), ("doc", "<u8")])
# Bytes a record costs while its partition is sorted: the records, the sort's index, and
# the sorted copy.
_SORT_BYTES = {_BAND_RECORD: 40, _DIGEST_RECORD: 56}
_UINT64_MASK = (1 << 64) - 1


def partitions(candidates: int, memory_mb: int) -> int:
    """Partition files per record kind so that sorting one takes at most ``memory_mb``."""
    largest = candidates * max(_SORT_BYTES.values())
    return max(1, math.ceil(largest / (memory_mb << 20)))


def band_keys(signatures: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """A 64-bit key of each band of each signature (rows: signatures; columns: bands).

    Equal slices give equal keys; unequal ones rarely collide, and :meth:`DedupStore.decide`
    compares the slices themselves before calling two documents candidates.
    """
    keys = np.empty((signatures.shape[0], len(bands)), dtype=np.uint64)
    values = signatures.astype(np.uint64)
    with np.errstate(over="ignore"):  # wrapping arithmetic is intended: a hash
        for column, (start, end) in enumerate(bands):
            key = np.full(signatures.shape[0], np.uint64(0x9E3779B97F4A7C15))
            for position in range(start, end):
                key = (key ^ values[:, position]) * np.uint64(0x100000001B3)
            keys[:, column] = key ^ (key >> np.uint64(29))
    return keys


class DedupStore:
    """Appends the candidates' records to files in ``folder``, and decides on them.

    ``expected`` (an upper bound of the candidates, such as the input's document count)
    sets the partition count, so that sorting one partition fits in ``cfg.memory_mb``.
    """

    def __init__(
        self, folder: Path, cfg: DedupParams, bands: list[tuple[int, int]], expected: int
    ) -> None:
        self.folder = folder
        self.cfg = cfg
        self.bands = bands if cfg.near else []
        self.partitions = partitions(expected, cfg.memory_mb)
        self.candidates = 0
        folder.mkdir(parents=True, exist_ok=True)
        self._files = {name: (folder / name).open("ab") for name in self._names()}

    def _names(self) -> list[str]:
        names = [SIGNATURES_FILE] if self.cfg.near else []
        parts = range(self.partitions)
        names += [f"exact-{p:03d}.bin" for p in parts] if self.cfg.exact else []
        names += [f"band-{b:02d}-{p:03d}.bin" for b in range(len(self.bands)) for p in parts]
        return names

    def add(self, digests: list[str], signatures: list[np.ndarray]) -> None:
        """Append the records of the next candidates (their signatures when near is on)."""
        docs = np.arange(self.candidates, self.candidates + len(digests), dtype=np.uint64)
        self.candidates += len(digests)
        if not len(digests):
            return
        if self.cfg.exact:
            self._append_digests(digests, docs)
        if self.cfg.near:
            stacked = np.stack(signatures).astype(np.uint32, copy=False)
            self._files[SIGNATURES_FILE].write(stacked.tobytes())
            self._append_bands(band_keys(stacked, self.bands), docs)

    def _append_digests(self, digests: list[str], docs: np.ndarray) -> None:
        records = np.empty(len(docs), dtype=_DIGEST_RECORD)
        # The digest's first 128 bits: equal for equal texts, apart for any two real ones.
        values = [int(digest[:32], 16) for digest in digests]
        records["high"] = [value >> 64 for value in values]
        records["low"] = [value & _UINT64_MASK for value in values]
        records["doc"] = docs
        self._spread(records, records["high"], "exact-{p:03d}.bin")

    def _append_bands(self, keys: np.ndarray, docs: np.ndarray) -> None:
        records = np.empty(len(docs), dtype=_BAND_RECORD)
        records["doc"] = docs
        for band in range(len(self.bands)):
            records["key"] = keys[:, band]
            self._spread(records, records["key"], f"band-{band:02d}-{{p:03d}}.bin")

    def _spread(self, records: np.ndarray, by: np.ndarray, name: str) -> None:
        """Append each record to the partition file its ``by`` value picks."""
        part = by % np.uint64(self.partitions)
        for p in range(self.partitions):
            chosen = records[part == p] if self.partitions > 1 else records
            if len(chosen):
                self._files[name.format(p=p)].write(chosen.tobytes())

    def sync(self) -> dict[str, int]:
        """Flush every file to disk; the sizes and count a later :meth:`restore` needs."""
        for handle in self._files.values():
            handle.flush()
            os.fsync(handle.fileno())
        sizes = {name: handle.tell() for name, handle in self._files.items()}
        return {"candidates": self.candidates, "sizes": sizes}

    def restore(self, state: dict | None) -> None:
        """Cut the files back to a :meth:`sync` state (None: empty), dropping later records."""
        state = state or {"candidates": 0, "sizes": {}}
        for name, handle in self._files.items():
            handle.truncate(state["sizes"].get(name, 0))
            handle.seek(0, os.SEEK_END)
        self.candidates = state["candidates"]

    def close(self) -> None:
        """Close the files."""
        for handle in self._files.values():
            handle.close()

    def decide(self) -> np.ndarray:
        """``KEPT``, ``EXACT`` or ``NEAR`` for each candidate, in input order."""
        self.sync()
        children, parents = self._exact_pairs()
        later, earlier = self._near_pairs(absorbed=children)
        log.info(
            "dedup: %d candidates, %d with an equal digest before them, %d near pairs",
            self.candidates,
            len(children),
            len(later),
        )
        return first_kept(self.candidates, children, parents, later, earlier)

    def _records(self, name: str, dtype: np.dtype) -> np.ndarray:
        return np.fromfile(self.folder / name, dtype=dtype)

    def _exact_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate whose digest an earlier one has, and the first one with it."""
        found = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)]
        for p in range(self.partitions if self.cfg.exact else 0):
            records = self._records(f"exact-{p:03d}.bin", _DIGEST_RECORD)
            if not len(records):
                continue
            records = records[np.lexsort((records["doc"], records["low"], records["high"]))]
            first = _group_starts(
                (records["high"][1:] != records["high"][:-1])
                | (records["low"][1:] != records["low"][:-1])
            )
            group = np.cumsum(first) - 1
            found[0].append(records["doc"][~first])
            found[1].append(records["doc"][first][group[~first]])
        return np.concatenate(found[0]), np.concatenate(found[1])

    def _near_pairs(self, absorbed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (later, earlier) that share a band and reach the threshold.

        Candidates with an earlier equal digest (``absorbed``) are left out: their
        signature is their first copy's, and so is their fate.
        """
        if not self.cfg.near or not self.candidates:
            return np.empty(0, np.uint64), np.empty(0, np.uint64)
        skip = np.zeros(self.candidates, dtype=bool)
        skip[absorbed] = True
        signatures = np.memmap(
            self.folder / SIGNATURES_FILE,
            dtype=np.uint32,
            mode="r",
            shape=(self.candidates, self.cfg.num_perm),
        )
        found: list[np.ndarray] = [np.empty((0, 2), np.uint64)]
        for band, (start, end) in enumerate(self.bands):
            for p in range(self.partitions):
                records = self._records(f"band-{band:02d}-{p:03d}.bin", _BAND_RECORD)
                records = records[~skip[records["doc"]]]
                for pairs in _bucket_pairs(records, self._pairs_per_check()):
                    found.append(self._confirmed(pairs, signatures, start, end))
        pairs = np.unique(np.concatenate(found), axis=0)
        return pairs[:, 0], pairs[:, 1]

    def _pairs_per_check(self) -> int:
        """Pairs whose two signatures fit in a quarter of the memory at once."""
        return max(1024, (self.cfg.memory_mb << 20) // (4 * 2 * 4 * self.cfg.num_perm))

    def _confirmed(
        self, pairs: np.ndarray, signatures: np.ndarray, start: int, end: int
    ) -> np.ndarray:
        """The pairs whose band is equal and whose signatures agree at the threshold."""
        later, earlier = signatures[pairs[:, 0]], signatures[pairs[:, 1]]
        equal = later == earlier
        same_band = equal[:, start:end].all(axis=1)
        similar = np.count_nonzero(equal, axis=1) >= self.cfg.threshold * self.cfg.num_perm
        return pairs[same_band & similar]


def _group_starts(differs: np.ndarray) -> np.ndarray:
    """Where a run of equal sorted values starts, from ``value[i + 1] != value[i]``."""
    return np.concatenate([[True], differs])


def _bucket_pairs(records: np.ndarray, chunk: int) -> Iterator[np.ndarray]:
    """Pairs (later, earlier) of documents with equal band keys, ``chunk`` at most at once.

    The records come in document order, so a stable sort by key keeps each bucket in it.
    """
    if len(records) < 2:
        return
    records = records[np.argsort(records["key"], kind="stable")]
    keys, docs = records["key"], records["doc"]
    starts = np.flatnonzero(_group_starts(keys[1:] != keys[:-1]))
    sizes = np.diff(np.append(starts, len(records)))
    twos = starts[sizes == 2]  # the common bucket, paired in one step
    if len(twos):
        yield np.column_stack([docs[twos + 1], docs[twos]])
    pending: list[np.ndarray] = []
    held = 0
    for start, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
        members = docs[start : start + size]
        first, second = np.triu_indices(size, 1)
        pending.append(np.column_stack([members[second], members[first]]))
        held += len(first)
        if held >= chunk:
            yield np.concatenate(pending)
            pending, held = [], 0
    if pending:
        yield np.concatenate(pending)


def first_kept(
    candidates: int,
    children: np.ndarray,
    parents: np.ndarray,
    later: np.ndarray,
    earlier: np.ndarray,
) -> np.ndarray:
    """Decisions in input order, each candidate against the earlier ones *kept*.

    ``children`` have the digest of ``parents`` (their first copy); a near pair says that
    ``later`` shares a band with ``earlier`` and reaches the threshold. A child is an exact
    duplicate when its parent is kept, and a near duplicate otherwise: its parent was
    dropped as a near duplicate of a kept candidate, which is then one of the child's too.
    """
    decisions = np.zeros(candidates, dtype=np.uint8)
    parent_of = dict(zip(children.tolist(), parents.tolist(), strict=True))
    order = np.argsort(later, kind="stable")
    later, earlier = later[order], earlier[order]
    neighbours = {}
    if len(later):
        starts = np.flatnonzero(_group_starts(later[1:] != later[:-1]))
        neighbours = dict(zip(later[starts].tolist(), np.split(earlier, starts[1:]), strict=True))
    for doc in sorted(parent_of.keys() | neighbours.keys()):
        if doc in parent_of:
            decisions[doc] = EXACT if decisions[parent_of[doc]] == KEPT else NEAR
        elif (decisions[neighbours[doc]] == KEPT).any():
            decisions[doc] = NEAR
    return decisions
