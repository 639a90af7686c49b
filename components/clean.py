"""Stage ``clean``: normalise, quality-filter and deduplicate the ingested articles.

Worker processes normalise each document, apply the Gopher rules and compute its MinHash
signature (:mod:`components.assess`); the main process then deduplicates in input order (the
first copy is kept) and writes kept documents to ``data/clean/`` and dropped ones, with their
reason, to ``data/clean/rejected/`` for audit.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial

from pydantic import BaseModel, ConfigDict

from components.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.assess import assess_batch
from components.config import Params, Paths
from components.dedup import Deduplicator
from components.documents import REJECTED_SCHEMA, ShardWriter, count_rows, iter_batches
from components.parallel import ordered_map, worker_count
from components.progress import progress

log = logging.getLogger(__name__)

# Work comes to the workers in pieces of about 0.2 s: both stay busy to the last piece.
_BATCH_DOCS = 128
_BATCH_CHARS = 1_000_000


class CleanResult(BaseModel):
    """What ``clean`` did: written to ``metrics/clean.json``."""

    model_config = ConfigDict(frozen=True)

    documents_in: int
    documents_out: int
    words_in: int
    words_out: int
    rejected: dict[str, int]
    rejected_words: dict[str, int]
    seconds: float


def run(params: Params, paths: Paths) -> CleanResult:
    """Clean ``paths.ingest`` into ``paths.clean`` (kept) and ``paths.clean/rejected``."""
    cfg = params.clean
    read_meta(paths.ingest, "ingest")
    started = time.perf_counter()
    documents = count_rows(paths.ingest)
    dedup = Deduplicator(cfg.dedup, documents)
    dedup.prepare()  # loads datasketch in the background while the workers start
    docs, words = Counter(), Counter()
    words_out = 0
    assess = partial(assess_batch, cfg=cfg, permutations=dedup.permutations)
    batches = iter_batches(paths.ingest, _BATCH_DOCS, _BATCH_CHARS)
    with (
        atomic_dir(paths.clean) as out,
        progress(total=documents, unit="doc", desc="clean") as bar,
    ):
        kept = ShardWriter(out)
        rejected = ShardWriter(out / "rejected", REJECTED_SCHEMA)
        for assessments in ordered_map(assess, batches, worker_count(cfg.workers)):
            for a in assessments:
                reason = a.reason or dedup.check(a.text_hash, a.signature)
                docs[reason or "kept"] += 1
                words[reason or "kept"] += a.words
                if reason:
                    rejected.write({**a.document.to_row(), "reason": reason})
                else:
                    kept.write((a.output or a.document).to_row())
                    words_out += a.words_out
            bar.update(len(assessments))
        dedup.prepare().result()  # a bad index setting fails even if no document reached it
        kept.close()
        rejected.close()
        result = _result(docs, words, words_out, time.perf_counter() - started)
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


def _result(docs: Counter[str], words: Counter[str], words_out: int, seconds: float) -> CleanResult:
    """Counts by outcome; ``words`` counts each document's words before stop-word removal."""
    rejected = {k: v for k, v in sorted(docs.items()) if k != "kept"}
    return CleanResult(
        documents_in=sum(docs.values()),
        documents_out=docs["kept"],
        words_in=sum(words.values()),
        words_out=words_out,
        rejected=rejected,
        rejected_words={k: words[k] for k in rejected},
        seconds=round(seconds, 3),
    )
