"""Stage ``validate``: a Great Expectations suite over per-document statistics.

Both corpora (``ingest`` and ``clean``) are reduced, streaming, to one small row of statistics
per document; GX Core validates those tables against suites built from ``params.yaml``.
The report (Data Docs HTML and a deterministic ``results.json``) is always written; any unmet
expectation then fails the stage, so nothing downstream runs on bad data.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from components.artifacts import atomic_dir, build_meta, dir_digest, read_meta, write_json
from components.config import Params, Paths, ValidateParams
from components.documents import Document, iter_batches
from components.errors import ValidationFailed
from components.stopwords import stop_words
from components.textstats import lower_words, markup_leftovers, stop_word_ratio, text_hash

log = logging.getLogger(__name__)

DOCS_SITE = "data_docs"
RESULTS_FILE = "results.json"


class SuiteSummary(BaseModel):
    """Outcome of one expectation suite."""

    model_config = ConfigDict(frozen=True)

    success: bool
    expectations: int
    failed: list[str]


class ValidateResult(BaseModel):
    """What ``validate`` found: written to ``metrics/validate.json``."""

    model_config = ConfigDict(frozen=True)

    success: bool
    suites: dict[str, SuiteSummary]
    documents_ingest: int
    documents_clean: int
    duplicate_rate: float
    markup_leftovers: int
    mean_stop_word_ratio: float
    data_docs: str


@dataclass(frozen=True)
class Check:
    """One expectation and how to describe it to a person."""

    description: str
    expectation: Any  # a great_expectations Expectation (imported lazily: GX is slow)


def document_stats(doc: Document, stops: frozenset[str]) -> dict[str, Any]:
    """The statistics row the suites look at, for one document."""
    words = lower_words(doc.text)
    return {
        "id": doc.id,
        "title": doc.title,
        "n_chars": len(doc.text),
        "n_words": len(words),
        "stop_word_ratio": stop_word_ratio(words, stops),
        "markup_leftovers": markup_leftovers(doc.text),
        "text_hash": text_hash(doc.text),
    }


def corpus_stats(folder: Path, stops: frozenset[str]) -> pd.DataFrame:
    """Statistics of every document of a stage output (texts are streamed, not kept)."""
    rows = [document_stats(doc, stops) for batch in iter_batches(folder) for doc in batch]
    return pd.DataFrame(rows, columns=list(document_stats(Document(0, "", ""), stops)))


def ingest_checks() -> list[Check]:
    """Expectations on the ingested corpus."""
    import great_expectations.expectations as gxe

    return [
        Check("id present", gxe.ExpectColumnValuesToNotBeNull(column="id")),
        Check("id unique", gxe.ExpectColumnValuesToBeUnique(column="id")),
        Check("title present", gxe.ExpectColumnValuesToNotBeNull(column="title")),
        Check("title unique", gxe.ExpectColumnValuesToBeUnique(column="title")),
        Check("text not empty", gxe.ExpectColumnValuesToBeBetween(column="n_chars", min_value=1)),
    ]


def clean_checks(cfg: ValidateParams, documents_in: int) -> list[Check]:
    """Expectations on the cleaned corpus, with bounds from ``params.yaml``."""
    import great_expectations.expectations as gxe

    chars = f"n_chars between {cfg.min_chars} and {cfg.max_chars}"
    ratio = f"stop_word_ratio between {cfg.min_stop_word_ratio} and {cfg.max_stop_word_ratio}"
    return [
        *ingest_checks()[:4],
        Check(
            chars,
            gxe.ExpectColumnValuesToBeBetween(
                column="n_chars", min_value=cfg.min_chars, max_value=cfg.max_chars
            ),
        ),
        Check(
            ratio,
            gxe.ExpectColumnValuesToBeBetween(
                column="stop_word_ratio",
                min_value=cfg.min_stop_word_ratio,
                max_value=cfg.max_stop_word_ratio,
            ),
        ),
        Check(
            "markup_leftovers = 0",
            gxe.ExpectColumnValuesToBeBetween(column="markup_leftovers", min_value=0, max_value=0),
        ),
        Check(
            f"duplicate rate <= {cfg.max_duplicate_rate}",
            gxe.ExpectColumnProportionOfUniqueValuesToBeBetween(
                column="text_hash", min_value=1 - cfg.max_duplicate_rate
            ),
        ),
        Check(
            f"1 <= documents out <= documents in ({documents_in})",
            gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=documents_in),
        ),
    ]


def run_suites(
    tables: dict[str, tuple[pd.DataFrame, list[Check]]], docs_dir: Path
) -> dict[str, list[dict[str, Any]]]:
    """Validate each table against its checks with GX; build Data Docs into ``docs_dir``.

    Returns, per suite, one deterministic record per expectation (no run ids or times).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_pandas("document_stats")
    return {
        name: _run_suite(context, source, name, frame, checks)
        for name, (frame, checks) in tables.items()
    }


