"""Stage ``validate``: Great Expectations suites over per-document statistics.

Both corpora (``ingest`` and ``clean``) are reduced, streaming, to one row of fixed-width
numbers per document; GX Core validates those tables against suites built from
``params.yaml``. The report (Data Docs HTML, a deterministic ``results.json`` and
``meta.json``) is always written; any unmet expectation then fails the stage, so nothing
downstream runs on bad data.

The ingest suite looks at ids, titles and text lengths only (:data:`IDENTITY_DTYPES`), which
this process reads from Arrow columns without turning a text into a Python string. The clean
suite also looks at the words of each text (:data:`STATS_DTYPES`), measured batch by batch on
the local workers or the Dask cluster that ``data.engine`` names.

A clean table costs 45 bytes per document (:data:`BYTES_PER_DOCUMENT`,
``memory_usage(deep=True)``), 315 MB for 7 million documents, an ingest table 21: titles and
texts are kept as 64-bit hashes, never as strings.
``stop_word_ratio`` stays a float64: in float32, a ratio equal to a bound (40 of 50 words, 0.8)
would round above it and fail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from collections import deque
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.core.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.core.errors import ValidationFailed
from components.core.parallel import ordered_map, worker_count
from components.core.paths import Paths
from components.core.resume import ShardProgress, work_folder
from components.core.schema import Report
from components.data.documents import (
    Document,
    batch_texts,
    document_batch,
    read_batches,
    shard_batches,
    shard_paths,
)
from components.data.params import DataParams, DataSections, ValidateParams
from components.data.stopwords import stop_words
from components.data.wordarrays import TextArrays, Words, batch_lower_words, count_among, hash_set

log = logging.getLogger(__name__)

# Wikitext that must never survive into plain text.
MARKUP_TOKENS = ("{{", "}}", "[[", "<ref", "{|")
_MARKUP_RE = re.compile("|".join(re.escape(token) for token in MARKUP_TOKENS))

DOCS_SITE = "data_docs"
RESULTS_FILE = "results.json"
# One row per document, fixed-width numbers only. title_hash is nullable (Int64: a value and a
# validity byte) so that a missing title stays missing and fails "title present".
IDENTITY_DTYPES = {"id": "int64", "title_hash": "Int64", "n_chars": "int32"}
STATS_DTYPES = {
    **IDENTITY_DTYPES,
    "n_words": "int32",
    "stop_word_ratio": "float64",
    "markup_leftovers": "int32",
    "text_hash": "int64",
}
BYTES_PER_DOCUMENT = 45  # of a clean table, index aside (a RangeIndex: 132 bytes in all)
# Documents per statistics task, and at most this much text in one: the text in flight (a few
# tasks a worker) stays bounded whatever the articles' sizes, and a corpus's table is a few
# thousand frames to concatenate.
_BATCH_DOCS = 1024
_BATCH_CHARS = 8_000_000
_STATS_COLUMNS = ["id", "title", "text"]  # what batch_stats reads
# Bumped when the scratch folder's files change meaning: older work is then redone.
WORK_FORMAT = 1
# Result keys worth keeping: the outcome, never GX's run ids or timestamps (results.json is a
# DVC dependency of tokenize, so it must be byte-identical for identical data).
_OBSERVED_KEYS = ("observed_value", "unexpected_count", "partial_unexpected_index_list")


class SuiteSummary(Report):
    """Outcome of one expectation suite."""

    success: bool
    expectations: int
    passed: int
    failed: int


class ValidateResult(Report):
    """What ``validate`` found; written to ``metrics/validate.json``."""

    success: bool
    suites: dict[str, SuiteSummary]
    documents_ingest: int
    documents_clean: int
    duplicate_rate: float
    markup_leftovers_total: int
    mean_stop_word_ratio: float
    # Per column, the clean documents outside its range that validate.mostly let through.
    outliers: dict[str, int] = {}
    data_docs: str


def markup_leftovers(text: str) -> int:
    """Number of wikitext markup tokens left in ``text``."""
    return len(_MARKUP_RE.findall(text))


def title_hash(title: str | None) -> int | None:
    """A signed 64-bit hash of ``title`` (BLAKE2b), or None for a missing title."""
    if title is None:
        return None
    digest = hashlib.blake2b(title.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def text_hash(arrays: TextArrays) -> int:
    """The first 64 bits of the text's word digest, as a signed integer."""
    return words_hash(arrays.lower_words)


