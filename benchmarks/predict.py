"""Benchmark: ``wikilm predict`` beside loading the same champion with ``mlflow.pyfunc``.

``wikilm predict "one sentence"`` resolves the champion without MLflow, checks the digest of
its cached files and answers with onnxruntime. The peer is what MLflow offers for the same
question: a fresh process that runs ``mlflow.pyfunc.load_model("models:/...@champion")``
and predicts one sentence. Both are timed as whole processes, as a user would wait for
them: ``wikilm predict``'s first call (its model cache empty: it downloads and verifies the
files) and the median of its next calls, beside the peer's first call and median. Prints
both, their ranges and the ratios (wikilm / peer), for the embedded SQLite store and for an
``mlflow server`` (SQLite and a local artifact folder behind it, on this machine).

    python benchmarks/predict.py                  # builds a tiny champion, as the tests do
    python benchmarks/predict.py --root . --stores sqlite   # this checkout's champion

Building the champion trains the tests' 2-layer models on their small corpora (about a
minute on 2 cores) and registers them with the gate's mechanics rules, in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEXT = "A gripping, beautifully acted film."
MODEL = "wikilm-classifier"
# The tests' fixtures and helpers build the champion (tests/conftest.py, tests/servers).
sys.path.insert(0, str(ROOT))
PEER = """
import sys
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model("models:/wikilm-classifier@champion")
row = model.predict(pd.DataFrame({"text": sys.argv[1:]})).iloc[0]
print(f"{row.label}\\t{row.probability:.3f}")
"""


def plain_environment(**extra: str) -> dict[str, str]:
    """A login shell's basics, and ``extra``: nothing the Makefile or a profile would add."""
    keep = ("HOME", "LANG", "USER", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    return {**env, "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin", **extra}


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of one run of ``command``, and the first line it printed."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{command[0]} failed:\n{done.stdout}{done.stderr[-3000:]}")
    return seconds, done.stdout.strip().splitlines()[0]


def build_champion(folder: Path) -> Path:
    """A workspace with the tests' tiny models exported (see tests/conftest.py)."""
    from components.core.artifacts import build_meta, write_json
    from components.core.paths import Paths, PathsParams
    from components.data.documents import Document
    from components.data.sources import builtin_path
    from components.data.tokenization import run as tokenize
    from components.export.export import run as export
    from components.model.evaluate import run as evaluate
    from components.model.finetune import run as finetune
    from components.model.pretrain import run as pretrain
    from tests.conftest import CPU_TRAINER, SMALL_LABELLED, TINY_MODEL, make_params
    from tests.corpora import write_documents

    paths = Paths.resolve(PathsParams(), folder)
    lines = builtin_path("lee-background").read_text(encoding="utf-8").splitlines()
    docs = [Document(i, f"Doc {i}", line) for i, line in enumerate(lines) if line.strip()]
    write_documents(paths.clean, docs, shard_rows=100)
    write_json(paths.clean / "meta.json", build_meta("clean", {}, {}))
    tokenize(make_params(tokenize={"vocab_size": 512, "val_fraction": 0.2}), paths)
    params = make_params(
        model=TINY_MODEL,
        trainer=CPU_TRAINER,
        pretrain={"batch_size": 16, "max_steps": 100, "warmup_steps": 10, "lr": 3e-3},
        finetune={"dataset": SMALL_LABELLED, "max_epochs": 1, "lr": 2e-3},
        evaluate={"max_tokens": 5000},
        export={"latency_repeats": 3, "latency_batch_sizes": [1], "latency_seq_len": 16},
    )
    with tracking_off():
        pretrain(params, paths)
        finetune(params, paths)
        for stage, run in (("evaluate", evaluate), ("export", export)):
            write_json(paths.metrics_file(stage), run(params, paths).model_dump(mode="json"))
    (folder / "params.yaml").write_text("{}\n")
    return folder


@contextmanager
def tracking_off() -> Iterator[None]:
    """Training records nothing: only the registration below belongs in the store."""
    os.environ["WIKILM_TRACKING"] = "off"
    try:
        yield
    finally:
        del os.environ["WIKILM_TRACKING"]


