import csv
import math

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.metrics import f1_score

from components.core.errors import SourceError
from components.data.tokenizer_file import load_tokenizer
from components.model.baselines import (
    Interval,
    bootstrap_intervals,
    macro_f1,
    majority_baseline,
    scores,
    tfidf_baseline,
)
from components.model.evaluate import (
    language_scores,
    run,
    target_bytes,
    unigram_log_probs,
    windows,
)
from components.model.finetune import run as finetune
from components.model.params import EvaluateParams
from tests.conftest import CPU_TRAINER, SMALL_LABELLED, TINY_MODEL, make_params


def _params(**evaluate):
    return make_params(
        model=TINY_MODEL,
        trainer=CPU_TRAINER,
        finetune={"dataset": SMALL_LABELLED, "max_epochs": 2, "lr": 2e-3},
        evaluate={"max_tokens": 5000, **evaluate},
    )


@pytest.fixture
def finetuned(pretrained_workspace):
    finetune(_params(), pretrained_workspace)
    return pretrained_workspace


def test_evaluate_reports_both_models_beside_their_baselines(finetuned):
    result = run(_params(), finetuned)
    lm = result.lm
    assert set(lm) == {"val", "val_unigram", "ood", "ood_unigram"}
    # Baselines are scored on the very same tokens as the model.
    assert lm["val"].tokens == lm["val_unigram"].tokens <= 5000
    assert lm["ood"].tokens == lm["ood_unigram"].tokens > 0
    assert result.lm_beats_unigram == (lm["val"].bits_per_byte < lm["val_unigram"].bits_per_byte)
    assert set(result.classifier) == {"model", "random_init", "majority", "tfidf_logreg"}
    for scores_ in result.classifier.values():
        for name in ("accuracy", "macro_f1"):
            interval = scores_.intervals[name]
            assert interval.low <= getattr(scores_, name) <= interval.high
    assert result.test_examples == 40
    assert result.tfidf_logreg_tuning.c in EvaluateParams().logreg_c
    assert set(result.tfidf_logreg_tuning.val_macro_f1) == {
        f"{c:g}" for c in EvaluateParams().logreg_c
    }
    majority = result.classifier["majority"]
    assert majority.accuracy == 0.5  # the polarity test split is balanced
    matrix = np.array(result.classifier["model"].confusion_matrix)
    assert matrix.sum() == 40
    assert matrix.trace() / 40 == pytest.approx(result.classifier["model"].accuracy)
    with (finetuned.plots_dir("evaluate") / "confusion.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 40
    assert {r["actual"] for r in rows} == {"neg", "pos"}
    predictions = pd.read_csv(finetuned.evaluate / "predictions.csv")
    assert (predictions["predicted"] == predictions["label"]).mean() == pytest.approx(
        result.classifier["model"].accuracy
    )


def test_missing_out_of_domain_text_is_a_clear_error(finetuned):
    with pytest.raises(SourceError, match="evaluate.ood_source not found"):
        run(_params(ood_source="nowhere.txt"), finetuned)


def test_unigram_probabilities_are_smoothed_and_normalised():
    log_probs = unigram_log_probs(np.array([0, 0, 1, 3]), vocab_size=5, smoothing=1.0)
    assert logsumexp(log_probs) == pytest.approx(0.0, abs=1e-12)
    assert np.exp(log_probs).tolist() == pytest.approx([3 / 9, 2 / 9, 1 / 9, 2 / 9, 1 / 9])


def test_language_scores_from_a_summed_nll():
    scores_ = language_scores(nll=10 * math.log(4), tokens=10, n_bytes=20)
    assert scores_.loss == pytest.approx(math.log(4), abs=1e-6)
    assert scores_.perplexity == pytest.approx(4.0)
    assert scores_.bits_per_byte == pytest.approx(1.0)  # 2 bits per token, 2 bytes per token


def test_windows_do_not_overlap_and_respect_the_token_budget():
    ids = np.arange(100)
    chunks = windows(ids, block_size=8, max_tokens=40)
    assert chunks.shape == (5, 9)
    assert chunks[1, 0] == chunks[0, -1]  # each window's first input is the last target before
    for too_short in (np.arange(5), np.arange(1), np.arange(0)):  # an empty text: no tokens
        with pytest.raises(SourceError, match="cannot fill one window"):
            windows(too_short, block_size=8, max_tokens=100)


def test_target_bytes_count_text_not_special_tokens(token_corpus):
    tokenizer = load_tokenizer(token_corpus / "tokenizer.json")
    text = "Café prices rose — again."
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    separator = tokenizer.token_to_id("<|endoftext|>")
    assert target_bytes(tokenizer, np.array([*ids, separator])) == len(text.encode("utf-8"))


def test_baselines_on_a_separable_split():
    train = pd.DataFrame(
        {
            "text": ["good great", "great fine", "bad awful", "awful poor"] * 5,
            "label": [1, 1, 0, 0] * 5,
        }
    )
    test = pd.DataFrame({"text": ["great good", "poor bad", "fine"], "label": [1, 0, 1]})
    names = ["neg", "pos"]
    tfidf, _ = tfidf_baseline(train, train, test, names, EvaluateParams())
    assert tfidf.accuracy == 1.0
    majority = majority_baseline(train.iloc[:-1], test, names, EvaluateParams())  # more pos
    assert majority.accuracy == pytest.approx(2 / 3, abs=1e-6)
    assert majority.per_class["neg"].recall == 0.0


def test_the_tfidf_baseline_takes_the_c_that_does_best_on_val():
    # "alpha" marks class 1 in training 2 times in 3 (it also appears in class 0): only a
    # lightly regularised model (large C) lets it outweigh the prior of the majority class 0.
    rows = [("alpha beta", 1), ("alpha gamma", 1), ("alpha delta", 0)] + [("delta", 0)] * 6
    train = pd.DataFrame(rows, columns=["text", "label"])
    val = pd.DataFrame({"text": ["alpha", "alpha beta", "delta"], "label": [1, 1, 0]})
    names = ["a", "b"]
    cfg = EvaluateParams(logreg_c=[0.01, 100.0])
    tfidf, tuning = tfidf_baseline(train, val, val, names, cfg)
    assert tuning.c == 100.0
    assert tuning.val_macro_f1["100"] > tuning.val_macro_f1["0.01"]
    assert tfidf.macro_f1 == pytest.approx(tuning.val_macro_f1["100"])  # test is val here
    single, only = tfidf_baseline(train, val, val, names, EvaluateParams(logreg_c=0.01))
    assert (only.c, single.macro_f1) == (0.01, pytest.approx(only.val_macro_f1["0.01"]))
    assert single.macro_f1 < tfidf.macro_f1


def test_scores_of_a_perfect_and_an_inverted_classifier():
    labels = np.array([0, 1, 1, 2])
    perfect = scores(labels, labels, ["a", "b", "c"], EvaluateParams())
    assert (perfect.accuracy, perfect.macro_f1) == (1.0, 1.0)
    assert perfect.intervals["accuracy"] == Interval(low=1.0, high=1.0)
    inverted = scores(labels, 2 - labels, ["a", "b", "c"], EvaluateParams())
    assert inverted.confusion_matrix == [[0, 0, 1], [0, 2, 0], [1, 0, 0]]
    assert inverted.per_class["b"].f1 == 1.0


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_the_vectorised_macro_f1_is_scikit_learns(classes):
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, size=(4, 300))
    predicted = np.where(rng.random((4, 300)) < 0.6, labels, rng.integers(0, classes, (4, 300)))
    predicted[0] = 0  # one resample predicts a single class: zero division for the others
    expected = [
        f1_score(y, p, labels=range(classes), average="macro", zero_division=0)
        for y, p in zip(labels, predicted, strict=True)
    ]
    assert macro_f1(classes)(labels, predicted) == pytest.approx(expected)


def test_intervals_cover_the_score_and_narrow_with_more_examples():
    rng = np.random.default_rng(7)

    def interval(n: int) -> Interval:
        labels = rng.integers(0, 2, n)
        predicted = np.where(rng.random(n) < 0.8, labels, 1 - labels)
        found = bootstrap_intervals(labels, predicted, 2, EvaluateParams())["accuracy"]
        assert found.low <= (labels == predicted).mean() <= found.high
        return found

    small, large = interval(100), interval(4000)
    assert large.high - large.low < (small.high - small.low) / 3  # about 1/sqrt(40)
    assert 0.76 < large.low < large.high < 0.84
