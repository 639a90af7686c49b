import random

import pytest

from components.data.render import classify
from components.data.sources import builtin_path
from components.data.validate import MARKUP_TOKENS
from components.data.wikitext import Options, _contains, is_disambiguation, to_text
from components.data.wikixml import DumpReader


def _leftovers(text: str) -> list[str]:
    return [token for token in MARKUP_TOKENS if token in text]


def _table(*cases: tuple) -> pytest.MarkDecorator:
    """Parametrize (wikitext, expected) cases, each with an id as its first item."""
    return pytest.mark.parametrize(
        ("wikitext", "expected"), [c[1:] for c in cases], ids=[c[0] for c in cases]
    )


TEMPLATES = (
    ("template-dropped", "A {{citation needed}} claim.", "A claim."),
    ("template-multiline", "{{Use dmy dates\n|date=May 2020}}\nText.", "Text."),
    (
        "infobox-with-nested-templates",
        "{{Infobox town\n| name = {{lang|fr|Ville}}\n| pop = {{formatnum:1000}}\n"
        "| map = {{location map|France|lat={{coord|1|2}}}}\n}}\n'''Town''' is here.",
        "Town is here.",
    ),
    ("template-arg-with-link", "{{nowrap|[[Paris|la ville]] x}}", "la ville x"),
    ("template-in-prose-template", "{{nowrap|{{convert|3|m}} tall}}", "3 m tall"),
    ("convert", "It is {{convert|5|km|mi}} long.", "It is 5 km long."),
    ("convert-named-args", "{{convert|5.5|km|mi|abbr=on}} long", "5.5 km long"),
    ("convert-range", "{{convert|5|to|10|km}} wide.", "5 to 10 km wide."),
    ("convert-case-insensitive", "{{Convert|2|m}} high", "2 m high"),
    ("lang", "Called {{lang|fr|texte}} there.", "Called texte there."),
    ("lang-xx", "Called {{lang-fr|texte}} there.", "Called texte there."),
    ("nowrap", "A {{nowrap|a b}} c.", "A a b c."),
    ("frac", "About {{frac|1|2}} of it.", "About 1/2 of it."),
    ("frac-whole", "{{frac|3|1|2}} miles", "3 1/2 miles"),
    ("frac-one-arg", "{{frac|4}} of it", "1/4 of it"),
    ("ndash", "1990{{ndash}}2000", "1990\u20132000"),
    ("mdash", "a{{mdash}}b", "a\u2014b"),
    ("circa", "Built {{circa|1850}}.", "Built c. 1850."),
    ("empty-parens-left-by-template", "Paris ({{IPA|pa.\u0281i}}) is a city.", "Paris is a city."),
    ("empty-brackets-around-empty-parens", "See [{{efn|a}} ( )] here.", "See here."),
    ("unbalanced", "Broken {{template and [[link", "Broken template and link"),
    ("numbered-argument", "So {{nowrap|1=x = 5}} holds.", "So x = 5 holds."),
    ("numbered-after-positional", "{{lang|fr|2=texte}} here", "texte here"),
    ("convert-compound-units", "At {{convert|6|ft|2|in|m}} tall", "At 6 ft 2 in tall"),
    ("us-dollars", "More than {{US$|2 billion}} spent.", "More than US$2 billion spent."),
    (
        "ship",
        "Alongside {{HMS|Ajax|22|6}} and {{ship|USS|Maine}}.",
        "Alongside HMS Ajax and USS Maine.",
    ),
    (
        "angle-brackets",
        "The letter {{angbr|a}} and {{angbr|{{IPA|a}}}}.",
        "The letter \u27e8a\u27e9 and.",
    ),
    ("math-template", "So {{math|''E'' {{=}} ''mc''}} holds.", "So E = mc holds."),
    ("pipe-in-argument", "A {{nowrap|x {{!}} y}} b.", "A x | y b."),
    (
        "quote-is-a-paragraph",
        "He said:{{quote|We shall [[fight]] {{nowrap|on the}} beaches.|Churchill}}Then.",
        "He said:\n\nWe shall fight on the beaches.\n\nThen.",
    ),
    ("quote-text-argument", "{{Quote|author=Hamlet|text=To be.}} Next.", "To be.\n\nNext."),
    ("quote-quote-argument", "{{cquote|quote=Yes, ''we'' can.|author=X}}", "Yes, we can."),
    ("quote-numbered-argument", "{{blockquote|1=E = mc2, he wrote.}}", "E = mc2, he wrote."),
    ("small-caps", "In 300&nbsp;{{sc|bc}} and {{smallcaps|ad}} 5.", "In 300 bc and ad 5."),
)

