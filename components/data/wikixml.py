"""Streaming reader of MediaWiki XML export dumps (``*-pages-articles*.xml[.bz2]``).

Reads plain, bz2 (single or multistream) and gzip dumps in constant memory: each ``<page>``
element is turned into a :class:`Page` and then cleared from the tree. Works for any
language and any export schema version (namespaces are stripped from tag names).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

from components.core.errors import SourceError
from components.data.bz2stream import Bz2Stream
from components.data.lbzip2 import Lbzip2Stream
from components.data.readahead import ByteSource, ReadAhead

_BZ2_MAGIC = b"BZh"
_DIGEST_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_EXPAT_POSITION = re.compile(r": line \d+, column \d+$")
# Namespace keys whose links render nothing in article text: Media, File, Category.
HIDDEN_NAMESPACE_KEYS = frozenset({-2, 6, 14})


@dataclass(frozen=True, slots=True)
class Page:
    """One ``<page>`` of a dump, as far as it could be read.

    ``problem`` is a snake_case reason when the page is malformed (for example
    ``missing_id``); the other fields are then best effort.
    """

    id: int
    title: str
    ns: int
    redirect: bool
    revision_id: int | None
    timestamp: str | None
    model: str
    text: str
    problem: str | None = None


class CountingReader:
    """Wraps a binary file; counts the bytes read (for progress) and hashes them.

    The hash makes the dump's SHA-1 without a second read of a file that can be 20 GB.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.bytes_read = 0
        self._sha1 = hashlib.sha1(usedforsecurity=False)  # the checksum dumps come with

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped file, counting and hashing the bytes."""
        data = self.raw.read(size)
        self.bytes_read += len(data)
        self._sha1.update(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer`` like the wrapped file, counting and hashing the bytes."""
        count = self.raw.readinto(buffer) or 0
        self.bytes_read += count
        self._sha1.update(memoryview(buffer)[:count])
        return count

    def readable(self) -> bool:
        """Always readable (required by the bz2 and gzip wrappers)."""
        return True

    def sha1(self) -> str:
        """SHA-1 of the whole file: of the bytes read so far, and of the rest, read now."""
        while self.read(_DIGEST_CHUNK):
            pass
        return self._sha1.hexdigest()


@lru_cache(maxsize=256)
def _local(tag: str) -> str:
    """Tag name without its XML namespace (a dump uses a dozen tags, millions of times)."""
    return tag.rpartition("}")[2]


@contextmanager
def _decompressed(path: Path, raw: CountingReader, lbzip2_threads: int) -> Iterator[ByteSource]:
    """The decompressed bytes of ``raw``, picking the format from its magic bytes, not its name.

    bz2 is decoded by lbzip2 when ``lbzip2_threads`` is set, else by Python's bz2 module.
    """
    with path.open("rb") as probe:
        magic = probe.read(3)
    if magic.startswith(_BZ2_MAGIC) and lbzip2_threads > 0:
        with Lbzip2Stream(raw, lbzip2_threads) as stream:
            yield stream
    elif magic.startswith(_BZ2_MAGIC):
        yield Bz2Stream(raw)  # reads every stream of a multistream file
    elif magic.startswith(_GZIP_MAGIC):
        yield gzip.GzipFile(fileobj=raw)
    else:
        yield raw


