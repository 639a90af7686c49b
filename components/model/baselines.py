"""Classification scores, and the baselines every classifier is reported beside.

The majority class (what accuracy means without a model) and TF-IDF + logistic regression
(what a classical model reaches on the same split), both from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support
from sklearn.pipeline import make_pipeline

from components.core.model_params import EvaluateParams
from components.core.schema import Report


class ClassScores(Report):
    """Precision, recall and F1 of one class, and how many test examples it has."""

    precision: float
    recall: float
    f1: float
    support: int


class ClassifierScores(Report):
    """Scores of one classifier on the test split."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]  # rows: actual class, columns: predicted class


def scores(labels: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> ClassifierScores:
    """Accuracy, macro-F1, per-class scores and confusion matrix of predicted class indices."""
    classes = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    return ClassifierScores(
        accuracy=round(float(accuracy_score(labels, predicted)), 6),
        macro_f1=round(float(np.mean(f1)), 6),
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


def majority_baseline(
    train: pd.DataFrame, test: pd.DataFrame, names: Sequence[str]
) -> ClassifierScores:
    """Always the most frequent training class."""
    model = DummyClassifier(strategy="most_frequent").fit(train[["text"]], train["label"])
    return scores(test["label"].to_numpy(), model.predict(test[["text"]]), names)


def tfidf_baseline(
    train: pd.DataFrame, test: pd.DataFrame, names: Sequence[str], cfg: EvaluateParams
) -> ClassifierScores:
    """TF-IDF word n-grams and logistic regression, trained on the train split."""
    model = make_pipeline(
        TfidfVectorizer(
            ngram_range=(1, cfg.tfidf_ngram_max),
            max_features=cfg.tfidf_max_features,
            sublinear_tf=True,
        ),
        LogisticRegression(C=cfg.logreg_c, max_iter=1000),
    )
    model.fit(train["text"], train["label"])
    return scores(test["label"].to_numpy(), model.predict(test["text"]), names)
