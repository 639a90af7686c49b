import bz2
import gzip
import hashlib
import xml.etree.ElementTree as ET

import pytest

from components.core.errors import SourceError
from components.data import wikixml
from components.data.wikixml import DumpReader, Page
from tests.dumps import WikiPage, dump_xml, needs_lbzip2, sample_pages, write_dump

GERMAN = {"media": "Medium", "file": "Datei", "category": "Kategorie"}
# DumpReader's lbzip2_threads: 0 decodes bz2 with the bz2 module, more with lbzip2.
BZ2_DECODERS = [
    pytest.param(0, id="bz2-module"),
    pytest.param(2, id="lbzip2", marks=needs_lbzip2),
]


def _read(path, lbzip2_threads=0) -> list[Page]:
    return list(DumpReader(path, lbzip2_threads))


def _xml_with(tmp_path, pages, old, new, name="edited.xml"):
    """A plain dump of ``pages`` with the first ``old`` replaced by ``new``."""
    xml = dump_xml(pages)
    assert old in xml
    path = tmp_path / name
    path.write_text(xml.replace(old, new, 1), encoding="utf-8")
    return path


def test_plain_dump_pages(tmp_path):
    pages = _read(write_dump(tmp_path / "d.xml", sample_pages(), "none"))
    assert [p.id for p in pages] == [1, 2, 3, 4, 5, 6]
    assert pages[0] == Page(
        id=1,
        title="Alpha",
        ns=0,
        redirect=False,
        revision_id=1000,
        timestamp="2024-01-01T00:00:00Z",
        model="wikitext",
        text=sample_pages()[0].text,
    )
    assert (pages[2].redirect, pages[3].ns) == (True, 1)


def test_text_is_unescaped_exactly(tmp_path):
    text = "A & B < C > D \"q\" 'a' \u00e9\u6f22\n\n  indented"
    pages = _read(write_dump(tmp_path / "d.xml.bz2", [WikiPage(1, "T & U", text)]))
    assert (pages[0].title, pages[0].text) == ("T & U", text)


@pytest.mark.parametrize("threads", BZ2_DECODERS)
@pytest.mark.parametrize("compression", ["bz2", "multistream", "gzip"])
def test_compressed_dumps_give_identical_pages(tmp_path, compression, threads):
    plain = DumpReader(write_dump(tmp_path / "d.xml", sample_pages(), "none"))
    path = write_dump(tmp_path / f"d.{compression}", sample_pages(), compression)
    packed = DumpReader(path, lbzip2_threads=threads)
    pages = list(packed)
    assert len(pages) == 6
    assert pages == list(plain)
    assert packed.namespaces == plain.namespaces != {}


def test_multistream_fixture_has_several_streams(tmp_path):
    path = write_dump(tmp_path / "d.xml.bz2", sample_pages(), "multistream")
    first = bz2.BZ2Decompressor()
    first.decompress(path.read_bytes())
    assert first.eof
    assert first.unused_data.startswith(b"BZh")  # another stream follows the first


def test_format_is_detected_from_content_not_name(tmp_path):
    path = tmp_path / "really-gzip.xml.bz2"
    path.write_bytes(gzip.compress(dump_xml(sample_pages()).encode()))
    assert [p.title for p in _read(path)][:2] == ["Alpha", "Beta"]


def test_bz2_dumps_are_read_in_megabyte_steps(tmp_path, monkeypatch):
    """Not BZ2File's 8 KB ones, each of which waited for the parser's GIL (bz2stream.py)."""
    asked = []
    read = wikixml.CountingReader.read

    def recording_read(self, size=-1):
        asked.append(size)
        return read(self, size)

    monkeypatch.setattr(wikixml.CountingReader, "read", recording_read)
    assert len(_read(write_dump(tmp_path / "d.xml.bz2", sample_pages(), "multistream"))) == 6
    assert set(asked) == {1 << 20}


@pytest.mark.parametrize("threads", BZ2_DECODERS)
def test_bytes_read_reaches_the_file_size(tmp_path, threads):
    reader = DumpReader(write_dump(tmp_path / "d.xml.bz2", sample_pages()), threads)
    assert reader.bytes_read == 0
    list(reader)
    assert reader.bytes_read == reader.path.stat().st_size


