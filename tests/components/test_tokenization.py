import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from components.artifacts import build_meta, write_json
from components.documents import Document, write_documents
from components.errors import ArtifactError
from components.tokenbin import open_tokens
from components.tokenization import run, split_of
from tests.conftest import make_params

SENTENCES = [
    "The river runs through the old town and past the market square.",
    "A railway reached the valley in the nineteenth century.",
    "Farmers used the water of the river to grow grain and vegetables.",
    "The castle on the hill was built to guard the crossing.",
    "Today the town is known for its weekly market and its museum.",
    "Snow covers the mountains to the north for half of the year.",
    "Naïve café owners serve crème brûlée — and “quoted” text, 東京 too.",
    "Numbers like 1,234.5 and dates like 2024-01-01 appear in articles.",
]


@pytest.fixture
def clean_corpus(workspace):
    docs = [Document(i, f"Doc {i}", SENTENCES[i % 8] + f" Paragraph {i}.") for i in range(40)]
    write_documents(workspace.clean, docs)
    write_json(workspace.clean / "meta.json", build_meta("clean", {}, {}))
    return docs


def _params(**tokenize):
    return make_params(tokenize={"vocab_size": 320, "min_frequency": 1, **tokenize})


def _decode_split(workspace, split):
    tokenizer = Tokenizer.from_file(str(workspace.tokens / "tokenizer.json"))
    tokens = open_tokens(workspace.tokens / f"{split}.bin").tokens
    separator = tokenizer.token_to_id("<|endoftext|>")
    pieces, current = [], []
    for token in tokens.tolist():
        if token == separator:
            pieces.append(tokenizer.decode(current))
            current = []
        else:
            current.append(token)
    assert current == []  # every document is terminated by the separator
    return pieces


def test_stage_writes_tokenizer_splits_and_meta(workspace, clean_corpus):
    result = run(_params(), workspace)
    assert {p.name for p in workspace.tokens.iterdir()} == {
        "tokenizer.json",
        "train.bin",
        "val.bin",
        "meta.json",
    }
    assert result.documents_train + result.documents_val == len(clean_corpus)
    assert result.documents_val > 0
    assert result.bytes_per_token_val > 1
    meta = json.loads((workspace.tokens / "meta.json").read_text())
    assert meta["stage"] == "tokenize"
    assert meta["splits"]["val"]["tokens"] == result.tokens_val
    assert meta["dtype"] == "uint16"
    assert meta["special_tokens"]["<|endoftext|>"] == 0


def test_encoding_is_lossless_and_splits_are_disjoint(workspace, clean_corpus):
    run(_params(), workspace)
    train, val = _decode_split(workspace, "train"), _decode_split(workspace, "val")
    expected = {"train": [], "val": []}
    for doc in clean_corpus:
        expected[split_of(doc.id, 1337, 0.1)].append(doc.text)
    assert train == expected["train"]
    assert val == expected["val"]


def test_split_is_seeded_and_stable():
    ids = range(2000)
    first = [split_of(i, 1, 0.2) for i in ids]
    assert first == [split_of(i, 1, 0.2) for i in ids]
    assert first != [split_of(i, 2, 0.2) for i in ids]
    assert 0.15 < first.count("val") / len(first) < 0.25


def test_special_token_text_inside_a_document_is_not_a_separator(workspace):
    docs = [Document(i, f"D{i}", f"{SENTENCES[i % 8]} <|endoftext|> inside.") for i in range(30)]
    write_documents(workspace.clean, docs)
    write_json(workspace.clean / "meta.json", build_meta("clean", {}, {}))
    result = run(_params(), workspace)
    tokens = open_tokens(workspace.tokens / "train.bin").tokens
    assert int(np.count_nonzero(tokens == 0)) == result.documents_train


def test_empty_val_split_is_a_clear_error(workspace, clean_corpus):
    with pytest.raises(ArtifactError, match="val split is empty"):
        run(_params(val_fraction=1e-9), workspace)
    assert not workspace.tokens.exists()


def test_missing_clean_corpus_is_an_artifact_error(workspace):
    with pytest.raises(ArtifactError, match="clean"):
        run(_params(), workspace)
