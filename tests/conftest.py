"""Shared fixtures: tiny dumps and params anchored in a temporary folder."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from components.core.paths import Paths, PathsParams
from components.params import Params, parse_params
from tests.dumps import sample_pages, write_dump

# Keep third-party telemetry quiet and local in every test.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True, scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory):
    """Champions' verified files (``wikilm predict``, the gate) in the session's own folder.

    Never in the user's cache: a test may set its own (``WIKILM_MODEL_CACHE``) over it.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WIKILM_MODEL_CACHE", str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture
def tiny_dump(tmp_path: Path) -> Path:
    """A bz2 dump of :func:`tests.dumps.sample_pages` (3 articles, 3 other pages)."""
    return write_dump(tmp_path / "dumps" / "tinywiki-pages-articles.xml.bz2", sample_pages())


@pytest.fixture
def workspace(tmp_path: Path) -> Paths:
    """Output paths of every stage, inside ``tmp_path``."""
    return Paths.resolve(PathsParams(), tmp_path)


def make_params(**sections: dict) -> Params:
    """Params with the given sections overridden (validated like params.yaml)."""
    return parse_params({name: values for name, values in sections.items()})


# A 2-layer model small enough to train in seconds on a CPU.
TINY_MODEL = {
    "preset": "tiny",
    "overrides": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
    "pad_vocab_to": 64,
}
CPU_TRAINER = {"accelerator": "cpu", "devices": 1}
# 200 labelled sentences: seconds to fine-tune on, where the default set takes minutes.
SMALL_LABELLED = "builtin:polarity"
# Models trained for seconds rarely beat TF-IDF + LR: tests of the registry's mechanics
# (promotion, approval, rollback, serving) waive that rule of the gate; its own tests do not.
MECHANICS_GATE = {"min_margin_over_tfidf": -1.0}


