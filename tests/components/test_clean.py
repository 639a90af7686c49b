import json

import pyarrow.parquet as pq
import pytest

from components.artifacts import build_meta, write_json
from components.clean import normalize, remove_stop_words, run
from components.cli import run_stage
from components.documents import Document, iter_documents, write_documents
from components.errors import ArtifactError
from components.stopwords import removable_stop_words
from tests.conftest import make_params

TOWN = (
    "{name} is a town on the bank of the river, with a market that has been held every week "
    "since the middle ages. It was founded by farmers who came to the valley with their "
    "families and built the first houses of stone.\n\n"
    "In the nineteenth century a railway reached {name}, and the town grew quickly along the "
    "river, with new streets, factories, a school and a hospital that serve the villages "
    "around it. Today about {n} people live there."
)
GERMAN = (
    "Die Stadt {name} liegt am Ufer des Flusses und hat einen Markt, der seit dem Mittelalter "
    "jede Woche abgehalten wird. Sie wurde von Bauern gegründet, die mit ihren Familien in das "
    "Tal kamen und die ersten Häuser aus Stein bauten. Im neunzehnten Jahrhundert erreichte "
    "eine Eisenbahn die Stadt, und sie wuchs schnell entlang des Flusses mit neuen Straßen."
)


def _ingested(workspace, docs):
    write_documents(workspace.ingest, docs)
    write_json(workspace.ingest / "meta.json", build_meta("ingest", {}, {}))


def _towns(n, start=0):
    return [
        Document(i, f"Town {i}", TOWN.format(name=f"Town{i}", n=i * 1000))
        for i in range(start, start + n)
    ]


def _clean(workspace, **clean):
    return run(make_params(clean={"workers": 1, **clean}), workspace)


def test_kept_rejected_and_counts_add_up(workspace):
    docs = [
        *_towns(4),
        Document(10, "Stub", "Too short to keep."),
        Document(11, "Copy", _towns(1)[0].text.upper()),
    ]
    _ingested(workspace, docs)
    result = _clean(workspace)
    assert [d.id for d in iter_documents(workspace.clean)] == [0, 1, 2, 3]
    rejected = pq.read_table(workspace.clean / "rejected").to_pylist()
    assert {(r["id"], r["reason"]) for r in rejected} == {
        (10, "too_few_words"),
        (11, "exact_duplicate"),
    }
    assert result.rejected == {"exact_duplicate": 1, "too_few_words": 1}
    assert result.documents_in == 6
    assert result.documents_out == 4
    assert result.words_in == result.words_out + sum(result.rejected_words.values())
    meta = json.loads((workspace.clean / "meta.json").read_text())
    assert meta["stage"] == "clean"
    assert meta["params"]["min_words"] == 50
    assert "ingest" in meta["inputs"]


def test_near_duplicate_keeps_the_first_copy(workspace):
    first = _towns(1)[0]
    near = Document(5, "Town 0 again", first.text.replace("every week", "each week"))
    _ingested(workspace, [first, *_towns(2, start=1), near])
    result = _clean(workspace)
    assert result.rejected == {"near_duplicate": 1}
    assert 0 in {d.id for d in iter_documents(workspace.clean)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("e\u0301t\u00e9", "\u00e9t\u00e9"),
        ("a  b\tc\u00a0d", "a b c d"),
        ("Line one.\n***\n\nLine two.", "Line one.\n\nLine two."),
        ("  padded  \n\n\n\nnext", "padded\n\nnext"),
    ],
    ids=["nfc", "spaces", "symbol-line", "blank-lines"],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_stop_word_removal_is_off_by_default_and_applies_to_kept_text(workspace):
    _ingested(workspace, _towns(3))
    _clean(workspace)
    assert " the " in next(iter_documents(workspace.clean)).text
    _clean(workspace, remove_stopwords=True)
    text = next(iter_documents(workspace.clean)).text
    assert " the " not in text
    assert "river" in text


def test_remove_stop_words_keeps_paragraphs():
    stops = removable_stop_words("en")
    assert remove_stop_words("The river and the town.\n\nIt is medieval.", stops) == (
        "river town.\n\nmedieval."
    )


def test_german_corpus_uses_stopwordsiso(workspace):
    docs = [Document(i, f"Stadt {i}", GERMAN.format(name=f"Ort{i}")) for i in range(3)]
    stripped = remove_stop_words(docs[0].text, removable_stop_words("de"))
    _ingested(workspace, [*docs, Document(9, "Ohne", stripped)])
    result = _clean(workspace, language="de", min_words=10, dedup={"near": False})
    assert result.documents_out == 3
    assert result.rejected == {"too_few_stop_words": 1}


def test_parallel_output_equals_serial_output(workspace):
    _ingested(workspace, _towns(300))
    _clean(workspace, workers=1)
    serial = list(iter_documents(workspace.clean))
    _clean(workspace, workers=2)
    assert list(iter_documents(workspace.clean)) == serial


def test_missing_ingest_output(workspace):
    with pytest.raises(ArtifactError, match="dvc repro ingest"):
        _clean(workspace)


def test_run_stage_writes_metrics(tmp_path):
    (tmp_path / "params.yaml").write_text("clean:\n  workers: 1\n")
    workspace_ingest = tmp_path / "data" / "ingest"
    write_documents(workspace_ingest, _towns(2))
    write_json(workspace_ingest / "meta.json", build_meta("ingest", {}, {}))
    metrics = run_stage("clean", tmp_path / "params.yaml")
    written = json.loads((tmp_path / "metrics" / "clean.json").read_text())
    assert written == metrics
    assert written["documents_out"] == 2
