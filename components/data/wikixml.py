"""Streaming reader of MediaWiki XML export dumps (``*-pages-articles*.xml[.bz2]``).

Reads plain, bz2 (single or multistream) and gzip dumps in constant memory. The reading
process only cuts the XML into :class:`Chunk` s of whole ``<page>`` elements, at each
``</page>`` (which a well-formed dump holds nowhere else: text escapes ``<``), and parses the
``<siteinfo>`` before them; :func:`parse_chunk` turns a chunk into :class:`Page` s wherever
it is sent. The reading process is the one every byte goes through: at 1 GB of XML it took
15 CPU seconds when it parsed the pages and pickled them for the workers, 7.5 since it cuts.
Works for any language and any export schema version (namespaces are stripped from tag
names). Malformed XML is reported at its line and column in the dump, wherever it is found.
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
from xml.sax.saxutils import quoteattr

from components.core.errors import SourceError
from components.data.bz2stream import Bz2Stream
from components.data.lbzip2 import Lbzip2Stream
from components.data.pagexml import MalformedXML, Page, parse_pages
from components.data.readahead import ByteSource, ReadAhead

_BZ2_MAGIC = b"BZh"
_DIGEST_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_EXPAT_POSITION = re.compile(r": line \d+, column \d+$")
_PAGE_START = re.compile(rb"<page[\s>/]")
_PAGE_END = b"</page>"
_ROOT_END = b"</mediawiki>"
_DECLARATION = re.compile(rb"\s*<\?xml[^>]*\?>")
_READ = 1 << 20
_LOOK_BACK = len(b"<page ") - 1  # bytes that may start a page's tag at a read's end
# Namespace keys whose links render nothing in article text: Media, File, Category.
HIDDEN_NAMESPACE_KEYS = frozenset({-2, 6, 14})


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


@dataclass(frozen=True)
class Chunk:
    """Whole ``<page>`` elements of a dump, as its bytes, and what parsing them alone takes.

    Attributes:
        data: the pages' XML as the dump has it (and any white space between them).
        root: the dump's XML declaration, if any, and a root start tag declaring its default
            namespace: what ``data`` is parsed inside.
        dump: the dump's path, for messages.
        line, column: where ``data`` starts in the dump (line from 1, column from 0).
        pages: how many pages ``data`` holds.
    """

    data: bytes
    root: bytes
    dump: str
    line: int
    column: int
    pages: int

    def error(self, line: int, column: int, reason: str) -> SourceError:
        """The error at ``line`` and ``column`` (from 0) of this chunk, placed in the dump.

        The chunk was parsed inside its root tag, on the same line as its first bytes.
        """
        if line == 1:  # the chunk's first line, after the root tag
            column += self.column - len(self.root)
        return _malformed(self.dump, self.line + line - 1, column, reason)


def parse_chunk(chunk: Chunk) -> list[Page]:
    """The pages of a chunk, in order.

    Raises:
        SourceError: the chunk is not well-formed XML (at its line and column in the dump).
    """
    try:
        return parse_pages(chunk.root + chunk.data + _ROOT_END)
    except MalformedXML as error:
        raise chunk.error(error.line, error.column, error.reason) from None


def _malformed(dump: str, line: int, column: int, reason: str) -> SourceError:
    # expat counts columns from 0; editors count from 1.
    return SourceError(f"{dump}: malformed XML at line {line}, column {column + 1}: {reason}")


def _parse_error(error: ET.ParseError) -> tuple[int, int, str]:
    """Line, column and reason of ElementTree's error.

    Its message ends with the position ("mismatched tag: line 54, column 4"), left out here.
    """
    line, column = error.position
    return line, column, _EXPAT_POSITION.sub("", str(error))


class DumpReader:
    """Reads a dump in chunks of pages, or page by page; knows its site's namespaces.

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
        for chunk in self.chunks():
            yield from parse_chunk(chunk)

    def chunks(self, pages: int = 64, size: int = 1 << 20, skip: int = 0) -> Iterator[Chunk]:
        """Yield the dump's pages in chunks of ``pages`` pages or about ``size`` bytes.

        A chunk ends at the page that brings it to ``size`` bytes or more. The first ``skip``
        pages are read past. The ``<siteinfo>`` is read (:attr:`namespaces`) before the first
        chunk comes. Raises SourceError for a corrupt, truncated or empty dump, or one that
        is not a MediaWiki export, before any page.
        """
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
                    yield from _Cutter(self, stream).chunks(pages, size, skip)
                self._sha1 = self._raw.sha1()  # the read-ahead thread is done with the file
            except EOFError:
                raise SourceError(
                    f"{self.path} is truncated: the compressed stream ends early "
                    f"(after {self.bytes_read} bytes); download it again"
                ) from None
            except (OSError, ValueError, zlib.error) as error:  # zlib: corrupt gzip
                raise SourceError(f"{self.path} is corrupt or not a dump: {error}") from None


