import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from components.core.artifacts import build_meta, dir_digest, file_digest, write_json
from components.core.errors import ArtifactError, WikilmError
from components.core.resume import work_folder
from components.data.documents import Document
from components.data.params import TokenizeParams
from components.data.tokenbin import open_tokens
from components.data.tokenization import (
    MB,
    TokenizeResult,
    in_sample,
    run,
    sample_fraction,
    split_of,
    train_tokenizer,
)
from components.data.tokenizer_file import load_tokenizer
from components.params import Params
from components.stages import STAGES
from tests.corpora import write_documents
from tests.stages import kill_and_rerun, stage_params

SEP = "<|endoftext|>"
SENTENCES = [
    "The river runs through the old town and past the market square.",
    "A railway reached the valley in the nineteenth century.",
    "Farmers used the water of the river to grow grain and vegetables.",
    "The castle on the hill was built to guard the crossing.",
    "Today the town is known for its weekly market and its museum.",
    "Snow covers the mountains to the north for half of the year.",
    "Naïve café owners serve crème brûlée — and “quoted” text, 東京 too.",
    "Numbers like 1,234.5 and dates like 2024-01-01 appear in articles.\n\nA second paragraph.",
]


def _docs(ids):
    # "№" puts a multi-byte character in every document, so bytes are not characters.
    return [Document(i, f"Doc {i}", f"{SENTENCES[i % 8]} Paragraph № {i}.") for i in ids]


def _write_clean(paths, docs):
    write_documents(paths.clean, docs, shard_rows=16)  # several shards
    write_json(paths.clean / "meta.json", build_meta("clean", {}, {}))


@pytest.fixture
def corpus(workspace):
    docs = _docs(range(40))
    _write_clean(workspace, docs)
    return docs


def _params(**tokenize):
    values = {"vocab_size": 320, "min_frequency": 1, "batch_docs": 8, **tokenize}
    return Params(tokenize=TokenizeParams(**values))


def _expected(docs, seed=1337, val_fraction=0.1):
    split = {"train": [], "val": []}
    for doc in docs:
        split[split_of(doc.id, seed, val_fraction)].append(doc.text)
    return split


