"""Predictions from an exported ONNX graph, its tokenizer and ``serving.json``.

A :class:`Classifier` answers texts with a label and a probability per class; a
:class:`LanguageModel` scores texts (tokens, loss, perplexity) or continues prompts (greedy,
or top-k sampling with a seed). Both are built from the files' bytes (:class:`ServedFiles`),
so whoever checked those bytes knows exactly what runs. Only onnxruntime, tokenizers and numpy
are imported: no MLflow, no pandas, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

LM_PARAMS = {"task": "score", "max_new_tokens": 32, "top_k": 0, "temperature": 1.0, "seed": 0}
# Texts classified per onnxruntime call: a bounded (B, T) batch, however many texts come.
BATCH = 256
# The files of a served model by role (ServedFiles' fields, and the names of a logged model's
# artifacts: pyfunc.py), and by the names a model cache folder gives them; in digest order.
ROLES = ("graph", "tokenizer", "serving")
FILE_NAMES = ("graph.onnx", "tokenizer.json", "serving.json")


@dataclass(frozen=True)
class ServedFiles:
    """The bytes a served model loads: its ONNX graph, ``tokenizer.json``, ``serving.json``."""

    graph: bytes
    tokenizer: bytes
    serving: bytes

    @classmethod
    def read(cls, graph: Path | str, tokenizer: Path | str, serving: Path | str) -> ServedFiles:
        """The three files' bytes, read once."""
        return cls(*(Path(path).read_bytes() for path in (graph, tokenizer, serving)))

    def named(self) -> Iterator[tuple[str, bytes]]:
        """Each file's name in a model cache folder and its bytes, in a fixed order."""
        yield from zip(FILE_NAMES, (self.graph, self.tokenizer, self.serving), strict=True)


def open_session(graph: bytes) -> ort.InferenceSession:
    """CUDA only where a GPU device exists (a GPU build lists it everywhere), else the CPU."""
    wanted = ["CPUExecutionProvider"]
    if Path("/dev/nvidiactl").exists() and "CUDAExecutionProvider" in ort.get_available_providers():
        wanted.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(graph, providers=wanted)


def load_tokenizer(data: bytes) -> Tokenizer:
    """The tokenizer of ``tokenizer.json``'s bytes, encoding text as training did."""
    loaded = Tokenizer.from_str(data.decode("utf-8"))
    loaded.encode_special_tokens = True  # as in training: text never makes control tokens
    return loaded


def encode(
    tokenizer: Tokenizer, texts: Sequence[str], max_length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (B, T) ids and mask of real tokens, each text cut to ``max_length``."""
    rows = [e.ids[:max_length] or [pad_id] for e in tokenizer.encode_batch_fast(list(texts))]
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


class _Served:
    """The session, tokenizer and settings of one served graph."""

    def __init__(self, files: ServedFiles) -> None:
        self.config: dict[str, Any] = json.loads(files.serving)
        self.tokenizer = load_tokenizer(files.tokenizer)
        self.session = open_session(files.graph)


class Classified(NamedTuple):
    """Probabilities of each class (one row per text, one column per class)."""

    classes: list[str]
    probabilities: np.ndarray  # (B, C) float32, as the graph computed them

    @property
    def labels(self) -> list[str]:
        """The most probable class of each text."""
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)]

    @property
    def probability(self) -> np.ndarray:
        """The probability of each text's label."""
        return self.probabilities.max(axis=1)

    def columns(self) -> dict[str, Any]:
        """``label``, ``probability`` and ``probability_<class>`` columns, in that order."""
        columns: dict[str, Any] = {"label": self.labels, "probability": self.probability}
        for i, name in enumerate(self.classes):
            columns[f"probability_{name}"] = self.probabilities[:, i]
        return columns


class Classifier(_Served):
    """Text -> label, probability, and a probability per class."""

    @property
    def classes(self) -> list[str]:
        """The labels, in the order of the graph's probability columns."""
        return list(self.config["labels"])

    def predict(self, texts: Sequence[str]) -> Classified:
        """Classify ``texts``, :data:`BATCH` at a time."""
        texts = [str(text) for text in texts]
        parts = [self._probabilities(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
        empty = np.zeros((0, len(self.classes)), dtype=np.float32)
        return Classified(self.classes, np.concatenate(parts) if parts else empty)

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        config = self.config
        ids, mask = encode(self.tokenizer, texts, config["max_length"], config["pad_id"])
        (probs,) = self.session.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})
        return probs


class LanguageModel(_Served):
    """Scores texts or continues prompts with the exported decoder."""

    def predict(
        self, texts: Sequence[str], params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """``task=score``: tokens, loss, perplexity per text; ``task=generate``: continuations.

        Raises:
            ValueError: ``task`` is neither.
        """
        settings = {**LM_PARAMS, **(params or {})}
        texts = [str(text) for text in texts]
        if settings["task"] == "generate":
            return [{"text": t, "generated": self.generate(t, settings)} for t in texts]
        if settings["task"] != "score":
            raise ValueError(f"task must be 'score' or 'generate', not {settings['task']!r}")
        return [self.score(text) for text in texts]

    def _logits(self, ids: list[int]) -> np.ndarray:
        window = np.asarray([ids[-self.config["block_size"] :]], dtype=np.int64)
        return self.session.run(None, {"input_ids": window})[0][0]  # (T, V)

    def score(self, text: str) -> dict[str, float]:
        """Mean next-token loss of ``text`` (its first ``block_size`` + 1 tokens)."""
        ids = self.tokenizer.encode(text).ids[: self.config["block_size"] + 1]
        if len(ids) < 2:
            return {"tokens": len(ids), "loss": float("nan"), "perplexity": float("nan")}
        logits = self._logits(ids[:-1])
        logits = logits - logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        loss = float(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean())
        return {"tokens": len(ids), "loss": loss, "perplexity": float(np.exp(loss))}

    def generate(self, prompt: str, settings: dict[str, Any]) -> str:
        """Greedy continuation, or top-k sampling when ``top_k`` > 0 (seeded)."""
        settings = {**LM_PARAMS, **settings}
        rng = np.random.default_rng(int(settings["seed"]))
        ids = self.tokenizer.encode(prompt).ids or [self.config["pad_id"]]
        stop = self.config["special_tokens"].get("<|endoftext|>")
        new: list[int] = []
        for _ in range(int(settings["max_new_tokens"])):
            logits = self._logits(ids + new)[-1] / max(float(settings["temperature"]), 1e-6)
            token = _choose(logits, int(settings["top_k"]), rng)
            if token == stop:
                break
            new.append(token)
        return self.tokenizer.decode(new)


def _choose(logits: np.ndarray, top_k: int, rng: np.random.Generator) -> int:
    if top_k <= 0:
        return int(logits.argmax())
    top_k = min(top_k, logits.size)  # at most the whole vocabulary
    top = np.argpartition(logits, -top_k)[-top_k:]
    weights = np.exp(logits[top] - logits[top].max())
    return int(rng.choice(top, p=weights / weights.sum()))
