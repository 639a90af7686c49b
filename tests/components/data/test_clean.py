"""Stage ``clean``: normalisation, filters, dedup, outputs, metadata and metrics."""

import json
import random
import re
import string
import sys
import unicodedata
from itertools import islice

import pyarrow.parquet as pq
import pytest

from components.cli import run_stage_in_process
from components.core.artifacts import build_meta, dir_digest, write_json
from components.core.errors import ArtifactError, ConfigError
from components.core.resume import ShardProgress, work_folder
from components.data import ingest
from components.data.assess import assess_batch, normal_lines, normalize, remove_stop_words
from components.data.clean import CleanResult, run
from components.data.dedup import REASONS
from components.data.documents import Document, document_batch, shard_paths
from components.data.filters import TextView
from components.data.minhash import Permutations
from components.data.stopwords import GOPHER_STOP_WORDS, removable_stop_words
from tests.components.data.test_dedup import InMemoryIndex
from tests.conftest import make_params
from tests.corpora import iter_documents, write_documents
from tests.stages import kill_and_rerun, stage_params

GERMAN = (
    "Die Stadt liegt am Ufer des Flusses und hat einen Markt, der seit dem Mittelalter jede "
    "Woche abgehalten wird. Sie wurde von Bauern gegründet, die mit ihren Familien in das Tal "
    "kamen und die ersten Häuser aus Stein bauten. Im neunzehnten Jahrhundert erreichte eine "
    "Eisenbahn die Stadt, und sie wuchs schnell entlang des Flusses mit neuen Straßen."
)


def _lower_words(text):
    return re.findall(r"\w+", text.lower())


