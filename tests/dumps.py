"""Build tiny MediaWiki XML dumps for tests (plain, bz2, multistream bz2 or gzip)."""

from __future__ import annotations

import bz2
import gzip
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from components.data.lbzip2 import lbzip2_path

SITEINFO = """  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>{dbname}</dbname>
    <namespaces>
      <namespace key="-2" case="first-letter">{media}</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="6" case="first-letter">{file}</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">{category}</namespace>
    </namespaces>
  </siteinfo>
"""
HEADER = (
    '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" '
    'xml:lang="{lang}">\n'
)
FOOTER = "</mediawiki>\n"


@dataclass
class WikiPage:
    """One page to write; ``text=None`` writes a revision without <text> (malformed)."""

    id: int
    title: str
    text: str | None
    ns: int = 0
    redirect: str | None = None
    revision_id: int = 1000
    timestamp: str = "2024-01-01T00:00:00Z"
    model: str = "wikitext"

    def xml(self) -> str:
        """The <page> element."""
        redirect = f'    <redirect title="{escape(self.redirect)}" />\n' if self.redirect else ""
        text = ""
        if self.text is not None:
            size = len(self.text)
            text = f'      <text bytes="{size}" xml:space="preserve">{escape(self.text)}</text>\n'

        return (
            f"  <page>\n    <title>{escape(self.title)}</title>\n    <ns>{self.ns}</ns>\n"
            f"    <id>{self.id}</id>\n{redirect}    <revision>\n"
            f"      <id>{self.revision_id}</id>\n      <timestamp>{self.timestamp}</timestamp>\n"
            f"      <model>{self.model}</model>\n      <format>text/x-wiki</format>\n"
            f"{text}    </revision>\n  </page>\n"
        )


def dump_xml(pages: list[WikiPage], lang: str = "en", names: dict | None = None) -> str:
    """A whole export document; ``names`` overrides the local namespace names."""
    local = {"dbname": f"{lang}wiki", "media": "Media", "file": "File", "category": "Category"}
    local.update(names or {})
    return (
        HEADER.format(lang=lang)
        + SITEINFO.format(**local)
        + "".join(p.xml() for p in pages)
        + FOOTER
    )


def write_dump(path: Path, pages: list[WikiPage], compression: str = "bz2", **kwargs) -> Path:
    """Write a dump; ``compression`` is ``none``, ``bz2``, ``multistream`` or ``gzip``."""
    data = dump_xml(pages, **kwargs).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if compression == "none":
        path.write_bytes(data)
    elif compression == "bz2":
        path.write_bytes(bz2.compress(data))
    elif compression == "gzip":
        path.write_bytes(gzip.compress(data))
    elif compression == "multistream":
        # Like Wikimedia's multistream dumps: several concatenated bz2 streams.
        third = len(data) // 3
        parts = [data[:third], data[third : 2 * third], data[2 * third :]]
        path.write_bytes(b"".join(bz2.compress(part) for part in parts))
    else:
        raise ValueError(compression)
    return path


ARTICLE = (
    "'''{title}''' is a town in the [[North|northern]] region of the country. "
    "It has a population of about {n},000 people and is known for the river that runs "
    "through the old centre of the town, and for the market that has been held there every "
    "week since the middle ages.<ref>{{{{cite web|url=http://example.org|title=Census}}}}</ref>\n\n"
    "== History ==\n"
    "The first settlement on the site was built by farmers, who used the river to water their "
    "fields and to carry grain to the coast. In the nineteenth century a railway reached the "
    "town and it grew quickly, with new houses and factories along the valley.\n\n"
    "== Geography ==\n"
    "The town lies {{{{convert|{n}|km|mi}}}} from the capital, at the edge of a wide plain "
    "that is covered with fields and small woods. [[File:Town {n}.jpg|thumb|The market]]\n\n"
    "[[Category:Towns]]\n"
)


def article(page_id: int, title: str, n: int | None = None) -> WikiPage:
    """A realistic article page that passes the default quality filters."""
    return WikiPage(page_id, title, ARTICLE.format(title=title, n=n if n is not None else page_id))


def sample_pages() -> list[WikiPage]:
    """A small mixed dump: articles, a redirect, a talk page, a disambiguation page."""
    return [
        article(1, "Alpha"),
        article(2, "Beta"),
        WikiPage(3, "Gamma", "#REDIRECT [[Alpha]]", redirect="Alpha"),
        WikiPage(4, "Talk:Alpha", "Some discussion about the article.", ns=1),
        WikiPage(
            5,
            "Delta (disambiguation)",
            "'''Delta''' may refer to:\n* [[Delta river]]\n{{disambiguation}}",
        ),
        article(6, "Epsilon"),
    ]


# Tests of lbzip2 decoding need the program (Debian's lbzip2 package, installed by `make`
# where it can be: see the Makefile).
needs_lbzip2 = pytest.mark.skipif(
    lbzip2_path() is None, reason="lbzip2 is not installed (apt install lbzip2)"
)