def words_hash(lower_words: Words) -> int:
    """The first 64 bits of :meth:`TextArrays.digest` from the lower words, signed."""
    digest = hashlib.sha1(lower_words.hashes.tobytes()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def document_stats(doc: Document, stops: frozenset[str]) -> dict[str, Any]:
    """The statistics row the clean suite looks at, for one document."""
    table = batch_stats(document_batch([doc]), stops)
    return {name: table[name].iloc[0] for name in table.columns}  # each column's own type


def batch_stats(batch: pa.RecordBatch, stops: frozenset[str]) -> pd.DataFrame:
    """The statistics table of a batch of documents (runs in worker processes).

    ``batch`` needs the ``id``, ``title`` and ``text`` columns.

    The batch's words are measured a group of texts at a time (:func:`batch_lower_words`):
    numpy calls per document, not the characters, are what would take the time.
    """
    texts = batch_texts(batch)
    words = batch_lower_words(texts)
    n_words = [len(w) for w in words]
    stop_counts = count_among(words, hash_set(stops))
    columns = {
        "id": batch.column("id").to_pylist(),
        "title_hash": [title_hash(title) for title in batch.column("title").to_pylist()],
        "n_chars": [len(text) for text in texts],
        "n_words": n_words,
        # count / n equals the mean of the flags exactly: both sum whole numbers first.
        "stop_word_ratio": [c / n if n else 0.0 for c, n in zip(stop_counts, n_words, strict=True)],
        "markup_leftovers": [markup_leftovers(text) for text in texts],
        "text_hash": [words_hash(w) for w in words],
    }
    return _frame(columns, STATS_DTYPES)


def identity_table(path: Path) -> pd.DataFrame:
    """Ids, title hashes and text lengths of one shard (:data:`IDENTITY_DTYPES`).

    Lengths come from Arrow (code points, as ``len`` counts them); no text becomes a Python
    string. A missing text counts as empty.
    """
    frames = []
    for batch in read_batches(path, columns=["id", "title", "text"], batch_size=_BATCH_DOCS):
        ids, titles, texts = batch.columns
        columns = {
            "id": ids.to_numpy(),
            "title_hash": [title_hash(title) for title in titles.to_pylist()],
            "n_chars": pc.fill_null(pc.utf8_length(texts), 0).to_numpy(),
        }
        frames.append(_frame(columns, IDENTITY_DTYPES))
    return pd.concat(frames, ignore_index=True) if frames else _empty(IDENTITY_DTYPES)


def _frame(columns: dict[str, Any], dtypes: dict[str, str]) -> pd.DataFrame:
    # Column by column: a frame built from rows would turn a column of ints and None into
    # float64 and lose the low bits of the hashes.
    return pd.DataFrame(
        {name: pd.array(columns[name], dtype=dtype) for name, dtype in dtypes.items()}
    )


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return _frame({name: [] for name in dtypes}, dtypes)


def corpus_stats(
    folder: Path,
    stops: frozenset[str],
    workers: int = 1,
    engine: DataParams | None = None,
    work: ShardProgress | None = None,
) -> pd.DataFrame:
    """Statistics of every document of a stage output; texts are streamed, never kept.

    The batches go to ``workers`` local processes, or to the Dask cluster ``engine`` names.
    With ``work``, each shard's table is saved there and the shard marked done, and shards
    done by a killed run are read back instead of measured again.
    """
    shards, done = _resumed(folder, work)
    origins: deque[tuple[int, bool]] = deque()
    batches = shard_batches(shards, done, origins, _BATCH_DOCS, _BATCH_CHARS, _STATS_COLUMNS)
    stats = partial(batch_stats, stops=stops)

    def shard_tables() -> Iterator[tuple[int, pd.DataFrame]]:
        parts: list[pd.DataFrame] = []
        for frame in ordered_map(stats, batches, worker_count(workers), engine=engine):
            shard, last = origins.popleft()
            parts.append(frame)
            if last:
                yield shard, pd.concat(parts, ignore_index=True)
                parts = []

    return _collected(shard_tables(), done, work, STATS_DTYPES)


def identity_stats(folder: Path, work: ShardProgress | None = None) -> pd.DataFrame:
    """The :func:`identity_table` of every shard of a stage output.

    Resumable with ``work`` as :func:`corpus_stats` is.
    """
    shards, done = _resumed(folder, work)
    tables = ((index, identity_table(shards[index])) for index in range(done, len(shards)))
    return _collected(tables, done, work, IDENTITY_DTYPES)


def _resumed(folder: Path, work: ShardProgress | None) -> tuple[list[Path], int]:
    """The shards of ``folder``, and how many of them a killed run measured."""
    shards = shard_paths(folder)
    done = work.resume()[0] if work else 0
    if done:
        log.info(
            "validate: %d of %d shards of %s were measured by an earlier run",
            done,
            len(shards),
            folder.name,
        )
    return shards, done


def _collected(
    tables: Iterator[tuple[int, pd.DataFrame]],
    done: int,
    work: ShardProgress | None,
    dtypes: dict[str, str],
) -> pd.DataFrame:
    """One table of the shards done before (read back) and the shards' new ``tables``."""
    frames = [_saved(work, index) for index in range(done)] if work else []
    for shard, frame in tables:
        frames.append(frame)
        if work:
            _save(work, shard, frame)
    return pd.concat(frames, ignore_index=True) if frames else _empty(dtypes)


def _stats_path(work: ShardProgress, shard: int) -> Path:
    return work.folder / "stats" / f"part-{shard:05d}.parquet"


def _save(work: ShardProgress, shard: int, frame: pd.DataFrame) -> None:
    """Save a shard's table (its dtypes too), then mark the shard done."""
    path = _stats_path(work, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(f".{path.name}.partial")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), partial_path)
    partial_path.replace(path)
    work.mark_done(shard, {"documents": len(frame)})


