"""The pages of a chunk of dump XML, parsed with expat into :class:`Page` s.

ElementTree built an element for every tag of a page and joined its text piece by piece
(every entity, ``&lt;`` or ``&quot;``, splits the text): five times the cost of expat's own
pass over the bytes. Here expat calls back for each tag, and keeps the text of only the
elements a :class:`Page` needs, whole (``buffer_text``). The fields follow ElementTree's
reading: the first child of each name, and an element's text up to its first child (None
when it has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.parsers import expat

# The fields kept: a page's children, and its first revision's.
_PAGE_FIELDS = frozenset({"id", "title", "ns", "redirect", "revision"})
_REVISION_FIELDS = frozenset({"id", "timestamp", "model", "text"})
_PAGE_DEPTH = 2  # the root is at depth 1
_TEXT_BUFFER = 1 << 20  # characters expat gathers before calling back with text


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


class MalformedXML(Exception):
    """Expat's error: ``line`` (from 1), ``column`` (from 0) and its ``reason``."""

    def __init__(self, reason: str, line: int, column: int) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


def parse_pages(xml: bytes) -> list[Page]:
    """The ``<page>`` children of the document's root, in order.

    Raises:
        MalformedXML: the document is not well-formed.
    """
    builder = _PageBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.buffer_text = True
    parser.buffer_size = _TEXT_BUFFER
    parser.ordered_attributes = True  # a list: cheaper than a dict, and never read
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.characters
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as error:
        reason = expat.errors.messages[error.code]
        raise MalformedXML(reason, error.lineno, error.offset) from None
    return builder.pages


class _PageBuilder:
    """Expat's callbacks: the fields of each page, gathered as the tags come."""

    def __init__(self) -> None:
        self.pages: list[Page] = []
        self.depth = 0
        self.page: dict[str, list[str] | dict] | None = None  # the page being read
        self.revision: dict[str, list[str]] | None = None  # its first revision, while in it
        self.text: list[str] | None = None  # the pieces of the text being kept
        self.names: dict[str, str] = {}  # tag -> local name (a dump uses a dozen tags)

    def _local(self, tag: str) -> str:
        name = self.names.get(tag)
        if name is None:
            name = self.names[tag] = tag.rpartition("}")[2]
        return name

    def start(self, tag: str, _attributes: list) -> None:
        self.depth += 1
        self.text = None  # an element's text ends at its first child
        depth = self.depth - _PAGE_DEPTH
        if depth == 0:
            self.page = {} if self._local(tag) == "page" else None
        elif depth == 1 and self.page is not None:
            name = self._local(tag)
            if name in _PAGE_FIELDS and name not in self.page:
                if name == "revision":
                    self.page[name] = self.revision = {}
                else:
                    self.page[name] = self.text = []
        elif depth == 2 and self.revision is not None:
            name = self._local(tag)
            if name in _REVISION_FIELDS and name not in self.revision:
                self.revision[name] = self.text = []

    def end(self, _tag: str) -> None:
        depth = self.depth - _PAGE_DEPTH
        if depth == 1:
            self.revision = None  # only the first revision is read
        elif depth == 0 and self.page is not None:
            self.pages.append(_page(self.page))
            self.page = None
        self.depth -= 1
        self.text = None

    def characters(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


def _text(fields: dict, name: str) -> str | None:
    pieces = fields.get(name)
    return "".join(pieces) if pieces else None


def _to_int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _page(fields: dict) -> Page:
    """Build a Page from a page's fields, flagging what is missing instead of raising."""
    page_id = _to_int(_text(fields, "id"))
    title = (_text(fields, "title") or "").strip()
    revision = fields.get("revision")
    text = _text(revision, "text") if revision is not None else None
    revision = revision or {}
    problem = None
    if page_id is None:
        problem = "missing_id"
    elif not title:
        problem = "missing_title"
    elif text is None:
        problem = "missing_text"
    return Page(
        id=page_id if page_id is not None else -1,
        title=title,
        ns=_to_int(_text(fields, "ns")) or 0,
        redirect="redirect" in fields,
        revision_id=_to_int(_text(revision, "id")),
        timestamp=_text(revision, "timestamp"),
        model=_text(revision, "model") or "wikitext",
        text=text or "",
        problem=problem,
    )