@pytest.fixture(scope="session")
def token_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token files (the tokenize stage's output) of real news text, built once per session."""
    from components.core.artifacts import build_meta, write_json
    from components.data.documents import Document
    from components.data.sources import builtin_path
    from components.data.tokenization import run as tokenize
    from tests.corpora import write_documents

    root = tmp_path_factory.mktemp("corpus")
    paths = Paths.resolve(PathsParams(), root)
    lines = builtin_path("lee-background").read_text(encoding="utf-8").splitlines()
    docs = [Document(i, f"Doc {i}", line) for i, line in enumerate(lines) if line.strip()]
    write_documents(paths.clean, docs, shard_rows=100)
    write_json(paths.clean / "meta.json", build_meta("clean", {}, {}))
    params = make_params(tokenize={"vocab_size": 512, "val_fraction": 0.2, "batch_docs": 64})
    tokenize(params, paths)
    return paths.tokens


@pytest.fixture
def trained_workspace(workspace: Paths, token_corpus: Path) -> Paths:
    """A workspace whose tokenize output is :func:`token_corpus` (copied, so tests may edit)."""
    shutil.copytree(token_corpus, workspace.tokens)
    return workspace


@pytest.fixture(scope="session")
def pretrained_root(tmp_path_factory: pytest.TempPathFactory, token_corpus: Path) -> Path:
    """A workspace with token files and a briefly pretrained tiny model, built once."""
    from components.model.pretrain import run as pretrain

    root = tmp_path_factory.mktemp("pretrained")
    paths = Paths.resolve(PathsParams(), root)
    shutil.copytree(token_corpus, paths.tokens)
    params = make_params(
        model=TINY_MODEL,
        trainer=CPU_TRAINER,
        pretrain={
            "batch_size": 16,
            "max_steps": 300,
            "warmup_steps": 10,
            "lr": 3e-3,
            "min_lr": 3e-4,
        },
    )
    pretrain(params, paths)
    return root


@pytest.fixture
def pretrained_workspace(tmp_path: Path, pretrained_root: Path) -> Paths:
    """A copy of :func:`pretrained_root` that a test may change."""
    return copy_workspace(pretrained_root, tmp_path / "work")


@pytest.fixture(scope="session")
def exported_root(tmp_path_factory: pytest.TempPathFactory, pretrained_root: Path) -> Path:
    """A workspace with every stage's output up to ``export`` (tiny models), built once."""
    from components.core.artifacts import write_json
    from components.export.export import run as export
    from components.model.evaluate import run as evaluate
    from components.model.finetune import run as finetune

    root = tmp_path_factory.mktemp("exported") / "work"
    shutil.copytree(pretrained_root, root)
    paths = Paths.resolve(PathsParams(), root)
    params = make_params(
        model=TINY_MODEL,
        trainer=CPU_TRAINER,
        finetune={"dataset": SMALL_LABELLED, "max_epochs": 2, "lr": 2e-3},
        evaluate={"max_tokens": 5000},
        export={"latency_repeats": 3, "latency_batch_sizes": [1], "latency_seq_len": 16},
    )
    finetune(params, paths)
    for stage, run in (("evaluate", evaluate), ("export", export)):
        write_json(paths.metrics_file(stage), run(params, paths).model_dump(mode="json"))
    return root


@pytest.fixture
def exported_workspace(tmp_path: Path, exported_root: Path) -> Paths:
    """A copy of :func:`exported_root` with no MLflow store yet."""
    return copy_workspace(exported_root, tmp_path / "work")


def registered_copy(exported: Path, root: Path) -> Paths:
    """A copy of an exported workspace whose two models are registered and promoted.

    On the copy's embedded store, whatever tracking the test session was set up with.
    """
    from components.registry.promotion import register_and_gate

    paths = copy_workspace(exported, root)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
            patch.delenv(name, raising=False)
        register_and_gate(make_params(promote={**MECHANICS_GATE, "approval": "auto"}), paths)
    return paths


def copy_workspace(source: Path, root: Path) -> Paths:
    """Copy a session-built workspace to ``root`` and resolve its default paths."""
    shutil.copytree(source, root)
    return Paths.resolve(PathsParams(), root)


@pytest.fixture
def dump_mirror(tmp_path: Path):
    """Start a local Wikimedia-like mirror serving ``/enwiki/latest/`` with a given dump.

    Returns a function ``(body) -> (base_url, latest_folder)``; servers stop after the test.
    """
    import functools
    import hashlib
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    servers = []

    def start(body: bytes) -> tuple[str, Path]:
        root = tmp_path / f"mirror{len(servers)}"
        latest = root / "enwiki" / "latest"
        latest.mkdir(parents=True)
        (latest / "enwiki-latest-pages-articles.xml.bz2").write_bytes(body)
        (latest / "enwiki-latest-sha1sums.txt").write_text(
            f"{'0' * 40}  enwiki-latest-abstract.xml.gz\n"
            f"{hashlib.sha1(body).hexdigest()}  enwiki-latest-pages-articles.xml.bz2\n"
        )
        handler = functools.partial(Quiet, directory=str(root))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}", latest

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone-like copy with the Prefect flow run once, embedded (no servers).

    Next to it: ``flow-result.json`` (the flow's result), ``dvc.lock.after-run`` and
    ``metrics.after-run/`` (as the run left them; tests may change the copy's own afterwards).
    """
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline_flow import wikilm_pipeline
    from tests.repository import quick_clone

    root = quick_clone(tmp_path_factory.mktemp("repo"))
    with pytest.MonkeyPatch.context() as patch, prefect_test_harness(server_startup_timeout=120):
        patch.setenv("DVC_NO_ANALYTICS", "1")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("PREFECT_API_URL", raising=False)
        result = wikilm_pipeline(params_file=str(root / "params.yaml"))
    (root.parent / "flow-result.json").write_text(json.dumps(dataclasses.asdict(result)))
    shutil.copy(root / "dvc.lock", root.parent / "dvc.lock.after-run")
    shutil.copytree(root / "metrics", root.parent / "metrics.after-run")
    return root