TABLES = (
    ("table", "Before\n{| class=wikitable\n|-\n! h\n|-\n| a || b\n|}\nAfter", "Before\n\nAfter"),
    ("nested-table", "X\n{|\n| outer\n{|\n| inner\n|}\n|}\nY", "X\n\nY"),
    ("table-in-template", "{{Box|content=\n{|\n| cell\n|}\n}}Z", "Z"),
    ("template-in-table", "{|\n| {{convert|5|km}}\n|}\nZ", "Z"),
    ("unclosed-table", "A\n{|\n| cell\nB", "A\n\nB"),
    ("table-cells-with-braces-and-pipes", "A\n{|\n| x {y} | z |-\n|{ w }|\n|}\nB", "A\n\nB"),
    ("tables-one-after-another", "A\n{|\n| a\n|}\nB\n{|\n| b\n|}\nC", "A\n\nB\n\nC"),
)

TAGS_AND_COMMENTS = (
    ("ref", "Fact.<ref>{{cite web|url=http://x|title=[[Y]]}}</ref> More.", "Fact. More."),
    ("ref-named-self-closing", "Fact.<ref name=x/> More.", "Fact. More."),
    ("ref-named-quoted", 'Fact.<ref name="a b" /> More.', "Fact. More."),
    ("ref-with-attributes", "Fact.<ref group=n name=y>x</ref> More.", "Fact. More."),
    ("ref-unclosed", "Fact.<ref>never closed More.", "Fact.never closed More."),
    ("ref-unclosed-then-closed", "A<ref name=a> B<ref>x</ref> C.", "A B C."),
    ("references", "Text.\n== Notes ==\n<references />", "Text."),
    ("comment", "A<!-- hidden -->B", "AB"),
    ("comment-multiline", "A<!-- one\ntwo -->B", "AB"),
    ("comment-unterminated", "A<!-- hidden to the end\nmore", "A"),
    ("comment-hides-markup", "A<!-- {{x}} [[y]] <ref> -->B", "AB"),
    ("entities", "Tom &amp; Jerry&nbsp;&ndash; &lt;3", "Tom & Jerry \u2013 <3"),
    ("entity-braces", "a &#123;&#123;b&#125;&#125; c", "a b c"),
    ("entity-ref-tag", "the &lt;ref&gt; tag", "the tag"),
    ("math", "Area <math>\\pi r^2</math> here.", "Area here."),
    ("gallery", "A\n<gallery>\nFile:A.jpg|x\n</gallery>\nB", "A\n\nB"),
    ("html-tags-keep-text", "<small>small</small> <span style=x>span</span>", "small span"),
    ("html-tags-any-case", "<SMALL>x</SMALL> <Span class=a>y</Span><BR/>z", "x y z"),
    ("poem-keeps-its-lines", "<poem>\nFirst line\nnext line\n</poem>", "First line\n\nnext line"),
    ("unknown-tag-is-prose", "If n<m and m>0, <x> holds.", "If n<m and m>0, <x> holds."),
    ("br", "Line<br>next<br/>then<br />end", "Line next then end"),
    ("br-closing-typo", "one</br>two", "one two"),
    ("magic-words", "__NOTOC__Text __TOC__.\n__NOEDITSECTION__", "Text."),
    (
        "magic-words-localised",
        "__KEIN_INHALTSVERZEICHNIS__Text __БЕЗ_ОГЛАВЛЕНИЯ__ __目次非表示__.",
        "Text.",
    ),
    ("identifier-is-not-a-magic-word", "Its __init__ method.", "Its __init__ method."),
)

