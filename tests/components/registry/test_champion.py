"""The champion loaded from the bytes approved at registration: cache, digest, refusals."""

import json
import logging
import shutil
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml
from tokenizers import Tokenizer

from components.core.paths import Paths
from components.core.tracking_server import tracking_uri
from components.registry.champion import champion_predictor
from components.registry.packaging import DIGEST_TAG, serving_digest
from components.registry.promotion import register_and_gate
from components.registry.store import CHAMPION, CLASSIFIER, LM, Registry, RegistryError
from components.serving.predictor import Classifier, LanguageModel, ServedFiles
from tests.conftest import MECHANICS_GATE, make_params, registered_copy

TEXTS = ["A gripping, beautifully acted film.", "Dull and far too long.", "ok", "Not bad at all!"]


@pytest.fixture(autouse=True)
def local_store(monkeypatch, tmp_path):
    """The embedded store of each workspace, and a model cache of the test's own."""
    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    monkeypatch.setenv("WIKILM_MODEL_CACHE", str(tmp_path / "cache"))


def _register(paths: Paths) -> Paths:
    register_and_gate(make_params(promote=MECHANICS_GATE), paths)
    return paths


@pytest.fixture(scope="module")
def registered(tmp_path_factory, exported_root) -> Paths:
    """Both models registered and promoted once, for the tests that leave the store as it was."""
    return registered_copy(exported_root, tmp_path_factory.mktemp("registered") / "work")


def _uri(paths: Paths) -> str:
    return tracking_uri(paths.root)


def _stored_graph(paths: Paths, model: str = CLASSIFIER) -> Path:
    """The graph file of the champion's logged model, where the store keeps it."""
    client = Registry(paths).client
    version = client.get_model_version_by_alias(model, CHAMPION)
    folder = Path(
        client.get_model_version_download_uri(model, version.version).removeprefix("file://")
    )
    flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
    return folder / flavor["artifacts"]["graph"]["path"]


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def _graph_alone(export: Path, text: str) -> np.ndarray:
    """The exported classifier's probabilities for one text, by onnxruntime directly."""
    tokenizer = Tokenizer.from_file(str(export / "tokenizer.json"))
    tokenizer.encode_special_tokens = True
    max_length = json.loads((export / "serving.json").read_text())["max_length"]
    ids = tokenizer.encode(text).ids[:max_length]
    session = ort.InferenceSession(
        str(export / "classifier.onnx"), providers=["CPUExecutionProvider"]
    )
    feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
    return session.run(["probabilities"], feed)[0][0]


def test_the_champion_answers_what_its_onnx_graph_computes(registered):
    champion = champion_predictor(_uri(registered), CLASSIFIER)
    assert isinstance(champion, Classifier)
    out = champion.predict(TEXTS)
    expected = np.stack([_graph_alone(registered.export, text) for text in TEXTS])
    np.testing.assert_allclose(out.probabilities, expected, atol=1e-6)  # padded batch vs alone
    classes = champion.classes
    assert out.labels == [classes[i] for i in expected.argmax(axis=1)]
    assert out.probability.tolist() == pytest.approx(expected.max(axis=1).tolist(), abs=1e-6)


def test_the_champion_lm_answers_as_its_pyfunc_model_does(registered, monkeypatch):
    lm = champion_predictor(_uri(registered), LM)
    assert isinstance(lm, LanguageModel)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(registered))
    pyfunc = mlflow.pyfunc.load_model(f"models:/{LM}@{CHAMPION}")
    text = "The river runs through the old town."
    scored = pyfunc.predict(pd.DataFrame({"text": [text]})).iloc[0]
    assert lm.score(text)["loss"] == pytest.approx(scored["loss"], rel=1e-6)
    settings = {"task": "generate", "max_new_tokens": 6, "top_k": 5, "seed": 3}
    generated = pyfunc.predict(pd.DataFrame({"text": ["The"]}), params=settings)["generated"]
    assert lm.generate("The", settings) == generated.iloc[0]


