import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.artifacts import build_meta, write_json
from components.core.errors import ArtifactError, ValidationFailed
from components.core.resume import ShardProgress, work_folder
from components.data import validate
from components.data.documents import Document
from components.data.stopwords import GOPHER_STOP_WORDS
from components.data.validate import (
    BYTES_PER_DOCUMENT,
    IDENTITY_DTYPES,
    STATS_DTYPES,
    corpus_stats,
    document_stats,
    identity_stats,
    run,
    text_hash,
    title_hash,
)
from components.data.wordarrays import TextArrays
from tests.conftest import make_params
from tests.corpora import write_documents
from tests.stages import kill_and_rerun, stage_params

PROSE = (
    "The town of {name} lies on the bank of the river and has a market that is held every week. "
    "It was founded by farmers who came to the valley with their families and built the first "
    "houses of stone, and over the years the town grew to become the centre of the region, with "
    "a railway, a school and a hospital that serve the villages around it."
)


def _corpus(folder, stage, docs, shard_rows=10_000):
    write_documents(folder, docs, shard_rows=shard_rows)
    write_json(folder / "meta.json", build_meta(stage, {}, {}))


def _docs(n, text=PROSE):
    return [Document(i, f"Town {i}", text.format(name=f"Town {i}")) for i in range(n)]


@pytest.fixture
def corpora(workspace):
    """Write ingest and clean corpora; returns a function taking the clean documents."""

    def write(clean, ingest=None):
        _corpus(workspace.ingest, "ingest", _docs(5) if ingest is None else ingest)
        _corpus(workspace.clean, "clean", clean)

    return write


def _results(workspace):
    return json.loads((workspace.validate / "results.json").read_text())


def test_clean_corpus_passes_and_writes_the_report(workspace, corpora):
    corpora(_docs(4))
    result = run(make_params(clean={"language": "en", "stop_words": "gopher"}), workspace)
    assert result.success
    assert (result.documents_ingest, result.documents_clean) == (5, 4)
    assert (result.markup_leftovers_total, result.duplicate_rate) == (0, 0.0)
    assert 0.05 < result.mean_stop_word_ratio < 0.8
    assert result.suites["ingest"].expectations == result.suites["ingest"].passed == 5
    assert result.suites["clean"].expectations == result.suites["clean"].passed == 9
    assert (workspace.validate / result.data_docs).is_file()
    docs = workspace.validate / "data_docs"
    assert "expectations/clean.html" in (docs / "index.html").read_text()
    assert "markup_leftovers max 0" in (docs / "expectations" / "clean.html").read_text()
    assert len(list(docs.glob("validations/*/*/*/*.html"))) == 2
    results = _results(workspace)
    assert {name: suite["success"] for name, suite in results.items()} == {
        "ingest": True,
        "clean": True,
    }
    markup = next(r for r in results["clean"]["expectations"] if r["column"] == "markup_leftovers")
    assert markup["type"] == "expect_column_values_to_be_between"
    assert markup["kwargs"] == {"min_value": 0, "max_value": 0}
    assert markup["unexpected_count"] == 0
    meta = json.loads((workspace.validate / "meta.json").read_text())
    assert meta["stage"] == "validate"
    assert meta["params"]["clean"] == {"language": "en", "stop_words": "gopher"}
    assert meta["params"]["validate"]["min_chars"] == 200
    assert set(meta["inputs"]) == {"ingest", "clean"}


def test_results_are_deterministic(workspace, corpora):
    # tokenize depends on results.json in dvc.yaml: a rerun on the same data must not change it.
    corpora(_docs(4))
    run(make_params(), workspace)
    first = (workspace.validate / "results.json").read_bytes()
    run(make_params(), workspace)
    assert (workspace.validate / "results.json").read_bytes() == first


