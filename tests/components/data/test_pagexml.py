"""pagexml reads pages as ElementTree reads them: an oracle built on ElementTree checks it."""

import xml.etree.ElementTree as ET

import pytest

from components.data import pagexml
from components.data.pagexml import MalformedXML, Page, parse_pages

NS = "http://www.mediawiki.org/xml/export-0.11/"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _first_children(elem: ET.Element) -> dict[str, ET.Element]:
    children: dict[str, ET.Element] = {}
    for child in elem:
        children.setdefault(_local(child.tag), child)
    return children


def _text(children: dict[str, ET.Element], name: str) -> str | None:
    child = children.get(name)
    return child.text if child is not None else None


def _int(value):
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _oracle(xml: bytes) -> list[Page]:
    """The pages as ElementTree reads them: each root child named page."""
    return [_oracle_page(elem) for elem in ET.fromstring(xml) if _local(elem.tag) == "page"]


def _oracle_page(elem: ET.Element) -> Page:
    page = _first_children(elem)
    revision_elem = page.get("revision")
    revision = _first_children(revision_elem) if revision_elem is not None else {}
    fields = {
        "id": _int(_text(page, "id")),
        "title": (_text(page, "title") or "").strip(),
        "ns": _int(_text(page, "ns")) or 0,
        "redirect": "redirect" in page,
        "revision_id": _int(_text(revision, "id")),
        "timestamp": _text(revision, "timestamp"),
        "model": _text(revision, "model") or "wikitext",
        "text": _text(revision, "text"),
    }
    missing = [
        ("missing_id", fields["id"] is None),
        ("missing_title", not fields["title"]),
        ("missing_text", revision_elem is None or fields["text"] is None),
    ]
    problem = next((name for name, found in missing if found), None)
    fields.update(id=-1 if fields["id"] is None else fields["id"], text=fields["text"] or "")
    return Page(**fields, problem=problem)


def _page(body: str, title: str = "T", page_id: str = "1") -> str:
    return f"<page><title>{title}</title><ns>0</ns><id>{page_id}</id>{body}</page>"


def _revision(text: str = "<text>x</text>", rev_id: str = "9") -> str:
    return (
        f"<revision><id>{rev_id}</id><timestamp>2024-01-01T00:00:00Z</timestamp>"
        f"<contributor><username>U</username><id>77</id></contributor>"
        f"<model>wikitext</model>{text}</revision>"
    )


CASES = {
    "plain": _page(_revision()),
    "entities": _page(_revision("<text>a &lt;ref&gt; &amp; &quot;q&quot; &#233;&#x6f22; b</text>")),
    "redirect": _page('<redirect title="Elsewhere" />' + _revision()),
    "empty-text": _page(_revision('<text bytes="0" xml:space="preserve" />')),
    "text-with-no-characters": _page(_revision("<text></text>")),
    "no-revision": _page(""),
    "no-id": "<page><title>T</title><ns>0</ns>" + _revision() + "</page>",
    "non-numeric-id": _page(_revision(), page_id="seven"),
    "blank-title": _page(_revision(), title="  "),
    "two-revisions": _page(
        _revision("<text>first</text>", "1") + _revision("<text>2nd</text>", "2")
    ),
    "two-titles": "<page><title>A</title><title>B</title><id>3</id>" + _revision() + "</page>",
    "child-inside-a-field": _page(
        _revision("<text>before<b>inside</b>after</text>"), "Ti<i>x</i>t"
    ),
    "junk-between-pages": _page(_revision()) + "<siteinfo><x>1</x></siteinfo>" + _page(_revision()),
    "page-inside-a-page": _page(_page(_revision("<text>inner</text>")) + _revision()),
    "model": _page(_revision("<model>css</model><text>a{}</text>")),
    "cdata": _page(_revision("<text><![CDATA[<b>raw</b> & ]]>tail</text>")),
    "white-space-text": _page(_revision("<text>\n\n  \t</text>")),
}


@pytest.mark.parametrize("namespace", [NS, None], ids=["namespaced", "bare"])
@pytest.mark.parametrize("case", list(CASES))
def test_pages_read_as_elementtree_reads_them(case, namespace):
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    xml = f"<mediawiki{xmlns}>{CASES[case]}</mediawiki>".encode()
    pages = parse_pages(xml)
    assert pages == _oracle(xml)
    assert pages  # every case has a page


def test_a_text_longer_than_expats_buffer_is_whole(monkeypatch):
    monkeypatch.setattr(pagexml, "_TEXT_BUFFER", 64)
    text = "".join(f"line {i} &amp; more\n" for i in range(200))
    xml = f"<mediawiki>{_page(_revision(f'<text>{text}</text>'))}</mediawiki>".encode()
    assert parse_pages(xml) == _oracle(xml)
    assert parse_pages(xml)[0].text == text.replace("&amp;", "&")


def test_malformed_xml_gives_expats_reason_and_position():
    xml = b"<mediawiki>\n<page><title>x</titel></page></mediawiki>"
    with pytest.raises(MalformedXML) as caught:
        parse_pages(xml)
    assert (caught.value.reason, caught.value.line, caught.value.column) == (
        "mismatched tag",
        2,
        16,
    )
