"""MLflow pyfunc models over :mod:`components.serving.predictor`.

``OnnxClassifier`` answers a DataFrame with a ``text`` column with the label, its
probability and one probability column per class. ``OnnxLanguageModel`` scores texts
(tokens, loss, perplexity) or continues prompts, picked by the ``task`` param. They are
logged from code (:mod:`components.serving.classifier_model`,
:mod:`components.serving.lm_model`), never pickled; their state is the model's artifacts.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from components.serving.predictor import ROLES, Classifier, LanguageModel, ServedFiles


def texts_of(model_input: Any) -> list[str]:
    """The ``text`` column of a DataFrame (or a list of strings), as strings.

    Raises:
        ValueError: a DataFrame without a ``text`` column.
    """
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"expected a 'text' column, got {list(model_input.columns)}")
        return model_input["text"].astype(str).tolist()
    return [str(text) for text in model_input]


def _served(context: Any) -> ServedFiles:
    """The bytes of the model's artifacts, logged by role."""
    return ServedFiles.read(**{role: context.artifacts[role] for role in ROLES})


class OnnxClassifier(mlflow.pyfunc.PythonModel):
    """Text -> label, probability, and a probability per class."""

    def load_context(self, context: Any) -> None:
        """Open the ONNX session and the tokenizer."""
        self.classifier = Classifier(_served(context))

    # A DataFrame hint is one MLflow takes without deriving a schema from it: the logged
    # signature stays the one inferred from the input example (see registry/packaging.py).
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Classify each row's ``text``."""
        return pd.DataFrame(self.classifier.predict(texts_of(model_input)).columns())


class OnnxLanguageModel(mlflow.pyfunc.PythonModel):
    """Scores texts or continues prompts with the exported decoder."""

    def load_context(self, context: Any) -> None:
        """Open the ONNX session and the tokenizer."""
        self.lm = LanguageModel(_served(context))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``task=score``: tokens, loss, perplexity per text; ``task=generate``: continuations."""
        return pd.DataFrame(self.lm.predict(texts_of(model_input), params))