def _saved(work: ShardProgress, shard: int) -> pd.DataFrame:
    return pq.read_table(_stats_path(work, shard)).to_pandas()


def ingest_expectations() -> list[Any]:
    """Expectations on the ingested corpus: ids and titles present and unique, text not empty."""
    return [*_identity_expectations(), _between("n_chars", 1, None, "n_chars at least 1")]


def clean_expectations(cfg: ValidateParams, documents_in: int) -> list[Any]:
    """Expectations on the cleaned corpus, with bounds from ``params.yaml``."""
    import great_expectations.expectations as gxe

    share = "" if cfg.mostly == 1 else f" for at least {cfg.mostly:.2%} of documents"
    chars = f"n_chars between {cfg.min_chars} and {cfg.max_chars}{share}"
    ratio = (
        f"stop_word_ratio between {cfg.min_stop_word_ratio} and {cfg.max_stop_word_ratio}{share}"
    )
    distinct = round(1 - cfg.max_duplicate_rate, 9)  # so that 1 - 0.1 equals 9 of 10 distinct
    return [
        *_identity_expectations(),
        _between("n_chars", cfg.min_chars, cfg.max_chars, chars, cfg.mostly),
        _between(
            "stop_word_ratio", cfg.min_stop_word_ratio, cfg.max_stop_word_ratio, ratio, cfg.mostly
        ),
        _between("markup_leftovers", 0, 0, "markup_leftovers max 0"),
        gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
            column="text_hash",
            min_value=distinct,
            # GX observes the distinct share, so the description speaks of it too.
            description=f"distinct share of text_hash at least {distinct} "
            f"(duplicate rate at most {cfg.max_duplicate_rate})",
        ),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=1,
            max_value=documents_in,
            description=f"documents out between 1 and documents in ({documents_in})",
        ),
    ]