@pytest.mark.parametrize(
    ("clean", "failed"),
    [
        (
            [*_docs(3), Document(9, "Bad", PROSE.format(name="{{Infobox town}}"))],
            "markup_leftovers max 0 (1 document, e.g. id 9)",
        ),
        (
            [*_docs(3), Document(9, "Dup", PROSE.format(name="Town 0"))],
            "distinct share of text_hash at least 1.0 (duplicate rate at most 0.0) (observed 0.75)",
        ),
        ([*_docs(3), Document(2, "Same id", PROSE.format(name="X"))], "id unique"),
        ([*_docs(3), Document(9, "Town 1", PROSE.format(name="X"))], "title unique"),
        ([*_docs(3), Document(9, "Short", "Too short.")], "n_chars between 200 and 2000000"),
        (
            [*_docs(3), Document(9, "Names", "Anna Berg Carl Dahl Emil Frank Gustav " * 10)],
            "stop_word_ratio between 0.05 and 0.8",
        ),
        (_docs(6), "documents out between 1 and documents in (5) (observed 6)"),
        ([], "documents out between 1"),
    ],
    ids=["markup", "dup-text", "dup-id", "dup-title", "length", "stop-words", "out>in", "empty"],
)
def test_each_unmet_expectation_fails_the_stage_after_writing_the_report(
    workspace, corpora, clean, failed
):
    corpora(clean)
    with pytest.raises(ValidationFailed) as caught:
        run(make_params(), workspace)
    message = str(caught.value)
    assert failed in message
    assert "in suite 'clean'" in message
    assert "suite 'ingest'" not in message
    assert message.endswith("see reports/validate/data_docs/index.html")
    assert "\n" not in message
    assert (workspace.validate / "data_docs" / "index.html").is_file()
    assert (workspace.validate / "meta.json").is_file()
    results = _results(workspace)
    assert results["ingest"]["success"]
    assert not results["clean"]["success"]
    unmet = [r["description"] for r in results["clean"]["expectations"] if not r["success"]]
    assert any(description in failed or failed in description for description in unmet)


def test_duplicate_ids_in_ingest_fail_the_ingest_suite(workspace, corpora):
    corpora(_docs(3), ingest=[*_docs(3), Document(1, "Other", PROSE.format(name="Other"))])
    with pytest.raises(ValidationFailed, match=r"1 of 5 expectations failed in suite 'ingest'"):
        run(make_params(), workspace)
    assert _results(workspace)["clean"]["success"]


def test_markup_and_short_text_are_allowed_in_ingest(workspace, corpora):
    corpora(_docs(2), ingest=[*_docs(2), Document(7, "Raw", "{{stub}} [[Town]]")])
    assert run(make_params(), workspace).success


def test_bounds_come_from_params(workspace, corpora):
    corpora([*_docs(3), Document(9, "Short", "The cat and the dog sat on the mat with a hat.")])
    with pytest.raises(ValidationFailed, match="n_chars between 200"):
        run(make_params(), workspace)
    result = run(make_params(validate={"min_chars": 10}), workspace)
    assert result.success
    assert "'min_chars': 10" in str(json.loads((workspace.validate / "meta.json").read_text()))


NAMES = "Anna Berg Carl Dahl Emil Frank Gustav " * 10  # no stop words: a ratio of 0


def test_a_few_outliers_within_validate_mostly_pass_and_are_reported(workspace, corpora, caplog):
    """A dump of millions has a few documents just outside a range: a share may be."""
    corpora([*_docs(99), Document(99, "Names", NAMES)], ingest=_docs(100))
    with pytest.raises(ValidationFailed, match="1 document, e.g. id 99"):
        run(make_params(validate={"mostly": 1}), workspace)
    result = run(make_params(validate={"mostly": 0.99}), workspace)
    assert result.success
    assert result.outliers == {"stop_word_ratio": 1}
    assert "1 documents by stop_word_ratio outside their range" in caplog.text
    with pytest.raises(ValidationFailed, match="for at least 99.50% of documents"):
        run(make_params(validate={"mostly": 0.995}), workspace)