def test_a_second_load_reads_the_cache_and_downloads_nothing(exported_workspace, tmp_path):
    paths = _register(exported_workspace)
    first = champion_predictor(_uri(paths), CLASSIFIER).predict(TEXTS)
    digest = Registry(paths).alias(CLASSIFIER, CHAMPION).tags[DIGEST_TAG]
    assert _entries(tmp_path / "cache") == [digest]
    # The store's artifacts gone: whatever loads now can only come from the cache.
    shutil.move(paths.root / "mlartifacts", tmp_path / "elsewhere")
    again = champion_predictor(_uri(paths), CLASSIFIER).predict(TEXTS)
    np.testing.assert_array_equal(again.probabilities, first.probabilities)
    with pytest.raises(RegistryError, match=f"{LM} v1: its files cannot be downloaded from"):
        champion_predictor(_uri(paths), LM)  # what is not cached cannot be loaded now


def test_files_changed_on_the_store_are_refused_and_never_cached(exported_workspace, tmp_path):
    paths = _register(exported_workspace)
    graph = _stored_graph(paths)
    expected = Registry(paths).alias(CLASSIFIER, CHAMPION).tags[DIGEST_TAG]
    graph.write_bytes(graph.read_bytes().replace(b"probabilities", b"probabilitiez"))
    folder = graph.parent
    found = serving_digest(
        ServedFiles.read(folder / graph.name, folder / "tokenizer.json", folder / "serving.json")
    )
    with pytest.raises(RegistryError) as refused:
        champion_predictor(_uri(paths), CLASSIFIER)
    message = str(refused.value)
    assert "\n" not in message
    for named in (CLASSIFIER, "v1", expected, found):
        assert named in message
    assert _entries(tmp_path / "cache") == []
    assert str(Registry(paths).alias(CLASSIFIER, CHAMPION).version) == "1"


def test_a_cache_entry_changed_locally_is_replaced_by_the_verified_files(
    registered, tmp_path, caplog
):
    champion_predictor(_uri(registered), CLASSIFIER)
    (entry,) = (tmp_path / "cache").iterdir()
    original = (entry / "graph.onnx").read_bytes()
    (entry / "serving.json").write_text('{"labels": ["pos", "neg"]}')  # labels swapped
    with caplog.at_level(logging.WARNING, logger="components.registry.champion"):
        champion = champion_predictor(_uri(registered), CLASSIFIER)
    assert "changed since it was cached" in caplog.text
    assert champion.classes == ["neg", "pos"]
    assert (entry / "graph.onnx").read_bytes() == original
    served = ServedFiles.read(
        *(entry / name for name in ("graph.onnx", "tokenizer.json", "serving.json"))
    )
    assert serving_digest(served) == entry.name


def test_a_cache_entry_changed_locally_is_never_served(registered, tmp_path):
    champion_predictor(_uri(registered), CLASSIFIER)
    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "graph.onnx").write_bytes(b"not a graph")
    # With the store's copy changed as well, nothing verified is left to serve.
    graph = _stored_graph(registered)
    kept = graph.read_bytes()
    graph.write_bytes(kept + b"\0")
    try:
        with pytest.raises(RegistryError, match=r"its files' digest [0-9a-f]{64} is not the"):
            champion_predictor(_uri(registered), CLASSIFIER)
    finally:
        graph.write_bytes(kept)


def test_a_version_registered_without_a_digest_is_refused(exported_workspace):
    paths = _register(exported_workspace)
    Registry(paths).client.delete_model_version_tag(CLASSIFIER, "1", DIGEST_TAG)
    with pytest.raises(RegistryError) as refused:
        champion_predictor(_uri(paths), CLASSIFIER)
    assert str(refused.value) == (
        f"{CLASSIFIER} v1 (champion) was registered without a serving digest ({DIGEST_TAG}), "
        "so its files cannot be checked and it is not served: register the export again "
        "(`wikilm promote`, or `wikilm run`)"
    )
    # The gate may still score it (its files are ONNX and JSON: nothing runs as code).
    scored = champion_predictor(_uri(paths), CLASSIFIER, score_untagged=True)
    tagged = champion_predictor(_uri(paths), LM)
    assert isinstance(scored, Classifier)
    assert isinstance(tagged, LanguageModel)
    assert len(scored.predict(TEXTS).labels) == len(TEXTS)


def test_no_alias_and_no_store_are_no_champion(registered, tmp_path):
    assert champion_predictor(_uri(registered), CLASSIFIER, "nobody") is None
    missing = tmp_path / "nowhere" / "mlflow.db"
    assert champion_predictor(f"sqlite:///{missing}", CLASSIFIER) is None
    assert not missing.parent.exists()  # asking created no store
