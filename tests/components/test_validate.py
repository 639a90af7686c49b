import json

import pytest

from components.artifacts import build_meta, write_json
from components.documents import Document, write_documents
from components.errors import ArtifactError, ValidationFailed
from components.stopwords import GOPHER_STOP_WORDS
from components.validate import document_stats, run
from tests.conftest import make_params

PROSE = (
    "The town of {name} lies on the bank of the river and has a market that is held every week. "
    "It was founded by farmers who came to the valley with their families and built the first "
    "houses of stone, and over the years the town grew to become the centre of the region, with "
    "a railway, a school and a hospital that serve the villages around it."
)


def _corpus(folder, stage, docs):
    write_documents(folder, docs)
    write_json(folder / "meta.json", build_meta(stage, {}, {}))


def _docs(n, text=PROSE):
    return [Document(i, f"Town {i}", text.format(name=f"Town {i}")) for i in range(n)]


@pytest.fixture
def corpora(workspace):
    """Write ingest and clean corpora; returns a function taking the clean documents."""

    def write(clean, ingest=None):
        _corpus(workspace.ingest, "ingest", ingest if ingest is not None else _docs(5))
        _corpus(workspace.clean, "clean", clean)

    return write


def test_clean_corpus_passes_and_writes_the_report(workspace, corpora):
    corpora(_docs(4))
    result = run(make_params(), workspace)
    assert result.success
    assert result.documents_ingest == 5
    assert result.documents_clean == 4
    assert result.markup_leftovers == 0
    assert (workspace.validate / "data_docs" / "index.html").is_file()
    results = json.loads((workspace.validate / "results.json").read_text())
    assert set(results) == {"ingest", "clean"}
    assert all(record["success"] for records in results.values() for record in records)
    assert json.loads((workspace.validate / "meta.json").read_text())["stage"] == "validate"


def test_results_are_deterministic(workspace, corpora):
    corpora(_docs(4))
    run(make_params(), workspace)
    first = (workspace.validate / "results.json").read_bytes()
    run(make_params(), workspace)
    assert (workspace.validate / "results.json").read_bytes() == first


@pytest.mark.parametrize(
    ("clean", "failed"),
    [
        (
            _docs(3) + [Document(9, "Bad", PROSE.format(name="{{Infobox town}}"))],
            "markup_leftovers = 0",
        ),
        (_docs(3) + [Document(9, "Dup", PROSE.format(name="Town 0"))], "duplicate rate"),
        (_docs(3) + [Document(2, "Same id", PROSE.format(name="X"))], "id unique"),
        (_docs(3) + [Document(9, "Short", "Too short.")], "n_chars between"),
        (
            _docs(3) + [Document(9, "Names", "Anna Berg Carl Dahl Emil Frank Gustav " * 10)],
            "stop_word_ratio between",
        ),
        (_docs(6), "documents out <= documents in"),
    ],
    ids=["markup", "duplicates", "duplicate-id", "length", "stop-words", "more-out-than-in"],
)
def test_each_unmet_expectation_fails_the_stage_after_writing_the_report(
    workspace, corpora, clean, failed
):
    corpora(clean)
    with pytest.raises(ValidationFailed) as caught:
        run(make_params(), workspace)
    message = str(caught.value)
    assert failed in message
    assert "index.html" in message
    assert "\n" not in message
    results = json.loads((workspace.validate / "results.json").read_text())
    unmet = [r["description"] for r in results["clean"] if not r["success"]]
    assert any(failed in description for description in unmet)


def test_bounds_come_from_params(workspace, corpora):
    corpora(_docs(3) + [Document(9, "Short", "The cat and the dog sat on the mat with a hat.")])
    with pytest.raises(ValidationFailed):
        run(make_params(), workspace)
    assert run(make_params(validate={"min_chars": 10}), workspace).success


def test_missing_upstream_is_an_artifact_error(workspace):
    with pytest.raises(ArtifactError, match="ingest"):
        run(make_params(), workspace)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The cat and the dog.", {"n_words": 5, "stop_word_ratio": 0.6, "markup_leftovers": 0}),
        ("{{x}} [[y]] <ref>z", {"markup_leftovers": 4}),
        ("", {"n_chars": 0, "n_words": 0, "stop_word_ratio": 0.0}),
    ],
)
def test_document_stats(text, expected):
    stats = document_stats(Document(1, "T", text), GOPHER_STOP_WORDS)
    assert {key: stats[key] for key in expected} == expected