@pytest.mark.parametrize("threads", BZ2_DECODERS)
@pytest.mark.parametrize("compression", ["none", "bz2", "multistream", "gzip"])
def test_the_dump_sha1_is_hashed_while_reading(tmp_path, compression, threads):
    path = write_dump(tmp_path / f"d.{compression}", sample_pages(), compression)
    reader = DumpReader(path, threads)
    with pytest.raises(RuntimeError, match="not been read to its end"):
        _ = reader.sha1
    assert len(list(reader)) == 6
    assert reader.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("threads", BZ2_DECODERS)
def test_the_dump_sha1_covers_data_the_reader_left_unread(tmp_path, threads):
    """Trailing data after the last bz2 stream is ignored by the reader, not by the hash."""
    path = write_dump(tmp_path / "d.xml.bz2", sample_pages())
    path.write_bytes(path.read_bytes() + b"\0" * 3_000_000)
    reader = DumpReader(path, threads)
    assert len(list(reader)) == 6
    assert reader.sha1 == hashlib.sha1(path.read_bytes()).hexdigest()


def test_namespaces_come_from_siteinfo(tmp_path):
    reader = DumpReader(write_dump(tmp_path / "d.xml.bz2", sample_pages()))
    list(reader)
    assert reader.namespaces == {-2: "Media", 0: "", 6: "File", 10: "Template", 14: "Category"}
    assert reader.hidden_namespace_names() == {"media", "file", "category"}


def test_localised_hidden_namespace_names(tmp_path):
    path = write_dump(tmp_path / "de.xml.bz2", sample_pages(), lang="de", names=GERMAN)
    reader = DumpReader(path)
    list(reader)
    assert reader.namespaces[6] == "Datei"
    assert reader.hidden_namespace_names() == {"medium", "datei", "kategorie"}


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('      <text bytes="11" xml:space="preserve">Broken page</text>\n', "", "missing_text"),
        ("    <id>7</id>\n", "", "missing_id"),
        ("    <id>7</id>\n", "    <id>seven</id>\n", "missing_id"),
        ("<title>Broken</title>", "<title> </title>", "missing_title"),
    ],
    ids=["missing-text", "missing-id", "non-numeric-id", "blank-title"],
)
def test_malformed_page_is_flagged_and_reading_goes_on(tmp_path, old, new, problem):
    pages = [sample_pages()[0], WikiPage(7, "Broken", "Broken page"), sample_pages()[1]]
    read = _read(_xml_with(tmp_path, pages, old, new))
    assert [p.problem for p in read] == [None, problem, None]
    assert [p.title for p in read][::2] == ["Alpha", "Beta"]


def test_page_without_text_keeps_its_other_fields(tmp_path):
    page = _read(write_dump(tmp_path / "d.xml", [WikiPage(7, "No text", None)], "none"))[0]
    assert (page.id, page.title, page.text, page.problem) == (7, "No text", "", "missing_text")


def _good_bz2() -> bytes:
    return bz2.compress(dump_xml(sample_pages() * 30).encode())


def _truncated_bz2(tmp_path):
    path = tmp_path / "truncated.xml.bz2"
    path.write_bytes(_good_bz2()[:-200])
    return path


def _corrupt_bz2(tmp_path):
    """Damaged in the middle; its end is still the end of a stream."""
    path = tmp_path / "corrupt.xml.bz2"
    good = _good_bz2()
    middle = len(good) // 2
    path.write_bytes(good[:middle] + bytes(200) + good[middle + 200 :])
    return path


def _truncated_gzip(tmp_path):
    path = tmp_path / "truncated.xml.gz"
    path.write_bytes(gzip.compress(dump_xml(sample_pages() * 30).encode())[:-100])
    return path


def _corrupt_gzip(tmp_path):
    path = tmp_path / "corrupt.xml.gz"
    good = gzip.compress(dump_xml(sample_pages() * 30).encode())
    path.write_bytes(good[:20] + b"\xff" * 200 + good[220:])
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.xml.bz2"
    path.write_bytes(b"")
    return path


