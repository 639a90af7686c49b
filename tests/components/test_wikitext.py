import bz2
import xml.etree.ElementTree as ET

import pytest

from components.sources import builtin_path
from components.textstats import markup_leftovers
from components.wikitext import Options, is_disambiguation, to_text

CASES = [
    # (id, wikitext, expected plain text)
    ("plain", "Just text.", "Just text."),
    ("bold-italic", "'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
    ("link", "A [[Target]] here.", "A Target here."),
    ("link-label", "A [[Target page|label]] here.", "A label here."),
    ("link-trail", "Many [[cat]]s.", "Many cats."),
    ("pipe-trick", "In [[Paris, Texas (film)|]].", "In Paris, Texas."),
    ("escaped-category", "See [[:Category:Towns|towns]].", "See towns."),
    ("category", "Text.\n[[Category:Towns]]", "Text."),
    ("interlanguage", "Text.\n[[de:Berlin]]", "Text."),
    ("file", "Before [[File:A.jpg|thumb|A caption]] after.", "Before after."),
    (
        "image-nested",
        "X [[Image:B.png|thumb|See [[Link|this]] and [http://e.org site]]] Y.",
        "X Y.",
    ),
    ("external-label", "See [http://example.org the site].", "See the site."),
    ("external-bare", "See [http://example.org].", "See."),
    ("template", "A {{citation needed}} claim.", "A claim."),
    (
        "nested-templates",
        "{{Infobox town|name={{lang|fr|Ville}}|pop={{formatnum:1000}}}}Text.",
        "Text.",
    ),
    ("convert", "It is {{convert|5|km|mi}} long.", "It is 5 km long."),
    ("convert-range", "{{convert|5|to|10|km}} wide.", "5 to 10 km wide."),
    ("lang", "Called {{lang|fr|la ville}} there.", "Called la ville there."),
    ("lang-xx", "Called {{lang-fr|la ville}} there.", "Called la ville there."),
    ("nowrap", "A {{nowrap|10 km}} walk.", "A 10 km walk."),
    ("frac", "About {{frac|1|2}} of it.", "About 1/2 of it."),
    ("ndash", "1990{{ndash}}2000", "1990\u20132000"),
    ("circa", "Built {{circa|1850}}.", "Built c. 1850."),
    ("template-in-prose-template", "{{nowrap|{{convert|3|m}} tall}}", "3 m tall"),
    ("ref", "Fact.<ref>{{cite web|url=http://x}}</ref> More.", "Fact. More."),
    ("ref-named", 'Fact.<ref name="a" /> More.', "Fact. More."),
    ("ref-unclosed", "Fact.<ref>never closed More.", "Fact.never closed More."),
    ("comment", "A<!-- hidden -->B", "AB"),
    ("comment-unterminated", "A<!-- hidden to the end", "A"),
    ("entities", "Tom &amp; Jerry&nbsp;&ndash; &lt;3", "Tom & Jerry \u2013 <3"),
    ("table", "Before\n{| class=wikitable\n|-\n| a || b\n|}\nAfter", "Before\n\nAfter"),
    ("nested-table", "X\n{|\n| outer\n{|\n| inner\n|}\n|}\nY", "X\n\nY"),
    ("table-in-template", "{{Box|content=\n{|\n| cell\n|}\n}}Z", "Z"),
    ("magic-word", "__NOTOC__Text __TOC__.", "Text."),
    ("br", "Line<br/>next<br>end", "Line next end"),
    ("html-tags", "<small>small</small> <span style=x>span</span>", "small span"),
    ("math", "Area <math>\\pi r^2</math> here.", "Area here."),
    ("gallery", "A\n<gallery>\nFile:A.jpg|x\n</gallery>\nB", "A\n\nB"),
    ("list", "* one\n* two\n# three\n: indented", "one\n\ntwo\n\nthree\n\nindented"),
    ("heading", "Intro.\n== History ==\nOld.", "Intro.\n\nHistory\n\nOld."),
    ("empty-section", "Intro.\n== See also ==\n== References ==\n{{reflist}}", "Intro."),
    ("subsection-keeps-parent", "A.\n== H ==\n=== S ===\nText.", "A.\n\nH\n\nS\n\nText."),
    ("empty-parens", "Paris ({{IPA|pa.ʁi}}) is a city.", "Paris is a city."),
    ("unbalanced", "Broken {{template and [[link", "Broken template and link"),
]


@pytest.mark.parametrize(
    ("wikitext", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_to_text(wikitext, expected):
    text = to_text(wikitext)
    assert text == expected
    assert markup_leftovers(text) == 0


def test_headings_can_be_dropped():
    assert to_text("Intro.\n== History ==\nOld.", Options(keep_headings=False)) == "Intro.\n\nOld."


def test_localised_namespaces_are_hidden():
    options = Options(hidden_namespaces=frozenset({"datei", "kategorie"}))
    text = "Text [[Datei:Bild.jpg|mini|Bild]] mehr.\n[[Kategorie:Ort]]"
    assert to_text(text, options) == "Text mehr."
    # Without the dump's namespace names, such a link is an ordinary link.
    assert to_text("A [[Datei:Bild.jpg|mini]] B") == "A mini B"


@pytest.mark.parametrize(
    ("title", "wikitext", "expected"),
    [
        ("Mercury (disambiguation)", "Mercury may be:", True),
        ("Mercury", "'''Mercury''' may refer to:\n{{disambiguation}}", True),
        ("Mercury", "x {{Disambig|geo}}", True),
        ("Merkur", "{{Begriffsklärung}}", True),
        ("Mercury", "Mercury is a planet. {{disambiguation needed}}", False),
        ("Mercury", "Mercury is a planet.", False),
    ],
)
def test_is_disambiguation(title, wikitext, expected):
    assert is_disambiguation(title, wikitext) is expected


def test_builtin_sample_renders_without_leftovers():
    pages = {}
    with bz2.open(builtin_path("enwiki-sample")) as dump:
        for _, elem in ET.iterparse(dump):
            tag = elem.tag.rpartition("}")[2]
            if tag == "title":
                title = elem.text
            elif tag == "text" and elem.text and not elem.text.startswith("#REDIRECT"):
                pages[title] = to_text(elem.text)
    assert len(pages) > 90
    assert sum(map(markup_leftovers, pages.values())) == 0
    assert pages["Anarchism"].startswith("Anarchism is a political philosophy")
    assert "thumb|" not in "".join(pages.values())
