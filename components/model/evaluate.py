"""Stage ``evaluate``: the language model and the classifier, each beside baselines.

Language model: loss, perplexity and bits per byte on the held-out Wikipedia split and on
out-of-domain text (gensim's Lee news corpus by default), next to a unigram model counted on
the training tokens and scored on the very same tokens. Classifier, on the test split that
``finetune`` saved: accuracy and macro-F1 with bootstrap intervals, per-class precision and
recall and the confusion matrix, next to the same classifier trained from random weights
(when ``finetune`` trained one), a majority-class baseline and TF-IDF + logistic regression
(scikit-learn) trained on the same train split, its C chosen on the val split as the
classifier's best epoch is.

Writes ``metrics/evaluate.json``, ``reports/evaluate/`` (predictions, meta.json) and
``plots/evaluate/confusion.csv`` (a DVC confusion-matrix plot).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from components.core.artifacts import (
    TOKENIZER_FILE,
    atomic_dir,
    build_meta,
    dir_digest,
    read_meta,
    write_csv,
    write_json,
)
from components.core.errors import SourceError
from components.core.paths import Paths
from components.core.schema import Report
from components.data.sources import builtin_path
from components.data.tokenbin import open_tokens
from components.data.tokenizer_file import load_tokenizer
from components.model.baselines import (
    ClassifierScores,
    Tuning,
    majority_baseline,
    scores,
    tfidf_baseline,
)
from components.model.classifier_module import encode_texts, predict_proba
from components.model.gpt import GPT
from components.model.model_io import RANDOM_INIT, load_classifier, load_gpt, pad_id, read_config
from components.model.params import EvaluateParams, ModelSections
from components.model.training import cuda_usable

log = logging.getLogger(__name__)

STAGE = "evaluate"


class LanguageScores(Report):
    """Cross-entropy of a model on one text, three ways, and how many tokens it covers."""

    loss: float  # nats per token
    perplexity: float
    bits_per_byte: float
    tokens: int


class EvaluateResult(Report):
    """What ``evaluate`` measured: written to ``metrics/evaluate.json``."""

    lm: dict[str, LanguageScores]  # val, val_unigram, ood, ood_unigram
    lm_beats_unigram: bool  # on held-out Wikipedia bits per byte
    classifier: dict[str, ClassifierScores]  # model, random_init, majority, tfidf_logreg
    tfidf_logreg_tuning: Tuning  # its C, chosen on the val split
    classifier_beats_baselines: bool  # macro-F1 above both baselines
    test_examples: int
    seconds: float


def language_scores(nll: float, tokens: int, n_bytes: int) -> LanguageScores:
    """Scores from a summed negative log-likelihood (nats) over ``tokens`` and ``n_bytes``."""
    loss = nll / max(tokens, 1)
    return LanguageScores(
        loss=round(loss, 6),
        perplexity=round(math.exp(min(loss, 80.0)), 4),
        bits_per_byte=round(nll / math.log(2) / max(n_bytes, 1), 6),
        tokens=tokens,
    )


def windows(ids: np.ndarray, block_size: int, max_tokens: int) -> np.ndarray:
    """Non-overlapping windows of block_size + 1 ids covering at most ``max_tokens`` targets."""
    count = min(max_tokens, len(ids) - 1) // block_size  # negative for no ids at all
    if count <= 0:
        raise SourceError(f"{len(ids)} tokens cannot fill one window of {block_size + 1}")
    starts = np.arange(count) * block_size
    return ids[starts[:, None] + np.arange(block_size + 1)].astype(np.int64)  # (N, T + 1)


@torch.no_grad()
def model_nll(model: GPT, batch_windows: np.ndarray, batch_size: int) -> float:
    """Summed next-token negative log-likelihood of the decoder over the windows."""
    device = next(model.parameters()).device
    total = 0.0
    for start in range(0, len(batch_windows), batch_size):
        chunk = torch.from_numpy(batch_windows[start : start + batch_size]).to(device)
        logits = model(chunk[:, :-1]).float()
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum"
        ).item()
    return total


def unigram_log_probs(train_ids: np.ndarray, vocab_size: int, smoothing: float) -> np.ndarray:
    """Add-k smoothed log-probabilities of each token id, counted on the training tokens."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype(np.float64) + smoothing
    return np.log(counts / counts.sum())