class DumpReader:
    """Iterates the pages of a dump; knows its site's namespaces once they were read.

    Attributes:
        namespaces: namespace key -> local name, from ``<siteinfo>``.
        bytes_read: compressed bytes consumed so far (for progress reporting).
        lbzip2_threads: decode bz2 with lbzip2 on this many threads (0: Python's bz2 module).
    """

    def __init__(self, path: Path, lbzip2_threads: int = 0) -> None:
        if not path.is_file():
            raise SourceError(f"dump not found: {path}")
        self.path = path
        self.lbzip2_threads = lbzip2_threads
        self.namespaces: dict[int, str] = {}
        self._raw: CountingReader | None = None
        self._root_seen = False
        self._sha1: str | None = None

    @property
    def sha1(self) -> str:
        """SHA-1 of the dump file, hashed while it was read (once every page was read).

        Raises:
            RuntimeError: the dump has not been read to its end.
        """
        if self._sha1 is None:
            raise RuntimeError(f"{self.path} has not been read to its end")
        return self._sha1

    @property
    def bytes_read(self) -> int:
        """Compressed bytes read from disk so far."""
        return self._raw.bytes_read if self._raw else 0

    def hidden_namespace_names(self) -> frozenset[str]:
        """Lower-cased local names of the Media, File and Category namespaces."""
        return frozenset(
            name.lower() for key, name in self.namespaces.items() if key in HIDDEN_NAMESPACE_KEYS
        )

    def __iter__(self) -> Iterator[Page]:
        """Yield every page; raise SourceError for a corrupt, truncated or empty dump."""
        try:
            handle = self.path.open("rb")
        except OSError as error:
            raise SourceError(f"cannot read {self.path}: {error.strerror or error}") from None
        with handle:
            self._raw = CountingReader(handle)
            try:
                with (
                    _decompressed(self.path, self._raw, self.lbzip2_threads) as decoded,
                    ReadAhead(decoded) as stream,
                ):
                    yield from self._parse(stream)
                self._sha1 = self._raw.sha1()  # the read-ahead thread is done with the file
            except ET.ParseError as error:
                raise self._xml_error(error) from None
            except EOFError:
                raise SourceError(
                    f"{self.path} is truncated: the compressed stream ends early "
                    f"(after {self.bytes_read} bytes); download it again"
                ) from None
            except (OSError, ValueError, zlib.error) as error:  # zlib: corrupt gzip
                raise SourceError(f"{self.path} is corrupt or not a dump: {error}") from None

    def _xml_error(self, error: ET.ParseError) -> SourceError:
        line, column = error.position
        if "no element found" in str(error) and not self._root_seen:
            return SourceError(f"{self.path} is empty: no XML in it")
        # expat counts columns from 0; editors count from 1. Its message ends with its own
        # position ("mismatched tag: line 54, column 4"), left out for this one.
        where = f"line {line}, column {column + 1}"
        reason = _EXPAT_POSITION.sub("", str(error))
        return SourceError(f"{self.path}: malformed XML at {where}: {reason}")

    def _parse(self, stream: IO[bytes]) -> Iterator[Page]:
        root = None
        for event, elem in ET.iterparse(stream, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = self._check_root(elem)
                continue
            tag = _local(elem.tag)
            if tag == "page":
                yield _page(elem)
                root.clear()  # constant memory: drop the finished page from the tree
            elif tag == "namespace":
                self.namespaces[int(elem.get("key", "0"))] = (elem.text or "").strip()

    def _check_root(self, elem: ET.Element) -> ET.Element:
        """Reject a file that is XML but not a MediaWiki export, before reading it."""
        self._root_seen = True
        if _local(elem.tag) != "mediawiki":
            raise SourceError(
                f"{self.path} is not a MediaWiki export (root <{_local(elem.tag)}>, "
                "expected <mediawiki>)"
            )
        return elem


def _children(elem: ET.Element) -> dict[str, ET.Element]:
    """An element's children by local tag name (the first of each name)."""
    children: dict[str, ET.Element] = {}
    for child in elem:
        children.setdefault(_local(child.tag), child)
    return children


def _text(children: dict[str, ET.Element], name: str) -> str | None:
    child = children.get(name)
    return child.text if child is not None else None


def _to_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _page(elem: ET.Element) -> Page:
    """Build a Page from a ``<page>`` element, flagging what is missing instead of raising."""
    page = _children(elem)
    page_id = _to_int(_text(page, "id"))
    title = (_text(page, "title") or "").strip()
    revision_elem = page.get("revision")
    revision = _children(revision_elem) if revision_elem is not None else {}
    text = _text(revision, "text")
    problem = None
    if page_id is None:
        problem = "missing_id"
    elif not title:
        problem = "missing_title"
    elif revision_elem is None or text is None:
        problem = "missing_text"
    return Page(
        id=page_id if page_id is not None else -1,
        title=title,
        ns=_to_int(_text(page, "ns")) or 0,
        redirect="redirect" in page,
        revision_id=_to_int(_text(revision, "id")),
        timestamp=_text(revision, "timestamp"),
        model=_text(revision, "model") or "wikitext",
        text=text or "",
        problem=problem,
    )
