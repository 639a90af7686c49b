"""Model folders: safetensors weights plus ``config.json``, and the tokenizer they read.

``models/pretrain/`` holds the decoder; ``models/finetune/`` the classifier (decoder and
head). Both carry ``tokenizer.json``, so each folder is self-contained for export and
serving. Loading checks the files and the weights' names and shapes against the config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from components.core.artifacts import write_json
from components.core.errors import ArtifactError
from components.model.gpt import GPT, GPTClassifier, GPTConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RANDOM_INIT = "random_init"  # the sub-folder of the classifier trained from random weights
PAD_TOKEN = "<|pad|>"


def save_weights(model: nn.Module, config: dict[str, Any], folder: Path) -> None:
    """Write ``model.safetensors`` (tied weights stored once) and ``config.json``."""
    save_model(model, str(folder / WEIGHTS_FILE))
    write_json(folder / CONFIG_FILE, config)


def pad_id(config: dict) -> int:
    """The padding token's id (the separator when the tokenizer has no pad token)."""
    special = config.get("special_tokens", {})
    return special.get(PAD_TOKEN, next(iter(special.values()), 0))


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a model folder.

    Raises:
        ArtifactError: the folder has no (readable) config or weights.
    """
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ArtifactError(
            f"{folder} holds no model ({CONFIG_FILE} + {WEIGHTS_FILE}): run its stage"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} is not valid JSON ({error}): rerun its stage") from None


def _load_into(model: nn.Module, folder: Path) -> None:
    try:
        load_model(model, str(folder / WEIGHTS_FILE), strict=True)
    except (RuntimeError, ValueError, OSError) as error:
        message = str(error).splitlines()[0]
        raise ArtifactError(f"{folder / WEIGHTS_FILE} does not fit its config: {message}") from None


def load_gpt(folder: Path) -> GPT:
    """The pretrained decoder saved in ``folder``, in eval mode."""
    model = GPT(GPTConfig(**read_config(folder)["model"]))
    _load_into(model, folder)
    return model.eval()


def load_classifier(folder: Path) -> tuple[GPTClassifier, dict[str, Any]]:
    """The fine-tuned classifier saved in ``folder`` (eval mode) and its config."""
    config = read_config(folder)
    backbone = GPT(GPTConfig(**config["model"]))
    # Classifiers saved before pooling was a choice pooled the last token.
    pooling = config.get("pooling", "last")
    model = GPTClassifier(backbone, num_classes=len(config["labels"]), pooling=pooling)
    _load_into(model, folder)
    return model.eval(), config