def _identity_expectations() -> list[Any]:
    """Ids and titles present and unique; titles are checked through their hashes."""
    import great_expectations.expectations as gxe

    return [
        expectation(column=column, description=f"{name} {what}")
        for name, column in (("id", "id"), ("title", "title_hash"))
        for expectation, what in (
            (gxe.ExpectColumnValuesToNotBeNull, "present"),
            (gxe.ExpectColumnValuesToBeUnique, "unique"),
        )
    ]


def _between(
    column: str, low: float | None, high: float | None, description: str, mostly: float = 1.0
) -> Any:
    import great_expectations.expectations as gxe

    return gxe.ExpectColumnValuesToBeBetween(
        column=column, min_value=low, max_value=high, mostly=mostly, description=description
    )


def run_suites(
    suites: dict[str, tuple[pd.DataFrame, list[Any]]], docs_dir: Path
) -> dict[str, dict[str, Any]]:
    """Validate each table against its expectations; build Data Docs into ``docs_dir``.

    Returns, per suite, its success and one run-independent record per expectation.
    """
    context = _gx_context(docs_dir)
    import great_expectations as gx

    source = context.data_sources.add_pandas("document_stats")
    results = {}
    for name, (frame, expectations) in suites.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        # Each table is its own batch, so one checkpoint cannot run both; the validation
        # results land in the context's store and one docs build below renders them all.
        outcome = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": ["id"]},
        )
        records = [_record(r) for r in outcome.results]
        results[name] = {"success": bool(outcome.success), "expectations": records}
    context.build_data_docs(site_names=[DOCS_SITE])
    return results


def _gx_context(docs_dir: Path) -> Any:
    """An in-memory GX context whose only Data Docs site is ``docs_dir`` (no analytics)."""
    # GX reads the variable at import time; setdefault keeps a user's explicit choice.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={DOCS_SITE: site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _record(outcome: Any) -> dict[str, Any]:
    """A JSON-ready summary of one expectation's outcome (no run ids, no timestamps)."""
    data = outcome.to_json_dict()  # numpy scalars become plain JSON numbers
    config, observed = data["expectation_config"], data["result"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "column")}
    return {
        "type": config["type"],
        "column": config["kwargs"].get("column"),
        "description": config.get("description"),
        "kwargs": kwargs,
        "success": bool(data["success"]),
        **{k: observed[k] for k in _OBSERVED_KEYS if k in observed},
    }


def failure_message(results: dict[str, dict[str, Any]], report: str) -> str:
    """One line naming every unmet expectation, per suite, and where the report is."""
    parts = []
    for name, suite in results.items():
        records = suite["expectations"]
        failed = [f"{r['description']} ({_observed(r)})" for r in records if not r["success"]]
        if failed:
            parts.append(
                f"{len(failed)} of {len(records)} expectations failed in suite {name!r}: "
                + "; ".join(failed)
            )
    return " | ".join(parts) + f" - see {report}"


def _observed(record: dict[str, Any]) -> str:
    if "unexpected_count" not in record:
        return f"observed {record.get('observed_value')}"
    count = record["unexpected_count"]
    # Examples let the user find the documents; a duplicated id is listed once.
    ids = list(dict.fromkeys(row["id"] for row in record.get("partial_unexpected_index_list", [])))
    examples = f", e.g. id {', '.join(map(str, ids[:3]))}" if ids else ""
    return f"{count} document{'' if count == 1 else 's'}{examples}"


