"""Rendering of dump pages to document rows: the work of ``ingest``'s worker processes.

A worker gets a chunk of the dump's XML (:class:`components.data.wikixml.Chunk`), parses its
pages, and renders those that are articles.

Kept apart from :mod:`components.data.ingest` so that the fork server preloads only the wikitext
renderer and the page type (about 40 ms of imports) instead of the stage's own imports
(pydantic, pyarrow, the configuration: 0.4 s of CPU while the stage starts).
"""

from __future__ import annotations

import logging

from components.data.wikitext import Options, is_disambiguation, to_text
from components.data.wikixml import Chunk, Page, parse_chunk

log = logging.getLogger(__name__)

KEPT = "kept"


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


def render_batch(
    item: tuple[Chunk, Options], keep_disambiguation: bool, min_chars: int
) -> list[tuple[str, dict | None]]:
    """Parse and render a chunk of pages: ``(outcome, row)`` per page, in order.

    Runs in worker processes. ``row`` is a document row for kept pages, else None. A page
    whose rendering fails is reported, not raised, so one bad page never stops a dump.

    Raises:
        SourceError: the chunk is not well-formed XML.
    """
    chunk, options = item
    return [_render(page, options, keep_disambiguation, min_chars) for page in parse_chunk(chunk)]


def _render(
    page: Page, options: Options, keep_disambiguation: bool, min_chars: int
) -> tuple[str, dict | None]:
    """``(outcome, row)`` of one page: a document row when it is kept, else None."""
    outcome = classify(page)
    if outcome is not None:
        if page.problem:
            log.warning("malformed page (id %d, title %r): %s", page.id, page.title, outcome)
        return outcome, None
    if not keep_disambiguation and is_disambiguation(page.title, page.text):
        return "disambiguation", None
    try:
        text = to_text(page.text, options)
    except Exception as error:  # noqa: BLE001 - per-record boundary: count and go on
        log.warning("page %d (%s) could not be rendered: %r", page.id, page.title, error)
        return "render_error", None
    if len(text) < min_chars:
        return "empty_text", None
    row = {
        "id": page.id,
        "title": page.title,
        "revision_id": page.revision_id,
        "timestamp": page.timestamp,
        "text": text,
    }
    return KEPT, row