def target_bytes(tokenizer: Tokenizer, targets: np.ndarray) -> int:
    """UTF-8 bytes of text that the target tokens stand for (special tokens count zero)."""
    text = tokenizer.decode(targets.ravel().tolist(), skip_special_tokens=True)
    return len(text.encode("utf-8"))


def score_text(
    ids: np.ndarray,
    model: GPT,
    tokenizer: Tokenizer,
    log_probs: np.ndarray,
    cfg: EvaluateParams,
) -> tuple[LanguageScores, LanguageScores]:
    """The decoder's and the unigram baseline's scores on the same target tokens."""
    chunks = windows(ids, model.config.block_size, cfg.max_tokens)
    targets = chunks[:, 1:]
    n_bytes = target_bytes(tokenizer, targets)
    ours = language_scores(model_nll(model, chunks, cfg.batch_size), targets.size, n_bytes)
    unigram = language_scores(float(-log_probs[targets].sum()), targets.size, n_bytes)
    return ours, unigram


def ood_ids(source: str, root: Path, tokenizer: Tokenizer, separator: int) -> np.ndarray:
    """Token ids of the out-of-domain text: one document per line, separated as in training."""
    if source.startswith("builtin:"):
        path = builtin_path(source.removeprefix("builtin:"))
    else:
        path = root / Path(source).expanduser()
    if not path.is_file():
        raise SourceError(f"evaluate.ood_source not found: {path}")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    encodings = tokenizer.encode_batch_fast(lines, add_special_tokens=False)
    ids = [token for encoding in encodings for token in (*encoding.ids, separator)]
    return np.asarray(ids, dtype=np.int64)


def evaluate_lm(
    params: ModelSections, paths: Paths, device: torch.device
) -> dict[str, LanguageScores]:
    """LM scores on held-out Wikipedia and out-of-domain text, with unigram baselines."""
    cfg = params.evaluate
    meta = read_meta(paths.tokens, "tokenize")
    model = load_gpt(paths.pretrain).to(device)
    tokenizer = load_tokenizer(paths.pretrain / TOKENIZER_FILE)
    train = open_tokens(paths.tokens / "train.bin").tokens
    log_probs = unigram_log_probs(train, model.config.vocab_size, cfg.unigram_smoothing)
    val = np.asarray(open_tokens(paths.tokens / "val.bin").tokens)
    separator = meta["special_tokens"][meta["separator"]]
    ood = ood_ids(cfg.ood_source, paths.root, tokenizer, separator)
    scores_by_text = {}
    for name, ids in (("val", val), ("ood", ood)):
        ours, unigram = score_text(ids, model, tokenizer, log_probs, cfg)
        scores_by_text |= {name: ours, f"{name}_unigram": unigram}
    return scores_by_text


def read_splits(paths: Paths) -> dict[str, pd.DataFrame]:
    """The train, val and test splits that ``finetune`` saved (text, label index)."""
    return {
        name: pd.read_parquet(paths.finetune / "splits" / f"{name}.parquet")
        for name in ("train", "val", "test")
    }