def register(folder: Path, uri: str | None) -> None:
    """Register and promote the workspace's models on ``uri`` (None: its embedded store)."""
    from components.core.paths import Paths, PathsParams
    from components.registry.promotion import register_and_gate
    from tests.conftest import MECHANICS_GATE, make_params

    previous = os.environ.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        outcomes = register_and_gate(
            make_params(promote=MECHANICS_GATE), Paths.resolve(PathsParams(), folder)
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if previous:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    if outcomes[0].status != "promoted":
        sys.exit(f"the classifier was not promoted: {outcomes[0].decision.summary()}")


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A plain ``mlflow server`` (SQLite, local artifacts) on a free port: its URI."""
    from tests.servers.processes import ServerProcess, free_port

    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "server-artifacts"),
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        "mlflow server", command, plain_environment(), f"{uri}/health", folder / "server.log"
    )
    server.start()
    try:
        yield uri
    finally:
        server.stop()


def measure(workspace: Path, uri: str, cache: Path, repeat: int) -> dict[str, list[float]]:
    """First and later calls of ``wikilm predict`` and of the peer, each a new process."""
    store = {"MLFLOW_TRACKING_URI": uri}
    predict = [str(BIN / "wikilm"), "predict", TEXT, "--params", str(workspace / "params.yaml")]
    ours = plain_environment(WIKILM_MODEL_CACHE=str(cache), **store)
    peer = [sys.executable, "-c", PEER, TEXT]
    shutil.rmtree(cache, ignore_errors=True)
    times: dict[str, list[float]] = {"wikilm": [], "peer": []}
    answers = set()
    for _ in range(repeat + 1):
        for name, command, env in (
            ("wikilm", predict, ours),
            ("peer", peer, plain_environment(**store)),
        ):
            seconds, answer = timed(command, env, cwd=Path(tempfile.gettempdir()))
            times[name].append(seconds)
            answers.add("\t".join(answer.split("\t")[:2]))
    if len(answers) != 1:
        sys.exit(f"wikilm predict and the peer disagree: {sorted(answers)}")
    return times


COLUMNS = ("store", "wikilm first", "wikilm later", "peer first", "peer later", "ratios")


def report(store: str, times: dict[str, list[float]]) -> None:
    """One row: first calls, medians [ranges] of the later ones, ratios (wikilm / peer)."""
    first = {name: t[0] for name, t in times.items()}
    median = {name: statistics.median(t[1:]) for name, t in times.items()}
    later = {
        name: f"{median[name]:.3f} [{min(t[1:]):.2f}-{max(t[1:]):.2f}]" for name, t in times.items()
    }
    ratios = f"{first['wikilm'] / first['peer']:.3f} / {median['wikilm'] / median['peer']:.3f}"
    cells = (
        store,
        f"{first['wikilm']:.3f}",
        later["wikilm"],
        f"{first['peer']:.3f}",
        later["peer"],
        ratios,
    )
    print("| " + " | ".join(cells) + " |")


def main() -> None:
    """Build (or take) a champion, then time both on each store and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="a workspace with a champion (else built)")
    parser.add_argument("--repeat", type=int, default=5, help="calls after the first")
    parser.add_argument(
        "--stores", nargs="+", choices=["sqlite", "server"], default=["sqlite", "server"]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wikilm-bench-predict-") as scratch:
        folder = Path(scratch)
        workspace = args.root.resolve() if args.root else build_champion(folder / "work")
        print("seconds of wall time; later: median [range] of the calls after the first;")
        print("ratios: wikilm / peer, first calls / later calls")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        if "sqlite" in args.stores:
            if not args.root:
                register(workspace, None)
            uri = f"sqlite:///{workspace / 'mlflow.db'}"
            report("embedded", measure(workspace, uri, folder / "cache-sqlite", args.repeat))
        if "server" in args.stores:
            with mlflow_server(folder) as uri:
                register(workspace, uri)
                report(
                    "mlflow server", measure(workspace, uri, folder / "cache-server", args.repeat)
                )


if __name__ == "__main__":
    main()
