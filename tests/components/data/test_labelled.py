import pandas as pd
import pytest

from components.core.errors import SourceError
from components.data.labelled import (
    load_labelled,
    read_fasttext,
    read_questions,
    read_rated,
    stratified_split,
)


def test_builtin_polarity_is_balanced_and_binary(tmp_path):
    data = load_labelled("builtin:polarity", tmp_path)
    assert data.label_names == ["neg", "pos"]
    assert data.class_counts() == {"neg": 100, "pos": 100}
    assert data.texts[0].startswith("simplistic , silly and tedious")
    assert data.dropped == {}


def test_builtin_movie_reviews_are_real_size_and_balanced(tmp_path):
    data = load_labelled("builtin:movie-reviews", tmp_path)
    assert data.label_names == ["neg", "pos"]
    counts = data.class_counts()
    assert sum(counts.values()) > 10_000  # a test split of 20% holds over 2,000
    assert 0.45 < counts["pos"] / sum(counts.values()) < 0.55
    # Snippets rated exactly 0 are neither; two snippets appear twice.
    assert data.dropped == {"missing_label": 37, "duplicate_text": 2}
    first = data.texts[data.texts.index("Effective but too tepid biopic")]
    assert data.label_names[data.labels[data.texts.index(first)]] == "neg"


def test_builtin_questions_are_trec_types_each_question_once(tmp_path):
    data = load_labelled("builtin:questions", tmp_path)
    assert data.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(data.texts) == len(set(data.texts)) == 5381  # a test split of 20% is 1,076
    assert data.dropped == {"duplicate_text": 10071}  # TREC's nested training sets, repeated
    assert data.class_counts()["ABBR"] == 86  # skewed: balanced class weights matter
    question = "What is the full form of .com ?"
    assert data.label_names[data.labels[data.texts.index(question)]] == "ABBR"


