"""MLflow pyfunc models that serve the exported ONNX graphs with their tokenizer.

``OnnxClassifier`` answers a DataFrame with a ``text`` column with the label, its
probability and one probability column per class. ``OnnxLanguageModel`` scores texts
(tokens, loss, perplexity) or continues prompts (greedy, or top-k sampling with a seed),
picked by the ``task`` param. Both run on onnxruntime alone: serving needs no torch.

This module is shipped inside each logged model (``code_paths``), so it imports only what
serving needs and nothing of this package. Its name is part of every registered version (the
pickled model refers to ``components.serving``): moving it would leave those versions
unloadable by the pipeline's gate and by ``wikilm predict``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import onnxruntime as ort
import pandas as pd
from tokenizers import Tokenizer

LM_PARAMS = {"task": "score", "max_new_tokens": 32, "top_k": 0, "temperature": 1.0, "seed": 0}


def _session(path: str) -> ort.InferenceSession:
    """CUDA only where a GPU device exists (a GPU build lists it everywhere), else the CPU."""
    wanted = ["CPUExecutionProvider"]
    if Path("/dev/nvidiactl").exists() and "CUDAExecutionProvider" in ort.get_available_providers():
        wanted.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(path, providers=wanted)


def _tokenizer(path: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    tokenizer.encode_special_tokens = True  # as in training: text never makes control tokens
    return tokenizer


def _texts(model_input: Any) -> list[str]:
    """The ``text`` column of a DataFrame (or a list of strings), as strings."""
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"expected a 'text' column, got {list(model_input.columns)}")
        return model_input["text"].astype(str).tolist()
    return [str(text) for text in model_input]


def encode(
    tokenizer: Tokenizer, texts: list[str], max_length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (B, T) ids and mask of real tokens, each text cut to ``max_length``."""
    rows = [e.ids[:max_length] or [pad_id] for e in tokenizer.encode_batch_fast(texts)]
    width = max(len(row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


class _OnnxModel(mlflow.pyfunc.PythonModel):
    """Loads the graph, the tokenizer and ``serving.json`` from the model's artifacts."""

    def load_context(self, context: Any) -> None:
        """Open the ONNX session and the tokenizer."""
        artifacts = context.artifacts
        self.config = json.loads(Path(artifacts["serving"]).read_text(encoding="utf-8"))
        self.tokenizer = _tokenizer(artifacts["tokenizer"])
        self.session = _session(artifacts["graph"])


class OnnxClassifier(_OnnxModel):
    """Text -> label, probability, and a probability per class."""

    # A DataFrame hint is one MLflow takes without deriving a schema from it: the logged
    # signature stays the one inferred from the input example (see registry/packaging.py).
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Classify each row's ``text``."""
        config = self.config
        ids, mask = encode(
            self.tokenizer, _texts(model_input), config["max_length"], config["pad_id"]
        )
        (probs,) = self.session.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})
        labels = config["labels"]
        out = pd.DataFrame(
            {"label": [labels[i] for i in probs.argmax(axis=1)], "probability": probs.max(axis=1)}
        )
        for i, name in enumerate(labels):
            out[f"probability_{name}"] = probs[:, i]
        return out


class OnnxLanguageModel(_OnnxModel):
    """Scores texts or continues prompts with the exported decoder."""

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``task=score``: tokens, loss, perplexity per text; ``task=generate``: continuations."""
        settings = {**LM_PARAMS, **(params or {})}
        texts = _texts(model_input)
        if settings["task"] == "generate":
            return pd.DataFrame(
                {"text": texts, "generated": [self.generate(t, settings) for t in texts]}
            )
        if settings["task"] != "score":
            raise ValueError(f"task must be 'score' or 'generate', not {settings['task']!r}")
        return pd.DataFrame([self.score(text) for text in texts])

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

    def generate(self, prompt: str, settings: dict) -> str:
        """Greedy continuation, or top-k sampling when ``top_k`` > 0 (seeded)."""
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