def evaluate_classifier(
    params: ModelSections, paths: Paths, test: pd.DataFrame, device: torch.device
) -> tuple[dict[str, ClassifierScores], pd.DataFrame]:
    """The classifier's scores on ``test`` (and its random-init twin's), and its predictions."""
    read_meta(paths.finetune, "finetune")
    model, config = load_classifier(paths.finetune)
    names = config["labels"]
    tokenizer = load_tokenizer(paths.finetune / TOKENIZER_FILE)
    ids = encode_texts(tokenizer, test["text"].tolist(), config["max_length"])
    cfg = params.evaluate
    probs = predict_proba(model.to(device), ids, pad_id(config), cfg.batch_size)
    predicted = probs.argmax(axis=1)
    labels = test["label"].to_numpy()
    results = {"model": scores(labels, predicted, names, cfg)}
    if (paths.finetune / RANDOM_INIT).is_dir():  # the same classifier, not pretrained
        baseline, _ = load_classifier(paths.finetune / RANDOM_INIT)
        others = predict_proba(baseline.to(device), ids, pad_id(config), cfg.batch_size)
        results[RANDOM_INIT] = scores(labels, others.argmax(axis=1), names, cfg)
    predictions = test.assign(
        label=[names[i] for i in labels],
        predicted=[names[i] for i in predicted],
        confidence=probs.max(axis=1).round(6),
    )
    return results, predictions


def classifier_baselines(
    splits: dict[str, pd.DataFrame], names: list[str], cfg: EvaluateParams
) -> tuple[dict[str, ClassifierScores], Tuning]:
    """Majority class and TF-IDF + LR on the test split, trained on train (tuned on val)."""
    train, val, test = splits["train"], splits["val"], splits["test"]
    tfidf, tuning = tfidf_baseline(train, val, test, names, cfg)
    return {"majority": majority_baseline(train, test, names, cfg), "tfidf_logreg": tfidf}, tuning


def run(params: ModelSections, paths: Paths) -> EvaluateResult:
    """Evaluate ``models/pretrain`` and ``models/finetune``.

    Raises:
        ArtifactError: a model or the token files are missing or from another stage.
        SourceError: the out-of-domain text is missing or too short.
    """
    started = time.perf_counter()
    device = torch.device("cuda" if cuda_usable() else "cpu")
    lm = evaluate_lm(params, paths, device)
    splits = read_splits(paths)
    classifier, predictions = evaluate_classifier(params, paths, splits["test"], device)
    names = read_config(paths.finetune)["labels"]
    baselines, tuning = classifier_baselines(splits, names, params.evaluate)
    result = EvaluateResult(
        lm=lm,
        lm_beats_unigram=lm["val"].bits_per_byte < lm["val_unigram"].bits_per_byte,
        classifier=classifier | baselines,
        tfidf_logreg_tuning=tuning,
        classifier_beats_baselines=classifier["model"].macro_f1
        > max(baseline.macro_f1 for baseline in baselines.values()),
        test_examples=len(predictions),
        seconds=round(time.perf_counter() - started, 3),
    )
    _write_outputs(params, paths, predictions, result)
    _log_summary(result)
    return result


def _write_outputs(
    params: ModelSections, paths: Paths, predictions: pd.DataFrame, result: EvaluateResult
) -> None:
    with atomic_dir(paths.evaluate) as out:
        predictions.to_csv(out / "predictions.csv", index=False)
        write_json(
            out / "meta.json",
            build_meta(
                STAGE,
                params.evaluate.model_dump(mode="json"),
                {"pretrain": dir_digest(paths.pretrain), "finetune": dir_digest(paths.finetune)},
                result=result.model_dump(mode="json"),
            ),
        )
    pairs = predictions[["label", "predicted"]].rename(columns={"label": "actual"})
    write_csv(paths.plots_dir(STAGE) / "confusion.csv", pairs.to_dict("records"))


def _log_summary(result: EvaluateResult) -> None:
    lm, clf = result.lm, result.classifier
    log.info(
        "evaluate: LM %.3f bits/byte on Wikipedia val (unigram %.3f), %.3f out of domain "
        "(unigram %.3f)",
        lm["val"].bits_per_byte,
        lm["val_unigram"].bits_per_byte,
        lm["ood"].bits_per_byte,
        lm["ood_unigram"].bits_per_byte,
    )
    log.info(
        "evaluate: classifier macro-F1 %.3f (majority %.3f, TF-IDF + LR %.3f with C=%g chosen "
        "on val) on %d examples",
        clf["model"].macro_f1,
        clf["majority"].macro_f1,
        clf["tfidf_logreg"].macro_f1,
        result.tfidf_logreg_tuning.c,
        result.test_examples,
    )