LINKS = (
    (
        "external-unclosed-stays-literal",
        "See [http://a.com the first site. Then [http://b.com Site B] and more.",
        "See [http://a.com the first site. Then Site B and more.",
    ),
    (
        "external-label-ends-with-its-line",
        "[http://a.com one\ntwo] three",
        "[http://a.com one\n\ntwo] three",
    ),
    ("link", "A [[Target]] here.", "A Target here."),
    ("link-label", "A [[Target page|label]] here.", "A label here."),
    ("link-trail", "Many [[cat]]s.", "Many cats."),
    ("pipe-trick", "In [[Paris, Texas (film)|]].", "In Paris, Texas."),
    ("leading-colon", "See [[:Category:X|y]].", "See y."),
    ("leading-colon-no-label", "See [[:Category:X]].", "See Category:X."),
    ("category", "Text.\n[[Category:Towns]]", "Text."),
    ("category-sort-key", "Text.\n[[Category:Towns|Alpha]]", "Text."),
    ("category-keeps-trail", "Text [[Category:Towns]]and more.", "Text and more."),
    ("interlanguage", "Text.\n[[de:Berlin]]\n[[pt-br:Berlim]]", "Text."),
    ("file", "Before [[File:A.jpg|thumb|A caption]] after.", "Before after."),
    (
        "file-caption-with-links",
        "X [[File:B.png|thumb|See [[Link|this]], [[a]]s and [http://e.org site]]] Y.",
        "X Y.",
    ),
    ("image", "X [[Image:B.png|left|{{lang|fr|[[Paris]]}}]] Y.", "X Y."),
    ("media", "X [[Media:Sound.ogg|listen]] Y.", "X Y."),
    ("external-label", "See [http://example.org the site].", "See the site."),
    ("external-bare", "See [http://example.org].", "See."),
    ("external-protocol-relative", "See [//example.org site] now.", "See site now."),
    ("external-label-with-template", "[https://x.org {{lang|fr|le site}}]", "le site"),
    (
        "external-label-with-link",
        "[http://x.org The [[University of California, Berkeley|UC Berkeley]] talk] (1962)",
        "The UC Berkeley talk (1962)",
    ),
    (
        "title-with-colon",
        "In [[CSI: Miami]] and [[Ice: The Movie|the film]].",
        "In CSI: Miami and the film.",
    ),
    ("interlanguage", "Berlin.[[de:Berlin]][[pt-br:Berlim]]", "Berlin."),
    ("file-under-local-alias", "X [[Bild:Tor.jpg|miniatur|Das [[Tor]]]] Y.", "X Y."),
    (
        "interwiki-file-keeps-label",
        '[[wikisource:File:A.pdf|"The Book"]] (thesis)',
        '"The Book" (thesis)',
    ),
)

