"""Stage ``clean``: normalise, quality-filter and deduplicate the ingested articles.

Worker processes normalise each document, apply the Gopher rules and compute its MinHash
signature; the main process then deduplicates in input order (the first copy is kept) and
writes kept documents to ``data/clean/`` and dropped ones, with their reason, to
``data/clean/rejected/`` for audit.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from pydantic import BaseModel, ConfigDict

from components.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.config import CleanParams, Params, Paths
from components.dedup import Deduplicator, Permutations, signatures
from components.documents import REJECTED_SCHEMA, Document, ShardWriter, count_rows, iter_batches
from components.filters import TextView, first_failure, quality_filters, repetition_filters
from components.parallel import ordered_map, worker_count
from components.progress import progress
from components.stopwords import removable_stop_words

log = logging.getLogger(__name__)

# Runs of white space other than a single plain space (rewriting every space costs a lot).
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_HAS_WORD = re.compile(r"\w")
_WORD = re.compile(r"\w+")
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


@dataclass(frozen=True, slots=True)
class Assessment:
    """One document after normalisation and filtering (computed in a worker).

    ``document`` holds the normalised text (what ``rejected/`` keeps for audit); ``output``,
    when set, is what ``clean/`` gets if the document is kept (its stop words removed), and
    ``output_words`` its word count.
    """

    document: Document
    words: int
    reason: str | None
    text_hash: str
    signature: np.ndarray | None
    output: Document | None = None
    output_words: int | None = None

    @property
    def words_out(self) -> int:
        """Words that ``clean/`` gets if the document is kept."""
        return self.words if self.output_words is None else self.output_words


def normalize(text: str) -> str:
    """NFC, single spaces, no blank or symbol-only lines; paragraphs split by a blank line."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    # str.split() collapses every run of Unicode white space and strips the ends, in C:
    # twice as fast as a regular expression over every character.
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n\n".join(line for line in lines if _HAS_WORD.search(line))


def remove_stop_words(text: str, stops: frozenset[str]) -> str:
    """Token-level stop-word removal (for classical NLP uses, not for LM training)."""
    kept = _WORD.sub(lambda m: "" if m.group().lower() in stops else m.group(), text)
    paragraphs = (_SPACES.sub(" ", p).strip() for p in kept.split("\n\n"))
    return "\n\n".join(p for p in paragraphs if _HAS_WORD.search(p))


def assess_batch(
    documents: list[Document], cfg: CleanParams, permutations: Permutations | None = None
) -> list[Assessment]:
    """Normalise and filter a batch; signatures (with ``permutations``) for documents kept."""
    filters = quality_filters(cfg) + repetition_filters(cfg)
    results, views = [], []
    for doc in documents:
        view = TextView(normalize(doc.text))
        reason = first_failure(view, filters)
        cleaned = Document(doc.id, doc.title, view.text, doc.metadata)
        output = output_words = None
        if reason is None and cfg.remove_stopwords:
            text = remove_stop_words(view.text, removable_stop_words(cfg.language))
            output, output_words = replace(cleaned, text=text), len(text.split())
        digest = view.arrays.digest()
        results.append(
            Assessment(cleaned, view.word_count, reason, digest, None, output, output_words)
        )
        views.append(view)
    if permutations is None:
        return results
    return _with_signatures(results, views, cfg.dedup.shingle_words, permutations)


def _with_signatures(
    results: list[Assessment], views: list[TextView], shingle_words: int, perms: Permutations
) -> list[Assessment]:
    """Add MinHash signatures to the documents the filters kept."""
    kept = [i for i, a in enumerate(results) if a.reason is None]
    sigs = signatures([views[i].lower_words.hashes for i in kept], shingle_words, perms)
    for index, signature in zip(kept, sigs, strict=True):
        results[index] = replace(results[index], signature=signature)
    return results


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
