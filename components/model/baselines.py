"""Classification scores with bootstrap intervals, and the baselines beside every classifier.

The majority class (what accuracy means without a model) and TF-IDF + logistic regression
(what a classical model reaches on the same split, its regularisation chosen on the val
split), both from scikit-learn. Accuracy and
macro-F1 come with a percentile bootstrap interval over the test examples (SciPy's
``stats.bootstrap``), so that two classifiers' numbers can be told apart from noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from components.core.schema import Report
from components.model.params import EvaluateParams


class ClassScores(Report):
    """Precision, recall and F1 of one class, and how many test examples it has."""

    precision: float
    recall: float
    f1: float
    support: int


class Interval(Report):
    """A bootstrap confidence interval of a score."""

    low: float
    high: float


class ClassifierScores(Report):
    """Scores of one classifier on the test split, with their bootstrap intervals."""

    accuracy: float
    macro_f1: float
    intervals: dict[str, Interval]  # accuracy, macro_f1
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # rows: actual class, columns: predicted class


def scores(
    labels: np.ndarray, predicted: np.ndarray, names: Sequence[str], cfg: EvaluateParams
) -> ClassifierScores:
    """Accuracy, macro-F1 (with intervals), per-class scores and the confusion matrix."""
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return ClassifierScores(
        accuracy=round(float(accuracy_score(labels, predicted)), 6),
        macro_f1=round(float(np.mean(f1)), 6),
        intervals=bootstrap_intervals(labels, predicted, len(names), cfg),
        per_class={
            name: ClassScores(
                precision=round(float(precision[i]), 6),
                recall=round(float(recall[i]), 6),
                f1=round(float(f1[i]), 6),
                support=int(support[i]),
            )
            for i, name in enumerate(names)
        },
        confusion_matrix=confusion_matrix(labels, predicted, labels=classes).tolist(),
    )


def accuracy(labels: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
    """Share of correct predictions along ``axis`` (one value per bootstrap resample)."""
    return (labels == predicted).mean(axis=axis)


def macro_f1(classes: int) -> Callable[..., np.ndarray]:
    """A vectorised macro-F1 over ``classes``, along the last axis, for SciPy's bootstrap.

    A class with neither support nor predictions counts 0, as scikit-learn's
    ``zero_division=0`` has it.
    """

    def statistic(labels: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
        f1 = []
        for c in range(classes):
            hit, truth = predicted == c, labels == c
            tp = (hit & truth).sum(axis=axis)
            errors = (hit ^ truth).sum(axis=axis)  # false positives + false negatives
            f1.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + errors, 1), 0.0))
        return np.mean(f1, axis=0)

    return statistic


def bootstrap_intervals(
    labels: np.ndarray, predicted: np.ndarray, classes: int, cfg: EvaluateParams
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of accuracy and macro-F1, test examples resampled.

    The same seed for every classifier: their resamples are the same test examples.
    """
    from scipy.stats import bootstrap

    intervals = {}
    for name, statistic in (("accuracy", accuracy), ("macro_f1", macro_f1(classes))):
        found = bootstrap(
            (labels, predicted),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=cfg.bootstrap_resamples,
            confidence_level=cfg.confidence_level,
            method="percentile",
            random_state=cfg.bootstrap_seed,
        ).confidence_interval
        intervals[name] = Interval(low=round(found.low, 6), high=round(found.high, 6))
    return intervals


def majority_baseline(
    train: pd.DataFrame, test: pd.DataFrame, names: Sequence[str], cfg: EvaluateParams
) -> ClassifierScores:
    """Always the most frequent training class."""
    model = DummyClassifier(strategy="most_frequent").fit(train[["text"]], train["label"])
    return scores(test["label"].to_numpy(), model.predict(test[["text"]]), names, cfg)


class Tuning(Report):
    """The C that TF-IDF + LR kept, and the val split's macro-F1 of every C tried."""

    c: float
    val_macro_f1: dict[str, float]  # str(C) -> macro-F1 on the val split


def tfidf_vectorizer(cfg: EvaluateParams) -> TfidfVectorizer:
    """TF-IDF of word 1- to ``tfidf_ngram_max``-grams with sublinear counts."""
    return TfidfVectorizer(
        ngram_range=(1, cfg.tfidf_ngram_max),
        max_features=cfg.tfidf_max_features,
        sublinear_tf=True,
    )


def tfidf_baseline(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    names: Sequence[str],
    cfg: EvaluateParams,
) -> tuple[ClassifierScores, Tuning]:
    """TF-IDF + LR trained on the train split, its C the best of ``cfg.logreg_c`` on val.

    The classifier picks its best epoch on the same val split, so both are tuned alike;
    a tie goes to the smaller C (the stronger regularisation).
    """
    classes = list(range(len(names)))
    # The features do not depend on C: one vocabulary and one matrix per split for every C.
    vectorizer = tfidf_vectorizer(cfg).fit(train["text"])
    features = {
        name: vectorizer.transform(part["text"])
        for name, part in (("train", train), ("val", val), ("test", test))
    }
    fitted, on_val = {}, {}
    for c in sorted(cfg.logreg_c):
        fitted[c] = LogisticRegression(C=c, max_iter=1000).fit(features["train"], train["label"])
        predicted = fitted[c].predict(features["val"])
        on_val[c] = float(f1_score(val["label"], predicted, labels=classes, average="macro"))
    best = max(on_val, key=lambda c: (on_val[c], -c))
    tuning = Tuning(c=best, val_macro_f1={f"{c:g}": round(f1, 6) for c, f1 in on_val.items()})
    predicted = fitted[best].predict(features["test"])
    return scores(test["label"].to_numpy(), predicted, names, cfg), tuning
