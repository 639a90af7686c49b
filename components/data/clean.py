"""Stage ``clean``: normalise, quality-filter and deduplicate the ingested articles.

Two passes over the ingested shards, both fanned out to worker processes (or a Dask
cluster's workers: ``data.engine``):

1. *assess*: each document is normalised and put through the Gopher rules, and a document
   that passes gets its digest and MinHash signature (:func:`components.data.assess.assess_batch`).
   The outcomes go to disk, shard by shard: the dedup records (:mod:`components.data.dedup`)
   and a small table per shard (reason, words). Each shard is then marked done
   (:mod:`components.core.resume`), so a killed run resumes at the first shard not done.
2. *write*: dedup decides on the records on disk, in bounded memory, then each document's
   row goes to ``data/clean/`` (kept) or ``data/clean/rejected/`` (dropped, with its reason,
   for audit), in input order.

Memory stays flat whatever the dump: batches in flight, one shard's table, the partition
being sorted (``clean.dedup.memory_mb``) and one byte per document that passes the rules.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.progress import progress
from components.core.resume import ShardProgress, work_folder
from components.core.schema import Report
from components.data.assess import Assessment, assess_batch, finish_batch
from components.data.dedup import KEPT, REASONS, DedupStore
from components.data.documents import (
    REJECTED_SCHEMA,
    ShardWriter,
    arrow_column,
    count_rows,
    iter_shard,
    shard_paths,
    shard_rows,
)
from components.data.minhash import Permutations, lsh_bands
from components.data.params import DataSections

log = logging.getLogger(__name__)

# Work comes to the workers in pieces of about 0.2 s: both stay busy to the last piece.
_BATCH_DOCS = 128
_BATCH_CHARS = 1_000_000
# What each ingested shard's assessment table holds (one row per document, in order).
OUTCOME_SCHEMA = pa.schema(
    [("reason", pa.string()), ("words", pa.int64()), ("words_out", pa.int64())]
)
# Bumped when the work folder's files change meaning: older work is then redone.
WORK_FORMAT = 1


class CleanResult(Report):
    """What ``clean`` did: written to ``metrics/clean.json``."""

    documents_in: int
    documents_out: int
    words_in: int
    words_out: int
    rejected: dict[str, int]
    rejected_words: dict[str, int]
    seconds: float


def run(params: DataSections, paths: Paths) -> CleanResult:
    """Clean ``paths.ingest`` into ``paths.clean`` (kept) and ``paths.clean/rejected``.

    Raises:
        ArtifactError: the ingested corpus is missing or from another stage.
        ConfigError: the dedup threshold has no LSH banding (before any work).
    """
    cfg = params.clean
    read_meta(paths.ingest, "ingest")
    started = time.perf_counter()
    bands = lsh_bands(cfg.dedup) if cfg.dedup.near else []
    shards = shard_paths(paths.ingest)
    inputs = {"ingest": dir_digest(paths.ingest)}
    origin = {"format": WORK_FORMAT, "params": cfg.model_dump(mode="json"), "inputs": inputs}
    work = ShardProgress(work_folder(paths.clean), origin)
    store = DedupStore(work.folder / "dedup", cfg.dedup, bands, count_rows(paths.ingest))
    try:
        with work.kept_for_a_rerun():
            _assess(params, shards, work, store)
            decisions = store.decide()
    finally:
        store.close()
    with atomic_dir(paths.clean) as out:
        tally = _write(params, shards, work.folder, decisions, out)
        result = tally.result(time.perf_counter() - started)
        meta = build_meta(
            "clean", cfg.model_dump(mode="json"), inputs, **result.model_dump(exclude={"seconds"})
        )
        write_json(out / "meta.json", meta)
    work.remove()
    log.info(
        "clean: kept %d of %d documents; dropped %s",
        result.documents_out,
        result.documents_in,
        result.rejected or "none",
    )
    return result


def _outcomes_path(folder: Path, shard: int) -> Path:
    return folder / "outcomes" / f"part-{shard:05d}.parquet"


def _assess(params: DataSections, shards: list[Path], work: ShardProgress, store: DedupStore):
    """Pass 1: assess the shards not yet done, writing their outcomes and dedup records."""
    cfg = params.clean
    done, state = work.resume()
    store.restore(state)
    if done:
        log.info("clean: %d of %d shards were assessed by an earlier run", done, len(shards))
    permutations = Permutations.of(cfg.dedup) if cfg.dedup.near else None
    assess = partial(assess_batch, cfg=cfg, permutations=permutations)
    origins: deque[tuple[int, bool]] = deque()  # (shard, last batch of it) per batch in flight
    batches = _batches(shards, done, origins)
    table = _OutcomeTable()
    total = sum(shard_rows(path) for path in shards[done:])
    with progress(total=total, unit="doc", desc="clean: assess") as bar:
        for assessments in ordered_map(
            assess, batches, worker_count(cfg.workers), engine=params.data
        ):
            shard, last = origins.popleft()
            table.add(assessments)
            passed = [a for a in assessments if a.reason is None]
            store.add([a.text_hash for a in passed], [a.signature for a in passed])
            bar.update(len(assessments))
            if last:
                table.write(_outcomes_path(work.folder, shard))
                work.mark_done(shard, store.sync())


def _batches(shards: list[Path], first: int, origins: deque[tuple[int, bool]]) -> Iterator[list]:
    """Batches of the shards from ``first`` on; each batch's origin goes to ``origins``.

    Every shard gives at least one batch (maybe empty), and its last one says so, so that
    each shard is marked done even with no documents.
    """
    for index in range(first, len(shards)):
        previous = None
        for batch in iter_shard(shards[index], _BATCH_DOCS, _BATCH_CHARS):
            if previous is not None:
                origins.append((index, False))
                yield previous
            previous = batch
        origins.append((index, True))
        yield previous or []


@dataclass
class _OutcomeTable:
    """The rules' reason and the word counts of each document of the shard in progress."""

    reasons: list[str | None] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
    words_out: list[int] = field(default_factory=list)

    def add(self, assessments: list[Assessment]) -> None:
        """Remember a batch's outcomes."""
        self.reasons += [a.reason for a in assessments]
        self.words += [a.words for a in assessments]
        self.words_out += [a.words_out for a in assessments]

    def write(self, path: Path) -> None:
        """Write the shard's table atomically, then start the next shard's."""
        columns = [
            arrow_column(values, column.type)
            for values, column in zip(
                (self.reasons, self.words, self.words_out), OUTCOME_SCHEMA, strict=True
            )
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_name(f".{path.name}.partial")
        pq.write_table(pa.Table.from_arrays(columns, schema=OUTCOME_SCHEMA), partial_path)
        partial_path.replace(path)
        self.reasons, self.words, self.words_out = [], [], []


def _write(
    params: DataSections, shards: list[Path], folder: Path, decisions: np.ndarray, out: Path
) -> _Tally:
    """Pass 2: write every document where dedup's and the rules' decisions send it."""
    cfg = params.clean
    tally = _Tally(ShardWriter(out), ShardWriter(out / "rejected", REJECTED_SCHEMA))
    items = _decided_batches(shards, folder, decisions, tally)
    finish = partial(finish_batch, cfg=cfg)
    total = sum(shard_rows(path) for path in shards)
    with progress(total=total, unit="doc", desc="clean: write") as bar:
        for rows in ordered_map(finish, items, worker_count(cfg.workers), engine=params.data):
            for reason, row in rows:
                (tally.rejected if reason else tally.kept).write(row)
            bar.update(len(rows))
    tally.kept.close()
    tally.rejected.close()
    return tally


def _decided_batches(
    shards: list[Path], folder: Path, decisions: np.ndarray, tally: _Tally
) -> Iterator[tuple[list, list[str | None]]]:
    """Batches of documents with their final reasons (None: kept), counted in ``tally``."""
    candidate = 0
    for index, path in enumerate(shards):
        outcomes = pq.ParquetFile(_outcomes_path(folder, index)).read().to_pydict()
        row = 0
        for batch in iter_shard(path, _BATCH_DOCS, _BATCH_CHARS):
            reasons = []
            for _ in batch:
                reason = outcomes["reason"][row]
                if reason is None:
                    decision = int(decisions[candidate])
                    reason = REASONS[decision] if decision != KEPT else None
                    candidate += 1
                tally.count(reason, outcomes["words"][row], outcomes["words_out"][row])
                reasons.append(reason)
                row += 1
            yield batch, reasons


@dataclass
class _Tally:
    """Where each document goes, and the counts of documents and words by outcome."""

    kept: ShardWriter
    rejected: ShardWriter
    docs: Counter[str] = field(default_factory=Counter)
    words: Counter[str] = field(default_factory=Counter)  # before stop-word removal
    words_out: int = 0

    def count(self, reason: str | None, words: int, words_out: int) -> None:
        """Count one document under its outcome."""
        self.docs[reason or "kept"] += 1
        self.words[reason or "kept"] += words
        if reason is None:
            self.words_out += words_out

    def result(self, seconds: float) -> CleanResult:
        """Counts by outcome."""
        rejected = {k: v for k, v in sorted(self.docs.items()) if k != "kept"}
        return CleanResult(
            documents_in=sum(self.docs.values()),
            documents_out=self.docs["kept"],
            words_in=sum(self.words.values()),
            words_out=self.words_out,
            rejected=rejected,
            rejected_words={k: self.words[k] for k in rejected},
            seconds=round(seconds, 3),
        )