def test_duplicate_rate_within_the_allowed_bound_passes(workspace, corpora):
    clean = [*_docs(9), Document(9, "Copy", PROSE.format(name="Town 0"))]
    corpora(clean, ingest=_docs(10))
    result = run(make_params(validate={"max_duplicate_rate": 0.1}), workspace)
    assert result.duplicate_rate == 0.1


@pytest.mark.parametrize("missing", ["ingest", "clean"])
def test_missing_upstream_is_an_artifact_error_and_writes_nothing(workspace, corpora, missing):
    corpora(_docs(2))
    (getattr(workspace, missing) / "meta.json").unlink()
    with pytest.raises(ArtifactError, match=f"run the '{missing}' stage first"):
        run(make_params(), workspace)
    assert not workspace.validate.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The cat and the dog.",
            {"n_chars": 20, "n_words": 5, "stop_word_ratio": 0.6, "markup_leftovers": 0},
        ),
        ("{{x}} [[y]] <ref>z {| t", {"markup_leftovers": 5, "n_words": 5}),
        ("", {"n_chars": 0, "n_words": 0, "stop_word_ratio": 0.0, "markup_leftovers": 0}),
        ("Hello, WORLD!", {"n_words": 2, "text_hash": text_hash(TextArrays("hello world"))}),
    ],
    ids=["prose", "markup", "empty", "hash-ignores-case-and-punctuation"],
)
def test_document_stats(text, expected):
    stats = document_stats(Document(1, "T", text), GOPHER_STOP_WORDS)
    assert {key: stats[key] for key in expected} == expected
    assert (stats["id"], stats["title_hash"]) == (1, title_hash("T"))


def test_hashes_are_signed_64_bit_integers_from_the_digests():
    digest = TextArrays("hello world").digest()
    unsigned = np.array([int(digest[:16], 16)], dtype=np.uint64)
    assert text_hash(TextArrays("hello world")) == unsigned.view(np.int64)[0]
    hashes = {title_hash(f"Town {i}") for i in range(1000)}
    assert len(hashes) == 1000
    assert all(-(2**63) <= h < 2**63 for h in hashes)
    assert any(h < 0 for h in hashes)  # the whole signed range is used
    assert title_hash(None) is None
    assert title_hash("") != title_hash(" ")


def test_a_missing_title_fails_title_present(workspace, corpora):
    corpora([*_docs(3), Document(9, None, PROSE.format(name="Nameless"))])
    with pytest.raises(ValidationFailed, match=r"title present \(1 document, e\.g\. id 9\)"):
        run(make_params(), workspace)


def test_a_stop_word_ratio_equal_to_a_bound_passes(workspace, corpora):
    # 4 of 5 words are stop words: exactly max_stop_word_ratio, 0.8, which float32 rounds up.
    text = "The dog of the and. " * 10
    doc = Document(9, "Bound", text)
    assert document_stats(doc, GOPHER_STOP_WORDS)["stop_word_ratio"] == 0.8
    corpora([*_docs(3), doc])
    assert run(make_params(validate={"min_chars": 10}), workspace).success


def test_corpus_stats_reads_every_shard(tmp_path):
    _corpus(tmp_path, "clean", _docs(5), shard_rows=2)
    stats = corpus_stats(tmp_path, GOPHER_STOP_WORDS)
    assert stats["id"].tolist() == [0, 1, 2, 3, 4]
    assert "text" not in stats.columns
    assert stats["text_hash"].nunique() == 5