def _vocab(count, seed):
    """Distinct made-up words (none a Gopher stop word): articles built from them share none."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < count:
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 8)))
        if word not in GOPHER_STOP_WORDS:
            words[word] = None
    return list(words)


def _article(seed, lines=6):
    """Paragraphs ``The w w w w w and w w w w w.`` that pass every default quality rule."""
    words = iter(_vocab(lines * 10, seed))
    return "\n\n".join(
        f"The {' '.join(islice(words, 5))} and {' '.join(islice(words, 5))}." for _ in range(lines)
    )


def _near_copy(text):
    """``text`` with one word in its middle paragraph replaced."""
    paragraphs = text.split("\n\n")
    middle = paragraphs[len(paragraphs) // 2].split(" ")
    middle[3] = "changed"
    paragraphs[len(paragraphs) // 2] = " ".join(middle)
    return "\n\n".join(paragraphs)


def _ingested(paths, docs):
    write_documents(paths.ingest, docs)
    write_json(paths.ingest / "meta.json", build_meta("ingest", {}, {}))


def _clean(paths, **clean):
    return run(make_params(clean={"workers": 1, **clean}), paths)


def _rows(folder):
    """Every row of the Parquet shards in ``folder``, in order."""
    return [row for path in shard_paths(folder) for row in pq.read_table(path).to_pylist()]


def _words(text):
    return len(normalize(text).split())


MIXED = [
    Document(1, "Alpha", _article(1), {"revision_id": 11, "timestamp": "2024-01-01T00:00:00Z"}),
    Document(2, "Beta", _article(2, lines=10)),
    Document(3, "Stub", "Too short to keep."),
    Document(4, "Alpha again", "  " + _article(1).upper().replace(".", "!") + "\n"),
    Document(5, "Beta edited", _near_copy(_article(2, lines=10))),
    Document(6, "Years", _article(6) + "\n\n" + " ".join(str(1900 + i) for i in range(30))),
    Document(7, "Gamma", "\t" + _article(7).replace(" and ", "  and\u00a0")),
]
EXPECTED_REASONS = {
    3: "too_few_words",
    4: "exact_duplicate",
    5: "near_duplicate",
    6: "too_few_alpha_words",
}


def test_kept_and_rejected_documents(workspace):
    _ingested(workspace, MIXED)
    _clean(workspace)
    kept = list(iter_documents(workspace.clean))
    assert [d.id for d in kept] == [1, 2, 7]  # the first copies are the ones kept
    originals = {d.id: d for d in MIXED}
    assert [d.text for d in kept] == [normalize(originals[d.id].text) for d in kept]
    assert [d.title for d in kept] == ["Alpha", "Beta", "Gamma"]
    assert kept[0].metadata == {"revision_id": 11, "timestamp": "2024-01-01T00:00:00Z"}
    rejected = _rows(workspace.clean / "rejected")
    assert {r["id"]: r["reason"] for r in rejected} == EXPECTED_REASONS
    assert all(r["text"] == normalize(originals[r["id"]].text) for r in rejected)


def test_result_counts_documents_and_words_by_reason(workspace):
    _ingested(workspace, MIXED)
    result = _clean(workspace)
    words = {d.id: _words(d.text) for d in MIXED}
    assert result.documents_in == len(MIXED)
    assert result.documents_out == 3
    assert result.rejected == {reason: 1 for reason in EXPECTED_REASONS.values()}
    assert result.rejected_words == {reason: words[i] for i, reason in EXPECTED_REASONS.items()}
    assert result.words_out == words[1] + words[2] + words[7]
    assert result.words_in == sum(words.values())
    assert result.words_in == result.words_out + sum(result.rejected_words.values())
    assert result.documents_in == result.documents_out + sum(result.rejected.values())


def test_meta_records_stage_params_and_input_digest(workspace):
    _ingested(workspace, MIXED)
    params = make_params(clean={"workers": 1, "min_words": 40})
    result = run(params, workspace)
    meta = json.loads((workspace.clean / "meta.json").read_text())
    assert meta["stage"] == "clean"
    assert meta["format_version"] == 1
    assert meta["params"] == json.loads(json.dumps(params.clean.model_dump(mode="json")))
    assert meta["params"]["min_words"] == 40
    assert meta["inputs"] == {"ingest": dir_digest(workspace.ingest)}
    assert meta["documents_out"] == result.documents_out
    assert meta["rejected"] == result.rejected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("e\u0301te\u0301", "\u00e9t\u00e9"),
        ("a  b\tc\u00a0d   e", "a b c d e"),
        ("Line one.\n***\n\u2014 \u2014\n\nLine two.", "Line one.\n\nLine two."),
        ("  padded  \n\n\n\nnext", "padded\n\nnext"),
        ("first\r\nsecond", "first\n\nsecond"),
        ("Born in\n1990\n!!!", "Born in\n\n1990"),
    ],
    ids=["nfc", "spaces", "symbol-only-lines", "blank-lines", "crlf", "digits-are-words"],
)
def test_normalize(text, expected):
    assert normalize(text) == expected
    assert normalize(expected) == expected


@pytest.mark.parametrize(
    "text",
    ["One line.", "First.\n\nSecond.", "a  b\n\n\nc", "x\ny", " \u2014 \n\nWords.", "", "!!!"],
)
def test_normal_lines_are_the_normalised_texts_lines_and_paragraphs(text):
    normal, lines = normal_lines(text)
    assert normal == normalize(text)
    view = TextView(normal)
    assert lines == view.lines == view.paragraphs


def _reference_normalize(text):
    text = unicodedata.normalize("NFC", text)
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n\n".join(line for line in lines if re.search(r"\w", line))


def test_normalize_equals_its_definition_on_random_text():
    rng = random.Random(11)
    spaces = [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]
    alphabet = [*"ab é.—!", "\u0301", "\ud800", *spaces] + ["\n\n", " "] * 10
    tidy = 0
    for _ in range(4000):
        words = ["".join(rng.choices(alphabet, k=rng.randint(1, 4))) for _ in range(8)]
        text = "".join(rng.choice((" ", "\n\n", "")) + word for word in words)
        expected = _reference_normalize(text)
        assert normalize(text) == expected, repr(text)
        assert normalize(expected) is expected, repr(expected)  # as ingest writes it: as is
        tidy += expected != text
    assert tidy > 1000  # the random texts did need normalising


def test_remove_stop_words_keeps_paragraphs_that_still_have_words():
    stops = removable_stop_words("en")
    text = "The river and the town.\n\nIt is.\n\nIt is medieval."
    assert remove_stop_words(text, stops) == "river town.\n\nmedieval."


def test_stop_words_are_kept_by_default(workspace):
    _ingested(workspace, MIXED)
    _clean(workspace)
    assert make_params().clean.remove_stopwords is False
    first = next(iter_documents(workspace.clean))
    assert {"the", "and"} <= set(_lower_words(first.text))


def test_stop_word_removal_applies_to_kept_text_only(workspace):
    _ingested(workspace, MIXED)
    no_stop_words = {"min_stop_word_ratio": 0}  # what validate must expect then
    params = make_params(clean={"workers": 1, "remove_stopwords": True}, validate=no_stop_words)
    result = run(params, workspace)
    stops = removable_stop_words("en")
    originals = {d.id: d.text for d in MIXED}
    kept = list(iter_documents(workspace.clean))
    assert [d.id for d in kept] == [1, 2, 7]
    assert result.words_out == sum(len(d.text.split()) for d in kept)
    assert result.words_in == sum(_words(d.text) for d in MIXED)
    for doc in kept:
        assert doc.text == remove_stop_words(normalize(originals[doc.id]), stops)
        assert not stops.intersection(_lower_words(doc.text))
    rejected = {r["id"]: r["text"] for r in _rows(workspace.clean / "rejected")}
    assert set(rejected) == set(EXPECTED_REASONS)
    for doc_id, text in rejected.items():  # duplicates included: audited as they were
        assert text == normalize(originals[doc_id])


def test_german_corpus_uses_stopwordsiso(workspace):
    stripped = remove_stop_words(GERMAN, removable_stop_words("de"))
    assert {"und", "die"}.isdisjoint(_lower_words(stripped))
    _ingested(workspace, [Document(1, "Stadt", GERMAN), Document(2, "Ohne", stripped)])
    german = _clean(workspace, language="de", min_words=10)
    assert (german.documents_out, german.rejected) == (1, {"too_few_stop_words": 1})
    assert [d.id for d in iter_documents(workspace.clean)] == [1]
    english = _clean(workspace, min_words=10)  # Gopher's English list: no German passes
    assert (english.documents_out, english.rejected) == (0, {"too_few_stop_words": 2})


def test_two_workers_give_the_same_output_as_one(workspace):
    docs = [Document(i, f"Doc {i}", _article(100 + i, lines=5)) for i in range(300)]
    # Duplicates of documents in an earlier batch of 128, and a few rejects, spread out.
    docs[250] = Document(250, "Copy", docs[3].text.lower())
    docs[10] = Document(10, "Long", _article(110, lines=10))
    docs[200] = Document(200, "Near", _near_copy(docs[10].text))
    docs[140] = Document(140, "Stub", "Short.")
    _ingested(workspace, docs)
    serial = _clean(workspace, workers=1)
    serial_kept, serial_rejected = _rows(workspace.clean), _rows(workspace.clean / "rejected")
    parallel = _clean(workspace, workers=2)
    assert _rows(workspace.clean) == serial_kept
    assert _rows(workspace.clean / "rejected") == serial_rejected
    assert parallel.model_dump(exclude={"seconds"}) == serial.model_dump(exclude={"seconds"})
    assert {r["id"]: r["reason"] for r in serial_rejected} == {
        250: "exact_duplicate",
        200: "near_duplicate",
        140: "too_few_words",
    }


# With min_words 10,000 no document reaches the index; the setting fails all the same.
@pytest.mark.parametrize("min_words", [1, 10_000])
def test_a_threshold_the_index_cannot_serve_fails_with_no_output(workspace, min_words):
    _ingested(workspace, [Document(1, "A", _article(1))])
    bad_index = {"threshold": 0.95, "num_perm": 32}
    with pytest.raises(ConfigError, match=r"clean\.dedup\.threshold"):
        _clean(workspace, min_words=min_words, dedup=bad_index)
    assert not workspace.clean.exists()


def test_missing_ingest_output_is_an_artifact_error(workspace):
    with pytest.raises(ArtifactError, match="dvc repro ingest"):
        _clean(workspace)
    assert not workspace.clean.exists()


def test_run_stage_writes_metrics_where_params_say(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(
        "paths:\n"
        "  ingest: corpus/ingest\n"
        "  clean: corpus/clean\n"
        "  metrics: reports/metrics\n"
        "clean:\n"
        "  workers: 1\n"
    )
    ingest = tmp_path / "corpus" / "ingest"
    write_documents(ingest, MIXED)
    write_json(ingest / "meta.json", build_meta("ingest", {}, {}))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # paths are relative to params.yaml, not the cwd
    metrics = run_stage_in_process("clean", tmp_path / "params.yaml")
    written = json.loads((tmp_path / "reports" / "metrics" / "clean.json").read_text())
    assert written == metrics
    result = CleanResult.model_validate(written)
    assert (result.documents_in, result.documents_out) == (len(MIXED), 3)
    assert result.rejected == {reason: 1 for reason in EXPECTED_REASONS.values()}
    assert [d.id for d in iter_documents(tmp_path / "corpus" / "clean")] == [1, 2, 7]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "corpus",
        "elsewhere",
        "mlartifacts",  # the embedded MLflow store lives next to params.yaml too
        "mlflow.db",
        "params.yaml",
        "reports",
    ]


def _builtin_with_copies(workspace, shard_rows=10_000):
    """The builtin sample's articles, then exact, near and near-of-near copies of some."""
    ingest.run(make_params(ingest={"workers": 1}), workspace)
    docs = list(iter_documents(workspace.ingest))
    copies = []
    for k, doc in enumerate(docs[::4]):
        words = doc.text.split(" ")
        if k % 3 == 0:
            text = doc.text.upper()
        else:  # a word changed every 40 (k % 3 == 2: in a copy of an earlier copy)
            source = copies[-1].text.split(" ") if k % 3 == 2 and copies else words
            text = " ".join(w if i % 40 != k % 40 else "changed" for i, w in enumerate(source))
        copies.append(Document(10**9 + k, f"{doc.title} (copy)", text))
    write_documents(workspace.ingest, docs + copies, shard_rows=shard_rows)
    write_json(workspace.ingest / "meta.json", build_meta("ingest", {}, {}))
    return docs + copies


