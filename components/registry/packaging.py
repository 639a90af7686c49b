"""Log the exported graphs as MLflow pyfunc models (see :mod:`components.serving`).

Each model carries its ONNX graph, ``tokenizer.json`` and ``serving.json`` as artifacts, a
signature and an input example, and pinned serving requirements, so ``mlflow models serve``
and ``mlflow.pyfunc.load_model`` work anywhere without this repository. Models are logged
from code (a file that calls ``mlflow.models.set_model``) with the serving package as their
code: nothing is pickled. The digest of the three served files (:func:`serving_digest`) is
what ``wikilm predict`` checks before it loads them (:mod:`components.registry.champion`).

MLflow and pandas are imported only to log: the digest is computed without them.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import components
from components.core.artifacts import SERVING_FILE, TOKENIZER_FILE
from components.registry.store import CLASSIFIER, LM
from components.serving.predictor import LM_PARAMS, ROLES, ServedFiles

GRAPHS = {CLASSIFIER: "classifier.onnx", LM: "lm.onnx"}
# The version tag holding :func:`serving_digest` of the files the version serves.
DIGEST_TAG = "wikilm.serving_digest"
EXAMPLE_TEXTS = ["A gripping, beautifully acted film.", "Dull and far too long."]
SERVING_PACKAGES = ("mlflow", "onnxruntime", "tokenizers", "pandas", "numpy")
SERVING_CODE = Path(components.__file__).parent / "serving"
# The models-from-code file of each model (in SERVING_CODE).
MODEL_CODE = {CLASSIFIER: "classifier_model.py", LM: "lm_model.py"}


def artifacts(export_dir: Path, model: str, graph: str | None = None) -> dict[str, str]:
    """The files a served model loads, by the names :mod:`components.serving.pyfunc` expects.

    ``graph``: the ONNX file to serve, if not the model's fp32 graph (``GRAPHS``).
    """
    files = (graph or GRAPHS[model], TOKENIZER_FILE, SERVING_FILE)
    return {role: str(export_dir / name) for role, name in zip(ROLES, files, strict=True)}


def serving_digest(served: ServedFiles) -> str:
    """One sha256 over the files a served model loads, by name and content, in a fixed order.

    The sha256 of the lines ``<name> <sha256 of the file>`` (graph, tokenizer, serving
    settings): a file renamed to another's role changes it as much as a changed byte.
    """
    lines = "".join(f"{name} {hashlib.sha256(data).hexdigest()}\n" for name, data in served.named())
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


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
    """A logged model: its ``models:/`` URI, its id, and the digest of what it serves.

    A registry server asks for both the URI and the id; ``digest`` (:func:`serving_digest`)
    is the value of the version's ``DIGEST_TAG``.
    """

    uri: str
    model_id: str
    digest: str


def stage_code(folder: Path) -> Path:
    """Copy the serving package, as the package ``components.serving``, into ``folder``.

    Only that package travels with a model (with ``components/__init__.py``, which holds no
    code): what its models-from-code file imports, nothing of the pipeline.
    """
    package = folder / "components"
    shutil.copytree(SERVING_CODE, package / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(Path(components.__file__), package / "__init__.py")
    return package


def log_model(export_dir: Path, model: str, graph: str | None = None) -> Logged:
    """Log one pyfunc model, from code, into the active MLflow run.

    ``graph``: the ONNX file it serves, if not the model's fp32 graph (see :func:`artifacts`).
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from components.serving import pyfunc

    files = artifacts(export_dir, model, graph)
    kind = pyfunc.OnnxClassifier if model == CLASSIFIER else pyfunc.OnnxLanguageModel
    probe = kind()  # computes the example output for the signature
    probe.load_context(SimpleNamespace(artifacts=files))
    params = None if model == CLASSIFIER else LM_PARAMS
    example = pd.DataFrame({"text": EXAMPLE_TEXTS})
    output = probe.predict(None, example, params)
    with warnings.catch_warnings():
        # MLflow's hint that integer columns cannot hold missing values: token counts never
        # are missing.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, output, params=params)
    with tempfile.TemporaryDirectory() as staging:
        info = mlflow.pyfunc.log_model(
            name=model,
            python_model=str(SERVING_CODE / MODEL_CODE[model]),
            artifacts=files,
            code_paths=[str(stage_code(Path(staging)))],
            signature=signature,
            input_example=example,
            pip_requirements=requirements(),
        )
    digest = serving_digest(ServedFiles.read(**files))
    return Logged(info.model_uri, info.model_id, digest)
