"""Build a larger dump by repeating the builtin sample's pages with fresh ids and titles.

Used by the benchmarks to measure throughput and memory at several dump sizes. Repeated
pages are renumbered (``id + k * 10**7``) and retitled (``Title (k)``) so that ids stay unique.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path

from components.data.sources import builtin_path

_PAGE = re.compile(rb"  <page>.*?</page>\n", re.S)


def build(out: Path, copies: int, compresslevel: int = 1) -> Path:
    """Write ``copies`` renumbered copies of the builtin sample's pages to ``out`` (bz2)."""
    xml = bz2.decompress(builtin_path("enwiki-sample").read_bytes())
    pages = _PAGE.findall(xml)
    head = xml[: xml.index(b"  <page>")]
    tail = xml[xml.rindex(b"</page>\n") + len(b"</page>\n") :]
    out.parent.mkdir(parents=True, exist_ok=True)
    with bz2.open(out, "wb", compresslevel=compresslevel) as handle:
        handle.write(head)
        for k in range(copies):
            for page in pages:
                handle.write(_renumber(page, k) if k else page)
        handle.write(tail)
    return out


def _renumber(page: bytes, k: int) -> bytes:
    page = re.sub(rb"<title>(.*?)</title>", rb"<title>\1 (%d)</title>" % k, page, count=1)
    return re.sub(
        rb"<id>(\d+)</id>", lambda m: b"<id>%d</id>" % (int(m.group(1)) + k * 10**7), page, count=1
    )
