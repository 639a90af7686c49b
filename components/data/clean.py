"""Stage ``clean``: normalise, quality-filter and deduplicate the ingested articles.

Worker processes (or a Dask cluster's workers: ``data.engine``) normalise each document,
apply the Gopher rules and compute its MinHash signature (:mod:`components.data.assess`);
the main process then deduplicates in input order (the first copy is kept) and writes kept
documents to ``data/clean/`` and dropped ones, with their reason, to ``data/clean/rejected/``
for audit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from components.core.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.progress import progress
from components.core.schema import Report
from components.data.assess import Assessment, assess_batch
from components.data.dedup import Deduplicator
from components.data.documents import REJECTED_SCHEMA, ShardWriter, count_rows, iter_batches
from components.data.params import DataSections

log = logging.getLogger(__name__)

# Work comes to the workers in pieces of about 0.2 s: both stay busy to the last piece.
_BATCH_DOCS = 128
_BATCH_CHARS = 1_000_000


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
    """Clean ``paths.ingest`` into ``paths.clean`` (kept) and ``paths.clean/rejected``."""
    cfg = params.clean
    read_meta(paths.ingest, "ingest")
    started = time.perf_counter()
    documents = count_rows(paths.ingest)
    dedup = Deduplicator(cfg.dedup, documents)
    dedup.prepare()  # loads datasketch in the background while the workers start
    assess = partial(assess_batch, cfg=cfg, permutations=dedup.permutations)
    batches = iter_batches(paths.ingest, _BATCH_DOCS, _BATCH_CHARS)
    with (
        atomic_dir(paths.clean) as out,
        progress(total=documents, unit="doc", desc="clean") as bar,
    ):
        tally = _Tally(ShardWriter(out), ShardWriter(out / "rejected", REJECTED_SCHEMA))
        # Until the LSH index is built, assessed documents wait here in input order: the
        # workers keep getting batches instead of idling while datasketch loads.
        waiting: list[Assessment] = []
        fanned_out = ordered_map(assess, batches, worker_count(cfg.workers), engine=params.data)
        for assessments in fanned_out:
            waiting += assessments
            if dedup.ready():
                tally.decide(waiting, dedup)
                waiting = []
            bar.update(len(assessments))
        dedup.prepare().result()  # a bad index setting fails even if no document reached it
        tally.decide(waiting, dedup)
        tally.kept.close()
        tally.rejected.close()
        result = tally.result(time.perf_counter() - started)
        inputs = {"ingest": dir_digest(paths.ingest)}
        write_json(
            out / "meta.json",
            build_meta(
                "clean",
                cfg.model_dump(mode="json"),
                inputs,
                **result.model_dump(exclude={"seconds"}),
            ),
        )
    log.info(
        "clean: kept %d of %d documents; dropped %s",
        result.documents_out,
        result.documents_in,
        result.rejected or "none",
    )
    return result


@dataclass
class _Tally:
    """Writes each assessed document where it belongs and counts documents and words."""

    kept: ShardWriter
    rejected: ShardWriter
    docs: Counter[str] = field(default_factory=Counter)
    words: Counter[str] = field(default_factory=Counter)  # before stop-word removal
    words_out: int = 0

    def decide(self, assessments: list[Assessment], dedup: Deduplicator) -> None:
        """Keep or reject each document, in input order (the first of duplicates is kept)."""
        for a in assessments:
            reason = a.reason or dedup.check(a.text_hash, a.signature)
            self.docs[reason or "kept"] += 1
            self.words[reason or "kept"] += a.words
            if reason:
                self.rejected.write({**a.document.to_row(), "reason": reason})
            else:
                self.kept.write((a.output or a.document).to_row())
                self.words_out += a.words_out

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
