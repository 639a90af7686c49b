import bz2

import pytest

from components.errors import SourceError
from components.wikixml import DumpReader
from tests.dumps import WikiPage, sample_pages, write_dump


@pytest.mark.parametrize("compression", ["none", "bz2", "multistream", "gzip"])
def test_every_compression_reads_the_same_pages(tmp_path, compression):
    path = write_dump(tmp_path / f"d-{compression}.xml", sample_pages(), compression)
    pages = list(DumpReader(path))
    assert [p.id for p in pages] == [1, 2, 3, 4, 5, 6]
    assert pages[0].title == "Alpha"
    assert pages[0].revision_id == 1000
    assert pages[0].timestamp == "2024-01-01T00:00:00Z"
    assert pages[2].redirect is True
    assert pages[3].ns == 1
    assert all(p.problem is None for p in pages)


def test_namespaces_come_from_siteinfo(tmp_path):
    names = {"media": "Medium", "file": "Datei", "category": "Kategorie"}
    path = write_dump(tmp_path / "de.xml.bz2", sample_pages(), lang="de", names=names)
    reader = DumpReader(path)
    list(reader)
    assert reader.namespaces[6] == "Datei"
    assert reader.hidden_namespace_names() == {"medium", "datei", "kategorie"}


@pytest.mark.parametrize(
    ("page", "problem"),
    [
        (WikiPage(7, "No text", None), "missing_text"),
        (WikiPage(8, "", "Text"), "missing_title"),
    ],
)
def test_malformed_pages_are_flagged_not_raised(tmp_path, page, problem):
    path = write_dump(tmp_path / "d.xml", [*sample_pages()[:1], page, *sample_pages()[1:2]], "none")
    pages = list(DumpReader(path))
    assert [p.problem for p in pages] == [None, problem, None]


def test_missing_id_is_flagged(tmp_path):
    xml = write_dump(tmp_path / "d.xml", [WikiPage(9, "T", "x")], "none").read_text()
    path = tmp_path / "noid.xml"
    path.write_text(xml.replace("<id>9</id>", ""))
    assert [p.problem for p in DumpReader(path)] == ["missing_id"]


def _bad_dump(tmp_path, kind):
    good = bz2.compress(write_dump(tmp_path / "g.xml", sample_pages() * 20, "none").read_bytes())
    path = tmp_path / f"{kind}.xml.bz2"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "corrupt":
        path.write_bytes(good[:100] + b"\x00" * 200 + good[300:])
    elif kind == "malformed":
        text = (tmp_path / "g.xml").read_text().replace("</title>", "</titel>", 1)
        path.write_bytes(bz2.compress(text.encode()))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-mediawiki":
        path.write_bytes(bz2.compress(b"<html><body>Not a dump</body></html>"))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "is truncated"),
        ("corrupt", "is corrupt"),
        ("malformed", r"malformed XML at line \d+, column \d+"),
        ("empty", "is empty"),
        ("not-mediawiki", "not a MediaWiki export"),
    ],
)
def test_bad_dumps_raise_one_line_naming_the_file(tmp_path, kind, message):
    path = _bad_dump(tmp_path, kind)
    with pytest.raises(SourceError, match=message) as caught:
        list(DumpReader(path))
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="dump not found"):
        DumpReader(tmp_path / "nope.xml.bz2")