def _not_mediawiki(tmp_path):
    path = tmp_path / "page.xml"
    path.write_text("<html><body><p>Not a dump</p></body></html>")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated_bz2, "is truncated: the compressed stream ends early"),
        (_corrupt_bz2, "is corrupt or not a dump"),
        (_truncated_gzip, "is truncated"),
        (_corrupt_gzip, "is corrupt or not a dump"),
        (_empty, "is empty"),
        (_not_mediawiki, r"is not a MediaWiki export \(root <html>, expected <mediawiki>\)"),
    ],
    ids=[
        "truncated-bz2",
        "corrupt-bz2",
        "truncated-gzip",
        "corrupt-gzip",
        "empty",
        "not-mediawiki",
    ],
)
@pytest.mark.parametrize("threads", BZ2_DECODERS)
def test_bad_dump_raises_one_line_naming_the_file(tmp_path, make, message, threads):
    path = make(tmp_path)
    with pytest.raises(SourceError, match=message) as caught:
        _read(path, threads)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("threads", BZ2_DECODERS)
@pytest.mark.parametrize("compression", ["none", "bz2"])
def test_malformed_xml_names_line_and_column(tmp_path, compression, threads):
    xml = dump_xml(sample_pages()).replace("<title>Beta</title>", "<title>Beta</titel>")
    line = xml.splitlines().index("    <title>Beta</titel>") + 1
    path = tmp_path / f"bad.{compression}"
    data = xml.encode()
    path.write_bytes(bz2.compress(data) if compression == "bz2" else data)
    with pytest.raises(SourceError, match=rf"malformed XML at line {line}, column \d+") as caught:
        _read(path, threads)
    assert str(caught.value).startswith(str(path))
    assert str(caught.value).endswith(": mismatched tag")  # one position, not expat's too
    assert "\n" not in str(caught.value)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.xml.bz2"
    with pytest.raises(SourceError, match="dump not found") as caught:
        DumpReader(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_non_mediawiki_xml_is_rejected_before_any_page(tmp_path):
    path = tmp_path / "other.xml"
    path.write_text("<html>" + "<page><title>T</title><ns>0</ns><id>1</id></page>" * 50 + "</html>")
    seen = []
    with pytest.raises(SourceError, match=r"root <html>"):
        seen.extend(DumpReader(path))
    assert seen == []


def test_unreadable_file_is_a_source_error(tmp_path, monkeypatch):
    path = write_dump(tmp_path / "d.xml.bz2", sample_pages())
    real_open = type(path).open

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(type(path), "open", refuse)
    with pytest.raises(SourceError, match=f"cannot read {path}: Permission denied"):
        list(DumpReader(path))


def test_whitespace_only_file_is_empty(tmp_path):
    path = tmp_path / "blank.xml"
    path.write_text("\n\n   \n")
    with pytest.raises(SourceError, match="is empty"):
        list(DumpReader(path))


def test_malformed_xml_columns_count_from_one(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<mediawiki>\n<page><title>x</titel></page></mediawiki>")
    with pytest.raises(SourceError, match="line 2, column 17"):
        list(DumpReader(path))


# Chunks: the reading process cuts the XML at each </page>; workers parse the pieces.


def _many_pages(count=40):
    return [
        WikiPage(i, f"Page {i}", f"Text of page {i} \u00e9\u6f22 & <b>")
        for i in range(1, count + 1)
    ]


def test_chunks_hold_every_page_once_in_order(tmp_path):
    path = write_dump(tmp_path / "d.xml", _many_pages(), "none")
    chunks = list(DumpReader(path).chunks(pages=7))
    assert [chunk.pages for chunk in chunks] == [7] * 5 + [5]
    pages = [page for chunk in chunks for page in wikixml.parse_chunk(chunk)]
    assert pages == _read(path)
    assert [page.id for page in pages] == list(range(1, 41))


def test_chunks_end_at_the_page_that_reaches_their_size(tmp_path):
    path = write_dump(tmp_path / "d.xml", _many_pages(), "none")
    chunks = list(DumpReader(path).chunks(pages=100, size=1000))
    assert len(chunks) > 3
    page_bytes = max(len(chunk.data) / chunk.pages for chunk in chunks)
    assert all(len(chunk.data) < 1000 + 2 * page_bytes for chunk in chunks)
    assert sum(chunk.pages for chunk in chunks) == 40


@pytest.mark.parametrize("skip", [0, 1, 6, 7, 8, 39, 40])
def test_chunks_after_skipped_pages(tmp_path, skip):
    path = write_dump(tmp_path / "d.xml", _many_pages(), "none")
    chunks = list(DumpReader(path).chunks(pages=7, skip=skip))
    pages = [page for chunk in chunks for page in wikixml.parse_chunk(chunk)]
    assert [page.id for page in pages] == list(range(skip + 1, 41))


@pytest.mark.parametrize("read_size", [1, 5, 7, 64])
def test_tags_cut_between_reads(tmp_path, monkeypatch, read_size):
    """A "<page" or "</page>" that one read cuts in two is found whole."""
    path = write_dump(tmp_path / "d.xml", sample_pages(), "none")
    expected = _read(path)
    monkeypatch.setattr(wikixml, "_READ", read_size)
    reader = DumpReader(path)
    assert list(reader) == expected
    assert reader.namespaces[14] == "Category"


def _expat_position(xml: str) -> tuple[int, int]:
    """Where expat, reading the whole document at once, finds it malformed (column from 1)."""
    with pytest.raises(ET.ParseError) as caught:
        ET.fromstring(xml)
    line, column = caught.value.position
    return line, column + 1


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("<title>Page 23</title>", "<title>Page 23</titel>"),  # inside a chunk's page
        ("<title>Page 15</title>", "<title>Page 15</title"),  # the first page of a chunk
        ("<page>\n    <title>Page 36", "<page>\n    <title>Page 36</page>"),
        ("Text of page 9 ", "Text of page 9 & "),  # an unescaped ampersand
    ],
    ids=["mismatched", "unclosed-tag", "closed-early", "ampersand"],
)
def test_malformed_xml_in_a_later_chunk_is_placed_as_in_the_whole_dump(tmp_path, old, new):
    xml = dump_xml(_many_pages())
    assert old in xml
    bad = xml.replace(old, new, 1)
    path = tmp_path / "bad.xml"
    path.write_text(bad, encoding="utf-8")
    line, column = _expat_position(bad)
    with pytest.raises(SourceError, match=rf"malformed XML at line {line}, column {column}: "):
        [wikixml.parse_chunk(chunk) for chunk in DumpReader(path).chunks(pages=7)]
    with pytest.raises(SourceError, match=rf"malformed XML at line {line}, column {column}: "):
        list(DumpReader(path))