def _decode_documents(paths, split):
    """The texts of a token file, cut at every separator."""
    tokenizer = Tokenizer.from_file(str(paths.tokens / "tokenizer.json"))
    separator = tokenizer.token_to_id(SEP)
    tokens = open_tokens(paths.tokens / f"{split}.bin").tokens
    assert tokens.size > 0
    assert tokens[-1] == separator  # every document is terminated
    ends = np.flatnonzero(tokens == separator)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(tokens[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]


def test_stage_writes_tokenizer_splits_and_meta(workspace, corpus):
    result = STAGES["tokenize"].load().run(_params(), workspace)
    assert isinstance(result, TokenizeResult)
    assert sorted(p.name for p in workspace.tokens.iterdir()) == [
        "meta.json",
        "tokenizer.json",
        "train.bin",
        "val.bin",
    ]
    expected = _expected(corpus)
    assert (result.documents_train, result.documents_val) == tuple(map(len, expected.values()))
    assert result.bytes_per_token_val > 1
    assert result.bytes_per_token_train > 1
    meta = json.loads((workspace.tokens / "meta.json").read_text())
    assert meta["stage"] == "tokenize"
    assert meta["params"]["vocab_size"] == 320
    assert meta["inputs"] == {"clean": dir_digest(workspace.clean)}
    assert meta["special_tokens"] == {SEP: 0, "<|pad|>": 1}
    assert meta["dtype"] == "uint16"
    assert meta["vocab_size"] == result.vocab_size <= 320
    assert meta["tokenizer_sha256"] == file_digest(workspace.tokens / "tokenizer.json")
    val_bytes = sum(len(t.encode()) for t in expected["val"])
    assert meta["splits"]["val"] == {
        "documents": result.documents_val,
        "tokens": result.tokens_val,
        "bytes": val_bytes,
    }
    assert result.bytes_per_token_val == round(val_bytes / result.tokens_val, 4)
    val_file = open_tokens(workspace.tokens / "val.bin")
    assert val_file.n_tokens == result.tokens_val + result.documents_val  # + separators
    assert val_file.vocab_size == result.vocab_size
    assert json.loads(json.dumps(result.model_dump(mode="json")))["tokens_train"] > 0


def test_batches_cut_by_bytes_write_the_same_token_files(workspace, corpus, monkeypatch):
    from components.data import token_shards

    run(_params(batch_docs=64), workspace)
    whole = {name: (workspace.tokens / name).read_bytes() for name in ("train.bin", "val.bin")}
    monkeypatch.setattr(token_shards, "_BATCH_BYTES", 200)  # two or three documents a batch
    run(_params(batch_docs=64), workspace)
    assert {name: (workspace.tokens / name).read_bytes() for name in whole} == whole


def test_decoding_reproduces_each_split_exactly(workspace, corpus):
    run(_params(), workspace)
    expected = _expected(corpus)
    assert _decode_documents(workspace, "train") == expected["train"]
    assert _decode_documents(workspace, "val") == expected["val"]
    # Decoded whole, with special tokens kept, the file is the documents joined by separators.
    tokenizer = Tokenizer.from_file(str(workspace.tokens / "tokenizer.json"))
    ids = open_tokens(workspace.tokens / "train.bin").tokens.tolist()
    whole = tokenizer.decode(ids, skip_special_tokens=False)
    assert whole == "".join(text + SEP for text in expected["train"])


def test_splits_are_disjoint_and_cover_the_corpus(workspace, corpus):
    run(_params(val_fraction=0.3), workspace)
    train, val = _decode_documents(workspace, "train"), _decode_documents(workspace, "val")
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(doc.text for doc in corpus)


def test_split_is_deterministic_for_a_seed_and_changes_with_another(workspace, corpus):
    run(_params(val_fraction=0.25, seed=1), workspace)
    first = {n: (workspace.tokens / n).read_bytes() for n in ("tokenizer.json", "val.bin")}
    run(_params(val_fraction=0.25, seed=1), workspace)
    assert first == {n: (workspace.tokens / n).read_bytes() for n in first}
    val_seed_1 = _decode_documents(workspace, "val")
    run(_params(val_fraction=0.25, seed=2), workspace)
    assert _decode_documents(workspace, "val") != val_seed_1


def test_a_document_keeps_its_split_when_the_corpus_grows(workspace):
    _write_clean(workspace, _docs(range(40)))
    run(_params(val_fraction=0.25), workspace)
    before = set(_decode_documents(workspace, "val"))
    _write_clean(workspace, _docs(range(100, 140)) + _docs(range(40)))
    run(_params(val_fraction=0.25), workspace)
    after = set(_decode_documents(workspace, "val"))
    assert before < after
    assert after - before == {t for t in after if int(t.rsplit(" ", 1)[1][:-1]) >= 100}


def test_split_of_is_seeded_and_near_the_fraction():
    ids = range(4000)
    first = [split_of(i, 1, 0.2) for i in ids]
    assert first == [split_of(i, 1, 0.2) for i in ids]
    assert first != [split_of(i, 2, 0.2) for i in ids]
    assert 0.17 < first.count("val") / len(first) < 0.23


def test_special_token_text_inside_a_document_is_not_a_separator(workspace):
    docs = [Document(i, f"D{i}", f"{SENTENCES[i % 8]} {SEP} inside {i}.") for i in range(30)]
    _write_clean(workspace, docs)
    result = run(_params(), workspace)
    tokens = open_tokens(workspace.tokens / "train.bin").tokens
    assert int(np.count_nonzero(tokens == 0)) == result.documents_train
    assert _decode_documents(workspace, "train") == _expected(docs)["train"]
    # Loaded for later stages, the tokenizer encodes the same way as the token files.
    tokenizer = load_tokenizer(workspace.tokens / "tokenizer.json")
    assert 0 not in tokenizer.encode(docs[0].text, add_special_tokens=False).ids


def test_rejected_documents_are_not_tokenized(workspace, corpus):
    write_documents(workspace.clean / "rejected", [Document(999, "R", "zebra quagga okapi")])
    run(_params(val_fraction=0.3), workspace)
    texts = _decode_documents(workspace, "train") + _decode_documents(workspace, "val")
    assert len(texts) == len(corpus)
    assert not any("zebra" in text for text in texts)


@pytest.mark.parametrize(
    ("val_fraction", "message"),
    [(1e-9, "val split is empty.*raise val_fraction"), (1 - 1e-9, "train split is empty.*lower")],
)
def test_an_empty_split_is_a_clear_error_and_keeps_the_old_output(
    workspace, corpus, val_fraction, message
):
    run(_params(), workspace)
    before = (workspace.tokens / "train.bin").read_bytes()
    with pytest.raises(WikilmError, match=message) as err:
        run(_params(val_fraction=val_fraction), workspace)
    assert "40 clean documents" in str(err.value)
    assert (workspace.tokens / "train.bin").read_bytes() == before


def test_missing_clean_corpus_is_an_artifact_error(workspace):
    with pytest.raises(ArtifactError, match=r"clean.*run the 'clean' stage first"):
        run(_params(), workspace)
    assert not workspace.tokens.exists()


def test_output_of_another_stage_is_rejected(workspace):
    write_documents(workspace.clean, _docs(range(10)))
    write_json(workspace.clean / "meta.json", build_meta("ingest", {}, {}))
    with pytest.raises(ArtifactError, match="expected 'clean'"):
        run(_params(), workspace)


def _saved(tokenizer, path):
    tokenizer.save(str(path))
    return path.read_bytes()


def _train_bytes(docs):
    return sum(len(text.encode()) for text in _expected(docs)["train"])


@pytest.mark.parametrize("extra_mb", [0, 1024])
def test_a_sample_no_smaller_than_the_split_trains_exactly_as_on_every_document(
    workspace, corpus, extra_mb
):
    train_texts = _expected(corpus)["train"]
    # 0: a sample of exactly the split's size, the boundary where every document must be kept.
    params = _params(train_sample_mb=_train_bytes(corpus) / MB + extra_mb)
    result = run(params, workspace)
    reference = train_tokenizer(train_texts, params.tokenize)
    tokenizer_json = (workspace.tokens / "tokenizer.json").read_bytes()
    assert tokenizer_json == _saved(reference, workspace.root / "reference.json")
    separator = reference.token_to_id(SEP)
    expected_ids = [i for t in train_texts for i in [*reference.encode(t).ids, separator]]
    assert open_tokens(workspace.tokens / "train.bin").tokens.tolist() == expected_ids
    assert (result.documents_sample, result.bytes_sample) == (
        len(train_texts),
        _train_bytes(corpus),
    )


def test_a_smaller_sample_trains_on_its_documents_and_still_encodes_the_whole_corpus(
    workspace, corpus
):
    result = run(_params(train_sample_mb=0.001), workspace)  # 1,000 of ~2,700 train bytes
    expected = _expected(corpus)
    fraction = sample_fraction(_train_bytes(corpus), _params(train_sample_mb=0.001).tokenize)
    sample = [
        d.text
        for d in corpus
        if split_of(d.id, 1337, 0.1) == "train" and in_sample(d.id, 1337, fraction)
    ]
    assert 0 < len(sample) < len(expected["train"])
    assert (result.documents_sample, result.bytes_sample) == (
        len(sample),
        sum(len(t.encode()) for t in sample),
    )
    assert 700 < result.bytes_sample < 1300  # about train_sample_mb
    meta = json.loads((workspace.tokens / "meta.json").read_text())
    assert meta["train_sample"] == {"documents": len(sample), "bytes": result.bytes_sample}
    # The tokenizer learned from the sample alone ...
    reference = train_tokenizer(sample, _params().tokenize)
    tokenizer_json = (workspace.tokens / "tokenizer.json").read_bytes()
    assert tokenizer_json == _saved(reference, workspace.root / "reference.json")
    # ... and still encodes every document of both splits losslessly.
    assert (result.documents_train, result.documents_val) == tuple(map(len, expected.values()))
    assert _decode_documents(workspace, "train") == expected["train"]
    assert _decode_documents(workspace, "val") == expected["val"]


def test_a_sampled_run_is_deterministic(workspace, corpus):
    names = ("tokenizer.json", "train.bin", "val.bin", "meta.json")
    run(_params(train_sample_mb=0.001), workspace)
    first = {n: (workspace.tokens / n).read_bytes() for n in names}
    run(_params(train_sample_mb=0.001), workspace)
    assert first == {n: (workspace.tokens / n).read_bytes() for n in names}
    run(_params(train_sample_mb=0.002), workspace)
    assert (workspace.tokens / "tokenizer.json").read_bytes() != first["tokenizer.json"]


def test_a_larger_sample_holds_every_document_of_a_smaller_one():
    ids = range(20_000)
    samples = [{i for i in ids if in_sample(i, 7, f)} for f in (0.01, 0.1, 0.3, 0.9, 1.0)]
    for smaller, larger in zip(samples, samples[1:], strict=False):
        assert smaller < larger
    for fraction, sample in zip((0.01, 0.1, 0.3, 0.9), samples, strict=False):
        assert abs(len(sample) / len(ids) - fraction) < 0.01
    assert samples[-1] == set(ids)
    assert samples[1] != {i for i in ids if in_sample(i, 8, 0.1)}  # seeded
    # Salted apart from the split: the sample takes its share of val ids too, not all or none.
    val = {i for i in ids if split_of(i, 7, 0.1) == "val"}
    assert 0.07 < len(val & samples[1]) / len(val) < 0.13


@pytest.mark.parametrize(
    ("train_bytes", "sample_mb", "fraction"),
    [(4 * MB, 1.0, 0.25), (MB, 1.0, 1.0), (MB // 2, 1.0, 1.0), (0, 1.0, 1.0)],
)
def test_sample_fraction_is_the_sample_size_over_the_split_size_at_most_one(
    train_bytes, sample_mb, fraction
):
    cfg = TokenizeParams(train_sample_mb=sample_mb)
    assert sample_fraction(train_bytes, cfg) == fraction


def test_an_empty_sample_is_a_clear_error_and_keeps_the_old_output(workspace, corpus):
    run(_params(), workspace)
    before = (workspace.tokens / "tokenizer.json").read_bytes()
    with pytest.raises(WikilmError, match="sample is empty.*raise train_sample_mb"):
        run(_params(train_sample_mb=1e-9), workspace)
    assert (workspace.tokens / "tokenizer.json").read_bytes() == before


def test_a_killed_tokenize_resumes_at_the_first_shard_not_encoded(workspace, tmp_path):
    docs = [
        Document(i, f"Doc {i}", " ".join(SENTENCES[(i + k) % 8] for k in range(40)))
        for i in range(600)
    ]
    write_documents(workspace.clean, docs, shard_rows=4)
    write_json(workspace.clean / "meta.json", build_meta("clean", {}, {}))
    settings = {"vocab_size": 400, "min_frequency": 1, "batch_docs": 8}
    params = stage_params(workspace.root, tokenize=settings)
    done = work_folder(workspace.tokens) / "done"
    log = tmp_path / "tokenize.log"
    encoded, output = kill_and_rerun("tokenize", params, done, 5, workspace.tokens, log)
    assert encoded < 150
    assert "the tokenizer was trained by an earlier run" in output
    resumed = dir_digest(workspace.tokens)
    run(_params(**settings), workspace)  # uninterrupted, in this process
    assert dir_digest(workspace.tokens) == resumed
    assert not work_folder(workspace.tokens).exists()
    assert _decode_documents(workspace, "val") == _expected(docs)["val"]