LAYOUT = (
    ("plain", "Just text.", "Just text."),
    ("bold-italic", "'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
    # MediaWiki's apostrophes among quote runs: four quotes, odd bold/italic counts, {{'s}}.
    ("apostrophe-then-bold", "'''Stas''''s house", "Stas's house"),
    ("italic-then-possessive", "''Titanic'''s box office", "Titanic's box office"),
    ("elision-before-italic", "Le journal l'''Express'' est", "Le journal l'Express est"),
    ("possessive-template", "''Eagle''{{'s}} footpads", "Eagle's footpads"),
    ("glued-bold-kept-even", "'''Haus'''tür and ''x''", "Haustür and x"),
    ("heading", "Intro.\n== History ==\nOld.", "Intro.\n\nHistory\n\nOld."),
    ("heading-no-spaces", "Intro.\n==History==\nOld.", "Intro.\n\nHistory\n\nOld."),
    ("heading-with-link", "Intro.\n== [[Early life|Youth]] ==\nOld.", "Intro.\n\nYouth\n\nOld."),
    ("empty-section", "Intro.\n== See also ==\n== References ==\n{{reflist}}", "Intro."),
    ("empty-section-at-end", "Intro.\n== External links ==\n* [[Category:X]]", "Intro."),
    ("subsection-keeps-parent", "A.\n== H ==\n=== S ===\nText.", "A.\n\nH\n\nS\n\nText."),
    ("empty-subsection", "A.\n== H ==\nB.\n=== S ===\n== T ==\nC.", "A.\n\nH\n\nB.\n\nT\n\nC."),
    ("heading-emptied-by-markup", "A.\n== <span></span> ==\nB.", "A.\n\nB."),
    ("list", "* one\n** two\n# three\n#: four", "one\n\ntwo\n\nthree\n\nfour"),
    ("indent", "Text.\n: indented\n:: more", "Text.\n\nindented\n\nmore"),
    ("definition-list", "; Term : definition", "Term: definition"),
    ("horizontal-rule", "x\n----\ny", "x\n\ny"),
    ("blank-lines", "a\n\n\n\nb", "a\n\nb"),
    ("spaces", "a  \t b\u00a0\u00a0c", "a b c"),
    (
        "space-before-punctuation",
        'Fact <ref>x</ref>. More <ref/>), end ..."',
        'Fact. More), end..."',
    ),
    (
        "leading-punctuation-kept",
        "The [[.NET]] runtime batted .300 for the !Kung.",
        "The .NET runtime batted .300 for the !Kung.",
    ),
)

ALL_CASES = TEMPLATES + TABLES + TAGS_AND_COMMENTS + LINKS + LAYOUT


@_table(*ALL_CASES)
def test_to_text(wikitext, expected):
    assert to_text(wikitext) == expected


@pytest.mark.parametrize("wikitext", [c[1] for c in ALL_CASES], ids=[c[0] for c in ALL_CASES])
def test_no_markup_token_survives(wikitext):
    assert _leftovers(to_text(wikitext)) == []
    assert _leftovers(to_text(wikitext, Options(keep_headings=False))) == []


FRAGMENTS = [
    "{{", "}}", "[[", "]]", "{|", "|}", "|", "<ref>", "</ref>", "<ref name=a/>", "<!--", "-->",
    "'''", "''", "&lt;", "&#123;", "&#91;", "ref", "()", "(", ")", "<b>", "\n", "\n== H ==\n",
    "* ", "word ", "x", ":", "File:", "de:", "{{lang|fr|", "[http://e.org ", "]", "=", "__TOC__",
]  # fmt: skip


def test_no_markup_token_survives_random_markup():
    rng = random.Random(20240601)
    for _ in range(3000):
        wikitext = "".join(rng.choices(FRAGMENTS, k=rng.randint(1, 12)))
        assert _leftovers(to_text(wikitext)) == [], wikitext


def test_headings_can_be_dropped():
    text = "Intro.\n== History ==\nOld.\n=== Early ===\nOlder."
    assert to_text(text, Options(keep_headings=False)) == "Intro.\n\nOld.\n\nOlder."


@_table(
    ("file", "Text [[Datei:Bild.jpg|mini|Ein [[Bild]]]] mehr.", "Text mehr."),
    ("category", "Text mehr.\n[[Kategorie:Ort|Sortierung]]", "Text mehr."),
    ("english-name-still-hidden", "Text [[File:A.jpg|mini]] mehr.", "Text mehr."),
)
def test_localised_namespaces_are_hidden(wikitext, expected):
    options = Options(hidden_namespaces=frozenset({"file", "datei", "kategorie"}))
    assert to_text(wikitext, options) == expected


def test_unknown_namespace_is_an_ordinary_link():
    # Without the dump's own namespace names, Kategorie: is just a link prefix; a media file
    # is recognised by its extension whatever the prefix.
    assert to_text("A [[Kategorie:Stadt|mini]] B") == "A mini B"
    assert to_text("A [[Datei:Bild.jpg|mini]] B") == "A B"


@pytest.mark.parametrize(
    ("title", "wikitext", "expected"),
    [
        ("Mercury (disambiguation)", "Mercury may be:", True),
        ("Mercury", "'''Mercury''' may refer to:\n{{disambiguation}}", True),
        ("Mercury", "x {{Disambig|geo}}", True),
        ("Mercury", "x {{dab}}", True),
        ("John Smith", "x {{hndis|Smith, John}}", True),
        ("Merkur", "{{Begriffskl\u00e4rung}}", True),
        ("Mercury", "Mercury is a planet. {{disambiguation needed}}", False),
        ("Mercury", "Mercury is a planet.", False),
        ("Disambiguation", "In linguistics, disambiguation is ...", False),
    ],
    ids=[
        "title",
        "template",
        "template-args",
        "dab",
        "hndis",
        "german",
        "disambiguation-needed",
        "article",
        "article-about-it",
    ],
)
def test_is_disambiguation(title, wikitext, expected):
    assert is_disambiguation(title, wikitext) is expected


@pytest.fixture(scope="module")
def sample_texts() -> dict[str, str]:
    """Every article of the builtin sample dump, rendered."""
    reader = DumpReader(builtin_path("enwiki-sample"))
    return {page.title: to_text(page.text) for page in reader if classify(page) is None}


def test_builtin_sample_renders_without_leftovers(sample_texts):
    assert len(sample_texts) > 90
    found = {title: _leftovers(text) for title, text in sample_texts.items()}
    assert {title: tokens for title, tokens in found.items() if tokens} == {}


def test_builtin_sample_articles_read_as_prose(sample_texts):
    assert sample_texts["Anarchism"].startswith("Anarchism is")
    everything = "\n".join(sample_texts.values())
    for debris in ("thumb|", "Category:", "&nbsp;", "&amp;", "__NOTOC__", "<!--", "\n\n\n"):
        assert debris not in everything


@pytest.mark.parametrize(
    ("wikitext", "expected"),
    [
        ("About {{formatnum:12345}} people.", "About 12345 people."),
        ("About {{formatnum: 1.5 }} m.", "About 1.5 m."),
    ],
)
def test_formatnum_keeps_the_number(wikitext, expected):
    assert to_text(wikitext) == expected


@pytest.mark.parametrize(
    ("wikitext", "expected"),
    [
        ("Write [mailto:info@example.org to us].", "Write to us."),
        ("Join [irc://irc.libera.chat/wiki the channel].", "Join the channel."),
        ("See [//example.org/x the page].", "See the page."),
    ],
)
def test_external_links_of_every_scheme(wikitext, expected):
    assert to_text(wikitext) == expected


@pytest.mark.parametrize("token", ["[[", "{{", "{|", "''", "__", "&", "]]"])
@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain prose",
        "a [b] c",
        "a [[b",
        "x { y {{",
        "It's '' here",
        "\u2013 [ \u2013 [[",
        "_a_ __",
    ],
)
def test_contains_answers_as_in_does(token, text):
    assert _contains(text, token) == (token in text)