def test_a_plain_dump_cut_inside_a_page_is_malformed(tmp_path):
    xml = dump_xml(_many_pages())
    cut = xml[: xml.index("Text of page 30")]
    path = tmp_path / "cut.xml"
    path.write_text(cut, encoding="utf-8")
    with pytest.raises(SourceError, match=r"malformed XML at line \d+, column \d+") as caught:
        list(DumpReader(path))
    assert str(caught.value).startswith(str(path))


def test_a_dump_without_its_end_tag_is_malformed(tmp_path):
    xml = dump_xml(_many_pages())
    path = tmp_path / "open.xml"
    path.write_text(xml.replace("</mediawiki>", ""), encoding="utf-8")
    with pytest.raises(SourceError, match="malformed XML at line"):
        list(DumpReader(path))


def test_a_dump_without_pages_has_its_namespaces(tmp_path):
    reader = DumpReader(write_dump(tmp_path / "d.xml", [], "none"))
    assert list(reader) == []
    assert reader.namespaces[6] == "File"
    assert reader.sha1


def test_a_page_as_root_is_not_a_mediawiki_export(tmp_path):
    path = tmp_path / "page.xml"
    path.write_text("<page><title>T</title><ns>0</ns><id>1</id></page>")
    with pytest.raises(SourceError, match=r"root <page>, expected <mediawiki>"):
        list(DumpReader(path))


def test_the_declared_encoding_is_used_in_every_chunk(tmp_path):
    pages = [WikiPage(i, f"Caf\u00e9 {i}", f"Cr\u00e8me br\u00fbl\u00e9e {i}") for i in range(1, 6)]
    xml = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + dump_xml(pages)
    path = tmp_path / "latin1.xml"
    path.write_bytes(xml.encode("iso-8859-1"))
    read = list(DumpReader(path).chunks(pages=2))
    assert len(read) == 3
    texts = [page.text for chunk in read for page in wikixml.parse_chunk(chunk)]
    assert texts == [page.text for page in pages]