def _in_memory_reasons(docs, cfg):
    """Each document's reason under the rules and an in-memory MinHash LSH index."""
    index = InMemoryIndex(cfg.dedup)
    reasons = {}
    for doc, a in zip(
        docs, assess_batch(document_batch(docs), cfg, Permutations.of(cfg.dedup)), strict=True
    ):
        reasons[doc.id] = a.reason or REASONS.get(index.check(a.text_hash, a.signature))
    return reasons


def test_the_builtin_sample_keeps_what_an_in_memory_index_keeps(workspace):
    docs = _builtin_with_copies(workspace, shard_rows=30)
    result = _clean(workspace)
    expected = _in_memory_reasons(docs, make_params().clean)
    rejected = {r["id"]: r["reason"] for r in _rows(workspace.clean / "rejected")}
    kept = [d.id for d in iter_documents(workspace.clean)]
    assert rejected == {i: r for i, r in expected.items() if r}
    assert kept == [i for i, r in expected.items() if r is None]
    assert {"exact_duplicate", "near_duplicate"} <= set(result.rejected)
    assert not work_folder(workspace.clean).exists()  # scratch work is gone once done


def test_a_killed_clean_resumes_at_the_first_shard_not_done(workspace, tmp_path_factory):
    _builtin_with_copies(workspace, shard_rows=3)
    shards = len(shard_paths(workspace.ingest))
    params = stage_params(workspace.root, clean={"workers": 1})
    done = work_folder(workspace.clean) / "done"
    log = tmp_path_factory.mktemp("log") / "clean.log"
    finished, output = kill_and_rerun("clean", params, done, 3, workspace.clean, log)
    assert finished < shards
    assert f"clean: {finished} of {shards} shards were assessed by an earlier run" in output
    resumed = dir_digest(workspace.clean)
    _clean(workspace)  # uninterrupted, in this process
    assert dir_digest(workspace.clean) == resumed
    assert not work_folder(workspace.clean).exists()


def test_work_on_other_params_is_not_reused(workspace):
    _builtin_with_copies(workspace, shard_rows=30)
    folder = work_folder(workspace.clean)
    ShardProgress(folder, {"other": "origin"}).mark_done(0, {"candidates": 5, "sizes": {}})
    (folder / "dedup").mkdir()
    (folder / "dedup" / "signatures.u32").write_bytes(b"\0" * 512)
    first = _clean(workspace)
    baseline = dir_digest(workspace.clean)
    _clean(workspace)
    assert dir_digest(workspace.clean) == baseline
    assert first.documents_in == len(list(iter_documents(workspace.ingest)))
