"""Prediction with onnxruntime alone: batches, outputs, and what the module imports."""

import json
import subprocess
import sys

import numpy as np
import pytest

from components.core.paths import Paths, PathsParams
from components.registry.packaging import artifacts
from components.registry.store import CLASSIFIER, LM
from components.serving.predictor import BATCH, Classifier, LanguageModel, ServedFiles


@pytest.fixture(scope="module")
def export(exported_root):
    """The export folder of the session's tiny models."""
    return Paths.resolve(PathsParams(), exported_root).export


def test_the_module_imports_neither_mlflow_nor_pandas():
    code = (
        "import json, sys; import components.serving.predictor; "
        "print(json.dumps([m for m in ('mlflow', 'pandas', 'torch') if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_batches_answer_as_each_text_alone(export):
    classifier = Classifier(ServedFiles.read(**artifacts(export, CLASSIFIER)))
    # More texts than one batch holds, of many lengths: padding must not change an answer.
    texts = [" ".join(["good"] * (i % 40) + ["film", str(i)]) for i in range(BATCH + 20)]
    together = classifier.predict(texts)
    assert together.probabilities.shape == (len(texts), len(classifier.classes))
    alone = np.concatenate([classifier.predict([t]).probabilities for t in texts[:: BATCH // 4]])
    np.testing.assert_allclose(together.probabilities[:: BATCH // 4], alone, atol=1e-6)
    columns = together.columns()
    assert list(columns) == ["label", "probability", *(f"probability_{c}" for c in ["neg", "pos"])]
    assert classifier.predict([]).probabilities.shape == (0, 2)


def test_the_lm_refuses_an_unknown_task(export):
    lm = LanguageModel(ServedFiles.read(**artifacts(export, LM)))
    assert lm.predict(["The river"])[0]["tokens"] >= 2
    with pytest.raises(ValueError, match="task must be 'score' or 'generate', not 'translate'"):
        lm.predict(["The river"], {"task": "translate"})
