"""Stage ``clean``: normalise, quality-filter and deduplicate the ingested articles.

Two passes over the ingested shards:

1. *assess*, fanned out to worker processes (or a Dask cluster's workers: ``data.engine``):
   each document is normalised and put through the Gopher rules, and a document that passes
   gets its digest and MinHash signature (:func:`components.data.assess.assess_batch`). The
   outcomes go to disk, shard by shard: the dedup records (:mod:`components.data.dedup`) and
   a small table per shard (reason, words, and the text only where normalising changed it).
   Each shard is then marked done (:mod:`components.core.resume`), so a killed run resumes
   at the first shard not done.
2. *write*, in this process: dedup decides on the records on disk, in bounded memory; then
   each document goes to ``data/clean/`` (kept) or ``data/clean/rejected/`` (dropped, with
   its reason, for audit), in input order.

Memory stays flat whatever the dump: batches in flight, one shard's table, the partition
being sorted (``clean.dedup.memory_mb``) and one byte per document that passes the rules.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.core.errors import ArtifactError
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.progress import progress
from components.core.resume import ShardProgress, work_folder
from components.core.schema import Report
from components.data.assess import Assessment, assess_batch
from components.data.dedup import REASONS, DedupStore
from components.data.documents import (
    REJECTED_SCHEMA,
    ShardWriter,
    arrow_column,
    count_rows,
    read_batches,
    shard_batches,
    shard_paths,
    shard_rows,
)
from components.data.minhash import Permutations, lsh_bands
from components.data.params import DataSections

log = logging.getLogger(__name__)

# Work comes to the workers in pieces of about 0.2 s: both stay busy to the last piece.
_BATCH_DOCS = 128
_BATCH_CHARS = 1_000_000
# The write pass holds this many documents at a time (about 4 MB of text in Wikipedia).
_WRITE_ROWS = 1024
# What each ingested shard's assessment table holds (one row per document, in order).
# ``text``: the normalised text where it differs from the input; ``output``: the kept text
# with its stop words removed (clean.remove_stopwords).
OUTCOME_SCHEMA = pa.schema(
    [
        ("reason", pa.string()),
        ("words", pa.int64()),
        ("words_out", pa.int64()),
        ("text", pa.string()),
        ("output", pa.string()),
    ]
)
# Bumped when the work folder's files change meaning: older work is then redone.
WORK_FORMAT = 2


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
        tally = _write(shards, work.folder, decisions, out)
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
    batches = shard_batches(shards, done, origins, _BATCH_DOCS, _BATCH_CHARS, ["text"])
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


@dataclass
class _OutcomeTable:
    """The outcome of each document of the shard in progress (see :data:`OUTCOME_SCHEMA`)."""

    columns: dict[str, list] = field(default_factory=lambda: _empty_columns())

    def add(self, assessments: list[Assessment]) -> None:
        """Remember a batch's outcomes."""
        for name, values in self.columns.items():
            values += [getattr(a, name) for a in assessments]

    def write(self, path: Path) -> None:
        """Write the shard's table atomically, then start the next shard's."""
        arrays = [arrow_column(self.columns[f.name], f.type) for f in OUTCOME_SCHEMA]
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path = path.with_name(f".{path.name}.partial")
        table = pa.Table.from_arrays(arrays, schema=OUTCOME_SCHEMA)
        pq.write_table(table, partial_path, use_dictionary=["reason"])  # text: see ShardWriter
        partial_path.replace(path)
        self.columns = _empty_columns()


def _empty_columns() -> dict[str, list]:
    return {name: [] for name in OUTCOME_SCHEMA.names}


def _write(shards: list[Path], folder: Path, decisions: np.ndarray, out: Path) -> _Tally:
    """Pass 2: write every document where dedup's and the rules' decisions send it."""
    tally = _Tally(ShardWriter(out), ShardWriter(out / "rejected", REJECTED_SCHEMA))
    candidates = iter(decisions.tolist())
    total = sum(shard_rows(path) for path in shards)
    with progress(total=total, unit="doc", desc="clean: write") as bar:
        for index, path in enumerate(shards):
            outcomes = pq.read_table(_outcomes_path(folder, index))
            done = 0
            for batch in read_batches(path, batch_size=_WRITE_ROWS):
                part = outcomes.slice(done, batch.num_rows)
                reasons = [
                    REASONS.get(next(candidates)) if reason is None else reason  # a candidate
                    for reason in part.column("reason").to_pylist()
                ]
                tally.write(pa.Table.from_batches([batch]), part, reasons)
                done += batch.num_rows
                bar.update(batch.num_rows)
            if done != outcomes.num_rows:
                raise ArtifactError(
                    f"{path} changed while clean ran ({done} documents, "
                    f"{outcomes.num_rows} assessed): run clean again"
                )
    tally.kept.close()
    tally.rejected.close()
    return tally


@dataclass
class _Tally:
    """Where each document goes, and the counts of documents and words by outcome."""

    kept: ShardWriter
    rejected: ShardWriter
    docs: Counter[str] = field(default_factory=Counter)
    words: Counter[str] = field(default_factory=Counter)  # before stop-word removal
    words_out: int = 0

    def write(self, documents: pa.Table, outcomes: pa.Table, reasons: list[str | None]) -> None:
        """Write a shard's documents where their ``reasons`` send them, and count them.

        A dropped document keeps its normalised text (for audit); a kept one gets its text
        without stop words when they were removed.
        """
        words = outcomes.column("words").to_pylist()
        for reason, count in zip(reasons, words, strict=True):
            self.docs[reason or "kept"] += 1
            self.words[reason or "kept"] += count
        words_out = outcomes.column("words_out").to_pylist()
        self.words_out += sum(n for reason, n in zip(reasons, words_out, strict=True) if not reason)
        kept = pa.array([not reason for reason in reasons], pa.bool_())
        text = _first_present(outcomes.column("text"), documents.column("text"))
        at = documents.schema.get_field_index("text")
        kept_text = _first_present(outcomes.column("output"), text)
        self.kept.write_table(documents.set_column(at, "text", kept_text).filter(kept))
        rejected = documents.set_column(at, "text", text).append_column(
            "reason", pa.array(reasons, pa.string())
        )
        self.rejected.write_table(rejected.filter(pc.invert(kept)))

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


def _first_present(preferred: pa.ChunkedArray, fallback: pa.ChunkedArray) -> pa.ChunkedArray:
    """``preferred`` where it holds a non-empty string, else ``fallback``."""
    empty = pc.equal(pc.utf8_length(preferred), 0)
    return pc.if_else(pc.fill_null(empty, True), fallback, preferred)