def test_identity_stats_equal_the_identity_columns_of_the_full_statistics(tmp_path):
    unicode = Document(7, None, "Ünïcode, ǅ and 😀 text. " * 20)  # astral: 2 UTF-16 units
    docs = [*_docs(5), unicode, Document(8, "Empty", "")]
    _corpus(tmp_path, "ingest", docs, shard_rows=2)
    identities = identity_stats(tmp_path)
    assert identities.dtypes.astype(str).to_dict() == IDENTITY_DTYPES
    assert identities.equals(corpus_stats(tmp_path, GOPHER_STOP_WORDS)[list(IDENTITY_DTYPES)])
    assert identities["n_chars"].tolist()[5:] == [len(unicode.text), 0]
    assert identities["title_hash"].isna().tolist() == [False] * 5 + [True, False]


def test_a_missing_text_counts_as_empty_in_the_identity_table(tmp_path):
    table = pa.table({"id": [1, 2], "title": ["A", "B"], "text": ["Some text.", None]})
    pq.write_table(table, tmp_path / "part-00000.parquet")
    assert identity_stats(tmp_path)["n_chars"].tolist() == [10, 0]


@pytest.mark.parametrize("docs", [0, 1, 3000])
def test_a_statistics_table_costs_the_stated_bytes_per_document(tmp_path, docs):
    long_titles = [Document(i, "A long title " * 20 + str(i), PROSE) for i in range(docs)]
    _corpus(tmp_path, "clean", long_titles, shard_rows=1000)
    stats = corpus_stats(tmp_path, GOPHER_STOP_WORDS)
    assert stats.dtypes.astype(str).to_dict() == STATS_DTYPES
    usage = stats.memory_usage(deep=True)
    assert usage.drop("Index").sum() == BYTES_PER_DOCUMENT * docs
    assert usage["Index"] <= 132  # a RangeIndex, whatever the number of rows
    assert f"{BYTES_PER_DOCUMENT} bytes per document" in validate.__doc__


def test_parallel_statistics_equal_serial_ones(workspace):
    from components.data.stopwords import GOPHER_STOP_WORDS
    from components.data.validate import corpus_stats

    docs = [
        Document(i, f"T{i}", f"The text of the document number {i} and more.") for i in range(3000)
    ]
    write_documents(workspace.clean, docs)
    serial = corpus_stats(workspace.clean, GOPHER_STOP_WORDS, workers=1)
    parallel = corpus_stats(workspace.clean, GOPHER_STOP_WORDS, workers=2)
    assert len(serial) == 3000
    assert serial.equals(parallel)


def test_a_killed_validate_measures_only_the_shards_not_done(workspace, tmp_path):
    _corpus(workspace.ingest, "ingest", _docs(900), shard_rows=3)
    _corpus(workspace.clean, "clean", _docs(900), shard_rows=3)
    params = stage_params(workspace.root, validate={"workers": 1})
    done = work_folder(workspace.validate) / "clean" / "done"
    log = tmp_path / "validate.log"
    measured, output = kill_and_rerun("validate", params, done, 10, workspace.validate, log)
    assert measured < 300
    assert "validate: 300 of 300 shards of ingest were measured by an earlier run" in output
    assert f"validate: {measured} of 300 shards of clean were measured" in output
    resumed = _results(workspace), (workspace.validate / "meta.json").read_text()
    tables = {
        c: validate.corpus_stats(workspace.output(c), GOPHER_STOP_WORDS)
        for c in ("ingest", "clean")
    }
    run(make_params(validate={"workers": 1}), workspace)  # uninterrupted, in this process
    assert (_results(workspace), (workspace.validate / "meta.json").read_text()) == resumed
    assert not work_folder(workspace.validate).exists()
    # Tables read back from the saved shards have the dtypes (and bytes) of measured ones.
    work = ShardProgress(tmp_path / "work", {"test": 1})
    saved = validate.corpus_stats(workspace.clean, GOPHER_STOP_WORDS, work=work)
    again = validate.corpus_stats(workspace.clean, GOPHER_STOP_WORDS, work=work)
    assert saved.dtypes.to_dict() == again.dtypes.to_dict() == tables["clean"].dtypes.to_dict()
    assert again.equals(tables["clean"])
