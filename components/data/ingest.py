"""Stage ``ingest``: a MediaWiki XML dump -> Parquet shards of plain-text articles.

The main process streams pages out of the (compressed) XML; worker processes (or a Dask
cluster's workers: ``data.engine``) render wikitext to text in batches
(:mod:`components.data.render`). Only namespace-0, non-redirect wikitext pages become
documents; every other page is counted under a stable snake_case outcome.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial

from components.core.artifacts import atomic_dir, build_meta, write_json
from components.core.errors import SourceError
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.progress import progress
from components.core.schema import Report
from components.data import sources
from components.data.documents import ShardWriter
from components.data.lbzip2 import lbzip2_path
from components.data.params import DataParams, DataSections, IngestParams
from components.data.render import KEPT, render_batch
from components.data.wikitext import HIDDEN_LINK_NAMESPACES, Options
from components.data.wikixml import DumpReader, Page

log = logging.getLogger(__name__)

# A batch of pages goes to a worker; up to three per worker are in flight, and each is
# held several times over (pages, pickled, rendered): their size bounds ingest's memory.
_BATCH_PAGES = 64
_BATCH_CHARS = 1_000_000
# Text per Parquet row group: the one buffer that fills up as the output grows. At 2 MB a
# dump of a few MB of text already reaches ingest's steady memory (a 2 MB row group holds a
# few hundred articles; real text compresses as well as in 8 MB ones).
_GROUP_CHARS = 2 << 20


class IngestResult(Report):
    """What ``ingest`` did: written to ``metrics/ingest.json``."""

    source: str
    dump: str
    dump_sha1: str
    dump_bytes: int
    pages: int
    documents: int
    outcomes: dict[str, int]
    text_chars: int
    shards: int
    seconds: float


def classify(page: Page) -> str | None:
    """Outcome decided from page metadata alone, or None when the text must be rendered."""
    if page.problem:
        return page.problem
    if page.ns != 0:
        return "not_article"
    if page.redirect:
        return "redirect"
    if page.model != "wikitext":
        return "not_wikitext"
    return None


def _pages_to_render(reader: DumpReader, outcomes: Counter[str]) -> Iterator[Page]:
    """Article pages; every other page is counted under its outcome here."""
    for page in reader:
        outcome = classify(page)
        if outcome is None:
            yield page
            continue
        outcomes[outcome] += 1
        if page.problem:
            log.warning("malformed page (id %d, title %r): %s", page.id, page.title, outcome)


def _work_items(
    reader: DumpReader, cfg: IngestParams, outcomes: Counter[str]
) -> Iterator[tuple[list[Page], Options]]:
    """Batches of pages to render, each with the options of this dump's site."""
    options = None
    batch: list[Page] = []
    chars = 0
    for page in _pages_to_render(reader, outcomes):
        batch.append(page)
        chars += len(page.text)
        if len(batch) >= _BATCH_PAGES or chars >= _BATCH_CHARS:
            # <siteinfo> precedes the pages, so its namespace names are known by now.
            options = options or _options(reader, cfg)
            yield batch, options
            batch, chars = [], 0
    if batch:
        yield batch, options or _options(reader, cfg)


def _options(reader: DumpReader, cfg: IngestParams) -> Options:
    hidden = HIDDEN_LINK_NAMESPACES | reader.hidden_namespace_names()
    return Options(keep_headings=cfg.keep_headings, hidden_namespaces=hidden)


def convert(
    reader: DumpReader, cfg: IngestParams, outcomes: Counter[str], engine: DataParams | None = None
) -> Iterator[dict]:
    """Yield a document row for every kept article, counting every page's outcome.

    Pages are rendered by ``cfg.workers`` local processes, or on the Dask cluster that
    ``engine`` names.
    """
    render = partial(
        render_batch, keep_disambiguation=cfg.keep_disambiguation, min_chars=cfg.min_chars
    )
    items = _work_items(reader, cfg, outcomes)
    with progress(total=reader.path.stat().st_size, unit="B", desc="ingest") as bar:
        for results in ordered_map(render, items, worker_count(cfg.workers), engine=engine):
            bar.update(reader.bytes_read - bar.n)
            for outcome, row in results:
                outcomes[outcome] += 1
                if row is not None:
                    yield row


def run(params: DataSections, paths: Paths) -> IngestResult:
    """Read the dump named by ``params.ingest.source`` into ``paths.ingest``.

    Raises:
        SourceError: the dump is missing, corrupt, truncated, malformed or has no articles.
    """
    cfg = params.ingest
    started = time.perf_counter()
    source = sources.resolve(
        cfg.source,
        paths.root,
        paths.downloads,
        cfg.checksum,
        cfg.download_timeout_s,
        latest=(cfg.mirror, cfg.wiki),
    )
    reader = DumpReader(source.path, lbzip2_threads=lbzip2_threads(cfg))
    log.info("ingesting %s (%s)%s", source.name, source.path, _decoder_note(reader))
    outcomes: Counter[str] = Counter()
    text_chars = 0
    with atomic_dir(paths.ingest) as out:
        writer = ShardWriter(out, shard_rows=cfg.shard_docs, group_bytes=_GROUP_CHARS)
        for row in convert(reader, cfg, outcomes, params.data):
            text_chars += len(row["text"])
            writer.write(row)
        writer.close()
        if outcomes[KEPT] == 0:
            raise SourceError(f"{source.path}: no articles in this dump ({_summary(outcomes)})")
        sha1 = reader.sha1
        meta = build_meta(
            "ingest",
            cfg.model_dump(),
            {"dump_sha1": sha1},
            dump=source.name,
            namespaces=reader.namespaces,
            outcomes=dict(outcomes),
        )
        write_json(out / "meta.json", meta)
    result = IngestResult(
        source=cfg.source,
        dump=source.name,
        dump_sha1=sha1,
        dump_bytes=source.path.stat().st_size,
        pages=sum(outcomes.values()),
        documents=outcomes[KEPT],
        outcomes=dict(sorted(outcomes.items())),
        text_chars=text_chars,
        shards=writer.shards,
        seconds=round(time.perf_counter() - started, 3),
    )
    log.info(
        "ingest: %d documents from %d pages (%s)",
        result.documents,
        result.pages,
        _summary(outcomes),
    )
    return result


def lbzip2_threads(cfg: IngestParams) -> int:
    """Threads for lbzip2 to decode a bz2 dump on, or 0 to use Python's bz2 module."""
    if cfg.bz2_decoder == "python" or lbzip2_path() is None:
        return 0  # bz2_decoder "lbzip2" without lbzip2 was refused with the params
    return worker_count(cfg.workers)


def _decoder_note(reader: DumpReader) -> str:
    """How a bz2 dump will be decoded, for the log."""
    if not reader.lbzip2_threads:
        return ""
    return f", bz2 decoded by lbzip2 on {reader.lbzip2_threads} threads"


def _summary(outcomes: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in outcomes.most_common()) or "no pages"
