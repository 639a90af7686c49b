"""Log the exported graphs as MLflow pyfunc models (see :mod:`components.serving`).

Each model carries its ONNX graph, ``tokenizer.json`` and ``serving.json`` as artifacts, a
signature and an input example, and pinned serving requirements, so ``mlflow models serve``
and ``mlflow.pyfunc.load_model`` work anywhere without this repository.
"""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pandas as pd

from components import serving
from components.core.artifacts import SERVING_FILE, TOKENIZER_FILE
from components.registry.store import CLASSIFIER, LM

GRAPHS = {CLASSIFIER: "classifier.onnx", LM: "lm.onnx"}
EXAMPLE = pd.DataFrame({"text": ["A gripping, beautifully acted film.", "Dull and far too long."]})
SERVING_PACKAGES = ("mlflow", "onnxruntime", "tokenizers", "pandas", "numpy")


def artifacts(export_dir: Path, model: str, graph: str | None = None) -> dict[str, str]:
    """The files a served model loads, by the names :mod:`components.serving` expects.

    ``graph``: the ONNX file to serve, if not the model's fp32 graph (``GRAPHS``).
    """
    return {
        "graph": str(export_dir / (graph or GRAPHS[model])),
        "tokenizer": str(export_dir / TOKENIZER_FILE),
        "serving": str(export_dir / SERVING_FILE),
    }


def requirements() -> list[str]:
    """Serving needs onnxruntime and tokenizers, not torch: pinned to what was verified."""
    pinned = []
    for package in SERVING_PACKAGES:
        try:
            pinned.append(f"{package}=={version(package)}")
        except PackageNotFoundError:  # onnxruntime may be installed as onnxruntime-gpu
            pinned.append(f"{package}-gpu=={version(package + '-gpu')}")
    return pinned


class Logged(NamedTuple):
    """A logged model: its ``models:/`` URI and its id (a registry server asks for both)."""

    uri: str
    model_id: str


def log_model(export_dir: Path, model: str, graph: str | None = None) -> Logged:
    """Log one pyfunc model into the active MLflow run.

    ``graph``: the ONNX file it serves, if not the model's fp32 graph (see :func:`artifacts`).
    """
    import mlflow
    from mlflow.models import infer_signature

    kind = serving.OnnxClassifier if model == CLASSIFIER else serving.OnnxLanguageModel
    files = artifacts(export_dir, model, graph)
    probe = kind()  # a loaded instance computes the example output; a fresh one is logged
    probe.load_context(SimpleNamespace(artifacts=files))
    params = None if model == CLASSIFIER else serving.LM_PARAMS
    output = probe.predict(None, EXAMPLE, params)
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: token counts never
        # are missing.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(EXAMPLE, output, params=params)
    # MLflow cautions against pickled models from untrusted sources; these are our own,
    # and their code travels with them (code_paths), so the caution is noise here.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    info = mlflow.pyfunc.log_model(
        name=model,
        python_model=kind(),
        artifacts=files,
        code_paths=[str(Path(serving.__file__).parent)],
        signature=signature,
        input_example=EXAMPLE,
        pip_requirements=requirements(),
    )
    return Logged(info.model_uri, info.model_id)