class _Cutter:
    """Cuts a dump's decompressed bytes into chunks of pages, after reading its head.

    The head (everything before the first ``<page>``) is parsed here: the root element is
    checked and the namespaces of ``<siteinfo>`` learnt. What follows the last ``</page>``
    is parsed here too, so that a dump cut short is reported as malformed.
    """

    def __init__(self, reader: DumpReader, stream: IO[bytes]) -> None:
        self.reader, self.stream = reader, stream
        self.buffer = b""
        self.start = 0  # where the next chunk starts in the buffer
        self.line, self.column = 1, 0  # where it starts in the dump
        self.root = b""  # the chunks' root: set once the root element was checked
        self.declaration = b""
        self.declaration_read = False

    def chunks(self, pages: int, size: int, skip: int) -> Iterator[Chunk]:
        """The dump's chunks after its first ``skip`` pages (see :meth:`DumpReader.chunks`)."""
        if not self._read_head():
            return
        while (chunk := self._next(pages, size)) is not None:
            if skip >= chunk.pages:
                skip -= chunk.pages
                continue
            if skip:  # a chunk that starts before the first page wanted: cut again there
                chunk = self._after(chunk, skip)
                skip = 0
            yield chunk
        self._check_tail()

    def _fill(self) -> bool:
        """Read more of the dump into the buffer (dropping what was taken); False at its end."""
        data = self.stream.read(_READ)
        if not data:
            return False
        self.buffer = self.buffer[self.start :] + data
        self.start = 0
        return True

    def _read_head(self) -> bool:
        """Parse what comes before the first page: the root's start tag and ``<siteinfo>``.

        Returns whether pages follow (else the whole dump was parsed here).
        """
        parser = ET.XMLPullParser(events=("start", "end"))
        try:
            while (found := _PAGE_START.search(self.buffer, self.start)) is None:
                # The last bytes may start a "<page" that the next read completes.
                self._feed(parser, max(self.start, len(self.buffer) - _LOOK_BACK))
                if not self._fill():
                    self._feed(parser, len(self.buffer))
                    parser.close()  # a dump without pages: all of it is parsed here
                    self._read_events(parser)
                    return False
            self._feed(parser, found.start())
        except ET.ParseError as error:
            raise self._head_error(error) from None
        if not self.root:  # the first element is a page
            raise SourceError(
                f"{self.reader.path} is not a MediaWiki export (root <page>, expected <mediawiki>)"
            )
        return True

    def _feed(self, parser: ET.XMLPullParser, end: int) -> None:
        """Parse the buffer's bytes up to ``end`` as the dump's head."""
        data = self.buffer[self.start : end]
        if data and not self.declaration_read:
            self.declaration_read = True
            declared = _DECLARATION.match(data)
            self.declaration = declared.group().lstrip() if declared else b""
        parser.feed(data)
        self._read_events(parser)
        self._advance(end)

    def _read_events(self, parser: ET.XMLPullParser) -> None:
        for event, elem in parser.read_events():
            if event == "start" and not self.root:
                self._check_root(elem)
            elif event == "end" and _local(elem.tag) == "namespace":
                self.reader.namespaces[int(elem.get("key", "0"))] = (elem.text or "").strip()

    def _check_root(self, elem: ET.Element) -> None:
        """Reject a file that is XML but not a MediaWiki export, before reading it."""
        name = _local(elem.tag)
        if name != "mediawiki":
            raise SourceError(
                f"{self.reader.path} is not a MediaWiki export (root <{name}>, "
                "expected <mediawiki>)"
            )
        namespace = elem.tag[1:].partition("}")[0] if elem.tag.startswith("{") else ""
        xmlns = f" xmlns={quoteattr(namespace)}" if namespace else ""
        self.root = self.declaration + f"<mediawiki{xmlns}>".encode()

    def _head_error(self, error: ET.ParseError) -> SourceError:
        if "no element found" in str(error) and not self.root:
            return SourceError(f"{self.reader.path} is empty: no XML in it")
        return _malformed(str(self.reader.path), *_parse_error(error))

    def _next(self, pages: int, size: int) -> Chunk | None:
        """The next chunk of up to ``pages`` pages, or None after the last page."""
        count, end, search = 0, self.start, self.start
        while count < pages and end - self.start < size:
            at = self.buffer.find(_PAGE_END, search)
            if at < 0:
                search = max(len(self.buffer) - len(_PAGE_END) + 1, end)
                before = self.start
                if not self._fill():
                    break
                end, search = end - before, search - before  # the buffer now starts there
                continue
            end = search = at + len(_PAGE_END)
            count += 1
        if count == 0:
            return None
        return self._take(end, count)

    def _take(self, end: int, pages: int) -> Chunk:
        """The chunk of the buffer's bytes up to ``end``, holding ``pages`` pages."""
        data = self.buffer[self.start : end]
        chunk = Chunk(data, self.root, str(self.reader.path), self.line, self.column, pages)
        self.line, self.column = _position_after(data, self.line, self.column)
        self.start = end
        return chunk

    def _advance(self, end: int) -> None:
        """Move the next chunk's start to ``end``, counting the lines passed."""
        passed = self.buffer[self.start : end]
        self.line, self.column = _position_after(passed, self.line, self.column)
        self.start = end

    def _after(self, chunk: Chunk, skip: int) -> Chunk:
        """The pages of ``chunk`` after its first ``skip`` ones."""
        end = 0
        for _ in range(skip):
            end = chunk.data.index(_PAGE_END, end) + len(_PAGE_END)
        line, column = _position_after(chunk.data[:end], chunk.line, chunk.column)
        return Chunk(chunk.data[end:], chunk.root, chunk.dump, line, column, chunk.pages - skip)

    def _check_tail(self) -> None:
        """Parse what follows the last page: the root's end tag, or a page cut short."""
        while self._fill():
            pass
        tail = self.buffer[self.start :]
        rest = Chunk(tail, self.root, str(self.reader.path), self.line, self.column, 0)
        try:
            ET.fromstring(self.root + tail)
        except ET.ParseError as error:
            raise rest.error(*_parse_error(error)) from None


def _position_after(data: bytes, line: int, column: int) -> tuple[int, int]:
    """The line and column just after ``data``, which starts at ``line`` and ``column``."""
    lines = data.count(b"\n")
    if not lines:
        return line, column + len(data)
    return line + lines, len(data) - data.rfind(b"\n") - 1
