"""Rendering of dump pages to document rows: the work of ``ingest``'s worker processes.

Kept apart from :mod:`components.data.ingest` so that the fork server preloads only the wikitext
renderer and the page type (about 40 ms of imports) instead of the stage's own imports
(pydantic, pyarrow, the configuration: 0.4 s of CPU while the stage starts).
"""

from __future__ import annotations

import logging

from components.data.wikitext import Options, is_disambiguation, to_text
from components.data.wikixml import Page

log = logging.getLogger(__name__)

KEPT = "kept"


def render_batch(
    item: tuple[list[Page], Options], keep_disambiguation: bool, min_chars: int
) -> list[tuple[str, dict | None]]:
    """Render a batch of article pages: ``(outcome, row)`` per page, in order.

    Runs in worker processes. ``row`` is a document row for kept pages, else None. A page
    whose rendering fails is reported, not raised, so one bad page never stops a dump.
    """
    pages, options = item
    results: list[tuple[str, dict | None]] = []
    for page in pages:
        if not keep_disambiguation and is_disambiguation(page.title, page.text):
            results.append(("disambiguation", None))
            continue
        try:
            text = to_text(page.text, options)
        except Exception as error:  # noqa: BLE001 - per-record boundary: count and go on
            log.warning("page %d (%s) could not be rendered: %r", page.id, page.title, error)
            results.append(("render_error", None))
            continue
        if len(text) < min_chars:
            results.append(("empty_text", None))
            continue
        row = {
            "id": page.id,
            "title": page.title,
            "revision_id": page.revision_id,
            "timestamp": page.timestamp,
            "text": text,
        }
        results.append((KEPT, row))
    return results
