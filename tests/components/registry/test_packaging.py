"""Logged models: from code (no pickle), loadable without this repository, digested."""

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from components.core.paths import Paths, PathsParams
from components.core.tracking import fluent_tracking
from components.registry.packaging import artifacts, log_model, serving_digest
from components.registry.store import CLASSIFIER, LM
from components.serving.predictor import Classifier, ServedFiles

TEXTS = ["A gripping, beautifully acted film.", "Dull and far too long.", "ok"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, exported_root):
    """Both models logged from ``exported_root``'s export into a store of their own."""
    store = tmp_path_factory.mktemp("logged")
    export = Paths.resolve(PathsParams(), exported_root).export
    with fluent_tracking(f"sqlite:///{store / 'mlflow.db'}"):
        # Its artifacts in the store's folder: a new store's default is the working directory.
        location = (store / "artifacts").as_uri()
        with mlflow.start_run(experiment_id=mlflow.create_experiment("packaging", location)):
            logged = {model: log_model(export, model) for model in (CLASSIFIER, LM)}
        folders = {m: Path(mlflow.artifacts.download_artifacts(i.uri)) for m, i in logged.items()}
    return export, logged, folders


def test_logged_models_are_code_and_data_with_no_pickle(logged):
    _, _, folders = logged
    for folder in folders.values():
        assert not list(folder.rglob("*.pkl"))
        assert not list(folder.rglob("*.pickle"))
        flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
        assert "python_model" not in flavor  # the pickled instance of a non-code model
        assert (folder / Path(flavor["model_code_path"]).name).is_file()
        shipped = {
            p.relative_to(folder / "code").as_posix() for p in (folder / "code").rglob("*.py")
        }
        assert "components/serving/predictor.py" in shipped
        assert not [name for name in shipped if name.startswith("components/registry")]


# A fresh interpreter that cannot import this repository: no editable install, no checkout
# on the path. The model must bring all the code it runs.
WITHOUT_REPO = """
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if p not in ("", {repo!r})]
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model({folder!r})
out = model.predict(pd.DataFrame({{"text": {texts!r}}}))
import components
print(json.dumps({{"components": components.__file__, "rows": out.to_dict("records")}}))
"""


def test_a_logged_model_loads_and_predicts_without_this_repository(logged, tmp_path):
    export, _, folders = logged
    repo = str(Path(__file__).resolve().parents[3])
    code = WITHOUT_REPO.format(repo=repo, folder=str(folders[CLASSIFIER]), texts=TEXTS)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["components"].startswith(str(folders[CLASSIFIER]))
    expected = Classifier(ServedFiles.read(**artifacts(export, CLASSIFIER))).predict(TEXTS)
    assert [row["label"] for row in answer["rows"]] == expected.labels
    probabilities = [row["probability"] for row in answer["rows"]]
    assert probabilities == pytest.approx(expected.probability.tolist(), abs=1e-7)


def test_log_model_returns_the_digest_of_the_files_it_serves(logged):
    export, logged_models, folders = logged
    for model, info in logged_models.items():
        assert info.digest == serving_digest(ServedFiles.read(**artifacts(export, model)))
        flavor = yaml.safe_load((folders[model] / "MLmodel").read_text())["flavors"]
        paths = {
            k: folders[model] / v["path"] for k, v in flavor["python_function"]["artifacts"].items()
        }
        assert info.digest == serving_digest(ServedFiles.read(**paths))  # what was uploaded
    assert logged_models[CLASSIFIER].digest != logged_models[LM].digest


BASE = ServedFiles(graph=b"graph bytes", tokenizer=b'{"t": 1}', serving=b'{"s": 2}')


@pytest.mark.parametrize(
    "changed",
    [
        ServedFiles(b"graph bytez", BASE.tokenizer, BASE.serving),
        ServedFiles(BASE.graph, b'{"t": 2}', BASE.serving),
        ServedFiles(BASE.graph, BASE.tokenizer, b'{"s": 3}'),
        ServedFiles(BASE.graph, BASE.serving, BASE.tokenizer),  # two files' roles swapped
        ServedFiles(BASE.graph + BASE.tokenizer, b"", BASE.serving),  # a boundary moved
    ],
    ids=["graph", "tokenizer", "serving", "swapped", "boundary"],
)
def test_the_digest_changes_with_any_file_or_role(changed):
    same = ServedFiles(b"graph bytes", b'{"t": 1}', b'{"s": 2}')
    assert serving_digest(same) == serving_digest(BASE)
    assert len(serving_digest(BASE)) == 64  # sha256, hex
    assert serving_digest(changed) != serving_digest(BASE)
