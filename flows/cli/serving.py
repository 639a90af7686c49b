"""``wikilm`` commands for consumers of the champions: predict, generate, serve.

predict and generate ask the current champions through onnxruntime, loading the files
whose digest was recorded at registration (:mod:`components.registry.champion`): they
import neither MLflow nor pandas once the files are cached. serve answers REST requests
with ``mlflow models serve``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import TYPE_CHECKING

from components.core.paths import Paths
from components.core.tracking_server import tracking_uri
from components.registry.store import CHAMPION, CLASSIFIER, LM, Registry, RegistryError
from flows.cli.common import MODELS, add_command, load_context
from flows.pipeline import this_environment

if TYPE_CHECKING:
    from components.serving.predictor import Classifier, LanguageModel


def _champion(paths: Paths, model: str) -> Classifier | LanguageModel:
    """The champion of ``model``, loaded from its verified files (see registry/champion.py)."""
    # Imported here: onnxruntime is for the commands that predict, not for every command.
    from components.registry.champion import champion_predictor

    predictor = champion_predictor(tracking_uri(paths.root), model, CHAMPION)
    if predictor is None:
        raise _no_alias(model, CHAMPION)
    return predictor


def _no_alias(model: str, alias: str) -> RegistryError:
    """The error for a model without ``alias``: where to look for the reason."""
    return RegistryError(
        f"{model} has no {alias}: `wikilm history {model}` shows each decision of the gate "
        "and of reviewers (`wikilm run` registers and gates a new version)"
    )


def predict_command(args: argparse.Namespace) -> int:
    """Classify texts with the champion classifier (onnxruntime)."""
    _, paths = load_context(args)
    out = _champion(paths, CLASSIFIER).predict(args.text)
    for text, label, probability in zip(args.text, out.labels, out.probability, strict=True):
        print(f"{label}\t{probability:.3f}\t{text}")
    return 0


def generate_command(args: argparse.Namespace) -> int:
    """Continue a prompt with the champion language model (onnxruntime)."""
    _, paths = load_context(args)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "top_k": args.top_k,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    print(args.prompt + _champion(paths, LM).generate(args.prompt, settings))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """Serve a registered model over REST with ``mlflow models serve`` (onnxruntime inside)."""
    _, paths = load_context(args)
    if Registry(paths).alias(args.model, args.alias) is None:
        raise _no_alias(args.model, args.alias)
    uri = tracking_uri(paths.root)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{args.model}@{args.alias}",
        "--env-manager",
        "local",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    env = {**this_environment(), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    return subprocess.run(command, env=env, check=False).returncode


def add_serving_commands(commands: argparse._SubParsersAction) -> None:
    """Register predict, generate and serve."""
    predict = add_command(
        commands,
        "predict",
        "classify texts with the champion classifier",
        'wikilm predict "A gripping, beautifully acted film."',
        predict_command,
    )
    predict.add_argument("text", nargs="+", help="one or more texts")
    generate = add_command(
        commands,
        "generate",
        "continue a prompt with the champion LM",
        'wikilm generate "The history of" --max-new-tokens 40 --top-k 20',
        generate_command,
    )
    generate.add_argument("prompt")
    generate.add_argument("--max-new-tokens", type=int, default=40)
    generate.add_argument("--top-k", type=int, default=0, help="0: greedy")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    serve = add_command(
        commands,
        "serve",
        "serve a registered model over REST (mlflow models serve)",
        "wikilm serve wikilm-classifier --port 5001",
        serve_command,
    )
    serve.add_argument("model", choices=MODELS)
    serve.add_argument("--alias", default=CHAMPION, help="alias to serve (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5001)
