"""Stage ``ingest``: a MediaWiki XML dump -> Parquet shards of plain-text articles.

The main process cuts the (compressed) XML into chunks of whole pages
(:meth:`components.data.wikixml.DumpReader.chunks`); worker processes (or a Dask cluster's
workers: ``data.engine``) parse them and render the wikitext to text
(:mod:`components.data.render`). Only namespace-0, non-redirect wikitext pages become
documents; every other page is counted under a stable snake_case outcome.

Shards are written to a scratch folder (:mod:`components.core.resume`) and each full one is
marked done with the count of pages it reaches: killed and rerun on the same dump and
params, ingest reads past those pages without rendering them and goes on from the next
shard. The shards move to ``data/ingest`` once the dump is read to its end.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from components.core.artifacts import atomic_dir, build_meta, write_json
from components.core.disk import space_for
from components.core.errors import SourceError
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.progress import progress
from components.core.resume import ShardProgress, work_folder
from components.core.schema import Report
from components.data import sources
from components.data.documents import SHARD_GLOB, ShardWriter
from components.data.lbzip2 import lbzip2_path
from components.data.params import DataParams, DataSections, IngestParams
from components.data.render import KEPT, render_batch
from components.data.wikitext import HIDDEN_LINK_NAMESPACES, Options
from components.data.wikixml import Chunk, DumpReader

log = logging.getLogger(__name__)

# A chunk of pages goes to a worker; up to three per worker are in flight, and each is
# held several times over (XML, parsed, rendered): their size bounds ingest's memory.
_BATCH_PAGES = 64
_BATCH_BYTES = 1_000_000
# Text per Parquet row group: the one buffer that fills up as the output grows. At 2 MB a
# dump of a few MB of text already reaches ingest's steady memory (a 2 MB row group holds a
# few hundred articles; real text compresses as well as in 8 MB ones).
_GROUP_CHARS = 2 << 20
# Bumped when the scratch folder's files change meaning: older work is then redone.
WORK_FORMAT = 1
# Ingest's output (zstd Parquet of the plain text) per byte of dump, rounded up from
# generated dumps (0.58 of bz2, 0.2 of plain XML): for "about how much more space".
_OUTPUT_PER_BYTE = {True: 0.6, False: 0.25}  # by whether the dump is compressed


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


def _work_items(
    reader: DumpReader, cfg: IngestParams, skip: int = 0
) -> Iterator[tuple[Chunk, Options]]:
    """Chunks of pages to render, each with the options of this dump's site.

    The first ``skip`` pages (done by an earlier run) are read past, neither counted nor
    rendered.
    """
    options = None
    for chunk in reader.chunks(_BATCH_PAGES, _BATCH_BYTES, skip):
        # <siteinfo> precedes the pages, so its namespace names are known by now.
        options = options or _options(reader, cfg)
        yield chunk, options


def _options(reader: DumpReader, cfg: IngestParams) -> Options:
    hidden = HIDDEN_LINK_NAMESPACES | reader.hidden_namespace_names()
    return Options(keep_headings=cfg.keep_headings, hidden_namespaces=hidden)


def convert(
    reader: DumpReader,
    cfg: IngestParams,
    outcomes: Counter[str],
    engine: DataParams | None = None,
    skip: int = 0,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(pages, row)`` for every kept article after the first ``skip`` pages.

    ``pages`` counts the dump's pages up to this article's; when a row is yielded,
    ``outcomes`` holds the outcomes of exactly those pages (after ``skip``). Pages are
    parsed and rendered by ``cfg.workers`` local processes, or on the Dask cluster
    ``engine`` names.
    """
    render = partial(
        render_batch, keep_disambiguation=cfg.keep_disambiguation, min_chars=cfg.min_chars
    )
    items = _work_items(reader, cfg, skip)
    pages = skip
    with progress(total=reader.path.stat().st_size, unit="B", desc="ingest") as bar:
        for results in ordered_map(render, items, worker_count(cfg.workers), engine=engine):
            bar.update(reader.bytes_read - bar.n)
            for outcome, row in results:
                outcomes[outcome] += 1
                pages += 1
                if row is not None:
                    yield pages, row


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
        max_bytes=round(cfg.max_download_gb * 1e9),
    )
    reader = DumpReader(source.path, lbzip2_threads=lbzip2_threads(cfg))
    log.info("ingesting %s (%s)%s", source.name, source.path, _decoder_note(reader))
    work = ShardProgress(work_folder(paths.ingest), _origin(cfg, source.path))
    with (
        space_for(paths.ingest, lambda: _space_needed(source.path, work.folder)),
        work.kept_for_a_rerun(),
    ):
        progress_ = _resume(work)
        writer = _write_shards(reader, params, work, progress_)
        outcomes = progress_.outcomes
        if outcomes[KEPT] == 0:
            raise SourceError(f"{source.path}: no articles in this dump ({_summary(outcomes)})")
    with atomic_dir(paths.ingest) as out:
        for shard in sorted(writer.folder.glob(SHARD_GLOB)):
            shard.replace(out / shard.name)
        meta = build_meta(
            "ingest",
            cfg.model_dump(),
            {"dump_sha1": reader.sha1},
            dump=source.name,
            namespaces=reader.namespaces,
            outcomes=dict(outcomes),
        )
        write_json(out / "meta.json", meta)
    work.remove()
    result = IngestResult(
        source=cfg.source,
        dump=source.name,
        dump_sha1=reader.sha1,
        dump_bytes=source.path.stat().st_size,
        pages=sum(outcomes.values()),
        documents=outcomes[KEPT],
        outcomes=dict(sorted(outcomes.items())),
        text_chars=progress_.text_chars,
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


def _space_needed(dump: Path, scratch: Path) -> int:
    """About how many more bytes ingest needs on disk for ``dump`` (what it wrote counted)."""
    with dump.open("rb") as probe:
        compressed = probe.read(3).startswith((b"BZh", b"\x1f\x8b"))
    written = sum(path.stat().st_size for path in scratch.rglob("*") if path.is_file())
    return max(int(dump.stat().st_size * _OUTPUT_PER_BYTE[compressed]) - written, 0)


@dataclass
class _Progress:
    """Where ingest stands: shards done, pages read for them, and their counts."""

    shards: int = 0
    pages: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    text_chars: int = 0

    def state(self) -> dict:
        """What a shard's completion marker records."""
        return {"pages": self.pages, "outcomes": dict(self.outcomes), "text_chars": self.text_chars}


def _origin(cfg: IngestParams, dump: Path) -> dict:
    """What ingest's scratch work depends on: the params and the dump file."""
    stat = dump.stat()
    return {
        "format": WORK_FORMAT,
        "params": cfg.model_dump(mode="json", exclude={"workers"}),
        "dump": {"path": str(dump.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
    }


def _resume(work: ShardProgress) -> _Progress:
    """The progress the completion markers record (none: from the first page)."""
    done, state = work.resume()
    if not state:
        return _Progress()
    log.info(
        "ingest: %d shards were written by an earlier run; going on after page %d",
        done,
        state["pages"],
    )
    return _Progress(done, state["pages"], Counter(state["outcomes"]), state["text_chars"])


def _write_shards(
    reader: DumpReader, params: DataSections, work: ShardProgress, progress_: _Progress
) -> ShardWriter:
    """Write the shards after ``progress_``'s, marking each full one done."""
    cfg = params.ingest
    folder = work.folder / "shards"
    for unfinished in folder.glob("part-*"):  # from a killed run: written again
        if int(unfinished.name[5:10]) >= progress_.shards:
            unfinished.unlink()
    writer = ShardWriter(
        folder, shard_rows=cfg.shard_docs, group_bytes=_GROUP_CHARS, first_shard=progress_.shards
    )
    rows = convert(reader, cfg, progress_.outcomes, params.data, progress_.pages)
    for count, (pages, row) in enumerate(rows, start=1):
        progress_.text_chars += len(row["text"])
        progress_.pages = pages
        writer.write(row)
        if count % cfg.shard_docs == 0:  # the row filled a shard, and the writer closed it
            work.mark_done(writer.shards - 1, progress_.state())
    writer.close()
    return writer


def lbzip2_threads(cfg: IngestParams) -> int:
    """Threads for lbzip2 to decode a bz2 dump on, or 0 to use Python's bz2 module."""
    if cfg.bz2_decoder == "python" or lbzip2_path() is None:
        return 0  # bz2_decoder "lbzip2" without lbzip2 was refused with the params
    # One thread decodes about 65 MB of XML a second, what two workers render at least in
    # the same time. More threads than that only cost CPU: on 2 cores, a second one took
    # 10% more of it (and the stage 2-15% more time) in four runs out of four.
    return -(-worker_count(cfg.workers) // 2)


def _decoder_note(reader: DumpReader) -> str:
    """How a bz2 dump will be decoded, for the log."""
    if not reader.lbzip2_threads:
        return ""
    return f", bz2 decoded by lbzip2 on {reader.lbzip2_threads} threads"


def _summary(outcomes: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in outcomes.most_common()) or "no pages"