def run(params: DataSections, paths: Paths) -> ValidateResult:
    """Validate ``paths.ingest`` and ``paths.clean``; write the report to ``paths.validate``.

    Raises:
        ArtifactError: an input corpus is missing or was written by another stage.
        ValidationFailed: an expectation is unmet (the report is written first).
    """
    read_meta(paths.ingest, "ingest")
    read_meta(paths.clean, "clean")
    started = time.perf_counter()
    stops = stop_words(params.clean.language, params.clean.stop_words)
    meta = _meta(params, paths)
    folder = work_folder(paths.validate)
    tables = {}
    for corpus in ("ingest", "clean"):
        origin = {"format": WORK_FORMAT, "params": meta["params"], "input": meta["inputs"][corpus]}
        work = ShardProgress(folder / corpus, origin)
        with work.kept_for_a_rerun():
            tables[corpus] = _stats(corpus, paths.output(corpus), stops, params, work)
    ingest, clean = tables["ingest"], tables["clean"]
    suites = {
        "ingest": (ingest, ingest_expectations()),
        "clean": (clean, clean_expectations(params.validate_, len(ingest))),
    }
    with atomic_dir(paths.validate) as out:
        results = run_suites(suites, out / DOCS_SITE)
        write_json(out / RESULTS_FILE, results)
        write_json(out / "meta.json", meta)
    shutil.rmtree(folder, ignore_errors=True)
    result = summarise(results, ingest, clean)
    log.info(
        "validate: %s (%d ingest, %d clean documents) in %.1f s",
        "passed" if result.success else "FAILED",
        len(ingest),
        len(clean),
        time.perf_counter() - started,
    )
    if not result.success:
        raise ValidationFailed(failure_message(results, _shown(paths, result.data_docs)))
    if result.outliers:
        found = ", ".join(f"{n} documents by {column}" for column, n in result.outliers.items())
        log.warning(
            "validate: %s outside their range, within validate.mostly (%s); see %s",
            found,
            params.validate_.mostly,
            _shown(paths, result.data_docs),
        )
    return result


def _stats(
    corpus: str, folder: Path, stops: frozenset[str], params: DataSections, work: ShardProgress
) -> pd.DataFrame:
    """The table the corpus's suite looks at: identities for ingest, all for clean."""
    if corpus == "ingest":
        return identity_stats(folder, work)
    return corpus_stats(folder, stops, params.validate_.workers, params.data, work)


def _meta(params: DataSections, paths: Paths) -> dict[str, Any]:
    clean = params.clean
    return build_meta(
        "validate",
        params={
            "validate": params.validate_.model_dump(mode="json"),
            "clean": {"language": clean.language, "stop_words": clean.stop_words},
        },
        inputs={"ingest": dir_digest(paths.ingest), "clean": dir_digest(paths.clean)},
    )


def _shown(paths: Paths, data_docs: str) -> str:
    """The Data Docs index as the user sees it: relative to the repository root if inside it."""
    index = paths.validate / data_docs
    return str(index.relative_to(paths.root)) if index.is_relative_to(paths.root) else str(index)


def summarise(
    results: dict[str, dict[str, Any]], ingest: pd.DataFrame, clean: pd.DataFrame
) -> ValidateResult:
    """The stage's metrics from the suite results and the statistics tables."""
    suites = {}
    for name, suite in results.items():
        passed = sum(r["success"] for r in suite["expectations"])
        total = len(suite["expectations"])
        suites[name] = SuiteSummary(
            success=suite["success"], expectations=total, passed=passed, failed=total - passed
        )
    n_clean = len(clean)
    return ValidateResult(
        success=all(s.success for s in suites.values()),
        suites=suites,
        documents_ingest=len(ingest),
        documents_clean=n_clean,
        duplicate_rate=round(1 - clean["text_hash"].nunique() / n_clean, 6) if n_clean else 0.0,
        markup_leftovers_total=int(clean["markup_leftovers"].sum()),
        mean_stop_word_ratio=round(float(clean["stop_word_ratio"].mean()), 6) if n_clean else 0.0,
        outliers=_outliers(results["clean"]),
        data_docs=f"{DOCS_SITE}/index.html",
    )


def _outliers(suite: dict[str, Any]) -> dict[str, int]:
    """Per column, the documents outside a range whose expectation still passed."""
    return {
        record["column"]: record["unexpected_count"]
        for record in suite["expectations"]
        if record["success"] and record.get("unexpected_count")
    }