def _run_suite(
    context: Any, source: Any, name: str, frame: pd.DataFrame, checks: list[Check]
) -> list[dict[str, Any]]:
    import great_expectations as gx

    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for check in checks:
        suite.add_expectation(check.expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE])],
            result_format={"result_format": "SUMMARY"},
        )
    )
    (result,) = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()
    return [_record(check, outcome) for check, outcome in zip(checks, result.results, strict=True)]


def _record(check: Check, outcome: Any) -> dict[str, Any]:
    """A JSON-ready, run-independent summary of one expectation's outcome."""
    observed = {
        k: outcome.result[k] for k in ("observed_value", "unexpected_count") if k in outcome.result
    }
    return {
        "description": check.description,
        "expectation": outcome.expectation_config.type,
        "kwargs": {k: v for k, v in outcome.expectation_config.kwargs.items() if k != "batch_id"},
        "success": bool(outcome.success),
        **observed,
    }


def failure_message(results: dict[str, list[dict[str, Any]]], report: Path) -> str:
    """One line naming every unmet expectation and where the report is."""
    failed = [
        f"{suite}: {r['description']} ({_observed(r)})"
        for suite, records in results.items()
        for r in records
        if not r["success"]
    ]
    total = sum(len(records) for records in results.values())
    return f"{len(failed)} of {total} expectations failed: {'; '.join(failed)}; see {report}"


def _observed(record: dict[str, Any]) -> str:
    if "unexpected_count" in record:
        return f"{record['unexpected_count']} documents"
    return f"observed {record.get('observed_value')}"


def run(params: Params, paths: Paths) -> ValidateResult:
    """Validate ``paths.ingest`` and ``paths.clean``; write the report to ``paths.validate``.

    Raises:
        ArtifactError: an input corpus is missing.
        ValidationFailed: an expectation is unmet (the report is written first).
    """
    read_meta(paths.ingest, "ingest")
    read_meta(paths.clean, "clean")
    started = time.perf_counter()
    stops = stop_words(params.clean.language, params.clean.stop_words)
    ingest, clean = corpus_stats(paths.ingest, stops), corpus_stats(paths.clean, stops)
    tables = {
        "ingest": (ingest, ingest_checks()),
        "clean": (clean, clean_checks(params.validate_, len(ingest))),
    }
    with atomic_dir(paths.validate) as out:
        results = run_suites(tables, out / DOCS_SITE)
        write_json(out / RESULTS_FILE, results)
        inputs = {"ingest": dir_digest(paths.ingest), "clean": dir_digest(paths.clean)}
        write_json(
            out / "meta.json",
            build_meta(
                "validate", params.validate_.model_dump(), inputs, language=params.clean.language
            ),
        )
    result = _result(results, ingest, clean)
    log.info(
        "validate: %s in %.1f s",
        "passed" if result.success else "FAILED",
        time.perf_counter() - started,
    )
    if not result.success:
        raise ValidationFailed(failure_message(results, paths.validate / DOCS_SITE / "index.html"))
    return result


def _result(
    results: dict[str, list[dict[str, Any]]], ingest: pd.DataFrame, clean: pd.DataFrame
) -> ValidateResult:
    suites = {
        name: SuiteSummary(
            success=all(r["success"] for r in records),
            expectations=len(records),
            failed=[r["description"] for r in records if not r["success"]],
        )
        for name, records in results.items()
    }
    duplicates = 1 - clean["text_hash"].nunique() / len(clean) if len(clean) else 0.0
    return ValidateResult(
        success=all(s.success for s in suites.values()),
        suites=suites,
        documents_ingest=len(ingest),
        documents_clean=len(clean),
        duplicate_rate=round(duplicates, 6),
        markup_leftovers=int(clean["markup_leftovers"].sum()),
        mean_stop_word_ratio=round(float(clean["stop_word_ratio"].mean() or 0.0), 6),
        data_docs=f"{DOCS_SITE}/index.html",
    )