def test_question_lines_are_labelled_by_their_coarse_type(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_bytes(b"LOC:city Where is Ulm ?\nnotag What ?\nHUM:ind Who wrote \xe9l ?\n")
    frame = read_questions(path)
    assert frame["text"].tolist() == ["Where is Ulm ?", "What ?", "Who wrote \u00e9l ?"]
    assert frame["label"].isna().tolist() == [False, True, False]
    assert frame["label"].dropna().tolist() == ["LOC", "HUM"]


def test_repeated_texts_are_dropped_and_counted_the_first_label_kept(tmp_path):
    path = tmp_path / "x.csv"
    frame = pd.DataFrame(
        {"text": ["e", "a b", "c", " a b ", "d", "c", "e"], "label": [None, 1, 0, 0, 1, 0, 1]}
    )
    frame.to_csv(path, index=False)
    data = load_labelled(str(path), tmp_path)
    assert data.texts == ["a b", "c", "d", "e"]  # an unlabelled "e" does not hide a labelled one
    assert data.labels == [1, 0, 1, 1]
    assert data.dropped == {"missing_label": 1, "duplicate_text": 2}


def test_rated_lines_are_labelled_by_the_sign_of_their_rating(tmp_path):
    path = tmp_path / "rated.txt"
    path.write_text(
        "id\tsentiment\ttext\n1\t2.5\tA joy.\n2\t-0.2\tTepid.\n3\t0.0\tA film.\n"
        "4\tnot a number\tBroken.\n5\t1.0\tTabs\tinside.\n"
    )
    frame = read_rated(path)
    assert frame["text"].tolist() == ["A joy.", "Tepid.", "A film.", "Broken.", "Tabs\tinside."]
    assert frame["label"].isna().tolist() == [False, False, True, True, False]
    assert frame["label"].dropna().tolist() == ["pos", "neg", "pos"]


def test_fasttext_lines_without_a_label_have_none(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("__label__a one\nno label here\n__label__b two\n__label__a \n")
    frame = read_fasttext(path)
    assert frame["label"].isna().tolist() == [False, True, False, False]
    assert frame["label"].dropna().tolist() == ["a", "b", "a"]


def test_fasttext_lines_in_windows_1252_are_decoded(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("__label__a caf\u00e9 \u2014 ok\n".encode("cp1252") + b"__label__b fine\n")
    assert read_fasttext(path)["text"].tolist() == ["caf\u00e9 \u2014 ok", "fine"]


def _frame():
    return pd.DataFrame(
        {
            "review": ["good", "bad", "fine", "awful", "", None],
            "stars": ["pos", "neg", "pos", "neg", "pos", "neg"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_table_format_loads_with_its_columns(tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    frame = _frame()
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".tsv": lambda: frame.to_csv(path, sep="\t", index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    data = load_labelled(path.name, tmp_path, text_column="review", label_column="stars")
    assert data.texts == ["good", "bad", "fine", "awful"]
    assert data.labels == [1, 0, 1, 0]
    assert data.label_names == ["neg", "pos"]
    assert data.dropped == {"empty_text": 2}


def test_integer_labels(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": [2, 0, 2]}).to_csv(tmp_path / "d.csv")
    data = load_labelled("d.csv", tmp_path)
    assert data.label_names == ["0", "2"]
    assert data.labels == [1, 0, 1]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"body": ["x"], "label": [1]}), "no column 'text'; columns are body, label"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x", "x"]}), r"a single class \('x'\)"),
        (pd.DataFrame({"text": ["", None], "label": ["x", "y"]}), "no usable rows"),
    ],
    ids=["missing-column", "single-class", "empty"],
)
def test_bad_datasets_are_one_clear_error(tmp_path, frame, message):
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(SourceError, match=message):
        load_labelled("d.csv", tmp_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope.csv", "not found"),
        ("data.xlsx", "unsupported format"),
        ("builtin:imdb", "unknown labelled dataset"),
    ],
)
def test_bad_sources(tmp_path, source, message):
    with pytest.raises(SourceError, match=message):
        load_labelled(source, tmp_path)


def test_stratified_split_is_seeded_disjoint_and_proportional():
    labels = [0] * 60 + [1] * 40
    train, val, test = stratified_split(labels, 0.1, 0.2, seed=3)
    assert sorted(train + val + test) == list(range(100))
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert sum(labels[i] for i in test) == 8  # 40% of the test part, like the whole
    assert stratified_split(labels, 0.1, 0.2, seed=3) == (train, val, test)
    assert stratified_split(labels, 0.1, 0.2, seed=4) != (train, val, test)


def test_too_few_examples_per_class_is_a_clear_error():
    with pytest.raises(SourceError, match="cannot split 5 examples by class"):
        stratified_split([0, 0, 0, 0, 1], 0.2, 0.2, seed=0)


def _hf_rows():
    return {"sentence": ["good film", "bad film", "great", "awful"], "stars": [1, 0, 1, 0]}


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(_hf_rows())})
    splits.save_to_disk(str(tmp_path / "reviews"))
    data = load_labelled("hf:reviews", tmp_path, "sentence", "stars")
    assert data.texts == _hf_rows()["sentence"]
    assert data.label_names == ["0", "1"]
    assert data.labels == [1, 0, 1, 0]


def test_hf_data_folder_loaded_by_datasets(tmp_path):
    folder = tmp_path / "csvdata"
    folder.mkdir()
    pd.DataFrame(_hf_rows()).to_csv(folder / "train.csv", index=False)
    data = load_labelled("hf:csvdata", tmp_path, "sentence", "stars")
    assert data.class_counts() == {"0": 2, "1": 2}


def test_hf_missing_split_names_the_setting(tmp_path):
    import datasets

    datasets.Dataset.from_dict(_hf_rows()).save_to_disk(str(tmp_path / "one"))
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict(_hf_rows())})
    splits.save_to_disk(str(tmp_path / "many"))
    assert load_labelled("hf:one", tmp_path, "sentence", "stars", split="test").texts
    with pytest.raises(SourceError, match="no split 'test'.*finetune.dataset_split"):
        load_labelled("hf:many", tmp_path, "sentence", "stars", split="test")
