import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from components.core.errors import ArtifactError, SourceError
from components.data.tokenizer_file import load_tokenizer
from components.model import finetune
from components.model.classifier_module import encode_texts, pad_batch, predict_proba
from components.model.finetune import run
from components.model.model_io import load_classifier, load_gpt, pad_id
from tests.conftest import CPU_TRAINER, SMALL_LABELLED, TINY_MODEL, make_params


def _params(**finetune):
    values = {
        "dataset": SMALL_LABELLED,
        "max_epochs": 4,
        "patience": 2,
        "batch_size": 16,
        "lr": 2e-3,
        **finetune,
    }
    return make_params(model=TINY_MODEL, trainer=CPU_TRAINER, finetune=values)


def test_finetune_on_polarity_writes_a_loadable_classifier(pretrained_workspace):
    paths = pretrained_workspace
    result = run(_params(), paths)
    assert result.classes == 2
    assert result.examples_train + result.examples_val + result.examples_test == 200
    assert (result.examples_val, result.examples_test) == (30, 40)
    assert 1 <= result.best_epoch <= result.epochs <= 4
    assert 0 < result.best_val_loss < 2
    model, config = load_classifier(paths.finetune)
    assert config["labels"] == ["neg", "pos"]
    assert json.loads((paths.finetune / "labels.json").read_text()) == {"neg": 0, "pos": 1}
    test = pd.read_parquet(paths.finetune / "splits" / "test.parquet")
    assert test["label"].value_counts().to_dict() == {0: 20, 1: 20}  # stratified
    # The saved model reproduces the best epoch: its val loss is the one reported.
    assert _val_loss(paths.finetune) == pytest.approx(result.best_val_loss, abs=1e-4)
    assert (paths.plots_dir("finetune") / "val.csv").is_file()
    # The same classifier from random weights, saved beside it and reported.
    baseline, baseline_config = load_classifier(paths.finetune / "random_init")
    assert baseline_config == config
    assert result.random_init is not None
    assert 1 <= result.random_init.best_epoch <= result.random_init.epochs
    pretrained_embeddings = load_gpt(paths.pretrain).wte.weight
    assert not torch.equal(baseline.backbone.wte.weight, pretrained_embeddings)
    assert not paths.checkpoint_dir("finetune").exists()


def test_each_training_sees_the_same_batches_whatever_ran_before(pretrained_workspace, tmp_path):
    """The random-init twin is trained on the very batches the pretrained one was."""
    import pytorch_lightning as pl

    from components.data.labelled import load_labelled
    from components.model.gpt import GPT, GPTConfig
    from components.model.model_io import read_config

    params = _params(max_epochs=1)
    cfg, paths = params.finetune, pretrained_workspace
    config = read_config(paths.pretrain)
    frames = finetune.split_frames(load_labelled(cfg.dataset, paths.root), cfg)
    tokenizer = load_tokenizer(paths.pretrain / "tokenizer.json")
    encoded = {k: encode_texts(tokenizer, f["text"], 32) for k, f in frames.items()}

    def trained(loaders: finetune.Loaders) -> dict[str, torch.Tensor]:
        pl.seed_everything(cfg.seed, verbose=False)
        model = finetune.build_classifier(GPT(GPTConfig(**config["model"])), cfg, 2)
        finetune.train(model, loaders, params, tmp_path / "checkpoints")
        return model.state_dict()

    def loaders() -> finetune.Loaders:
        return finetune.make_loaders(encoded, frames, cfg, pad_id(config), 2)

    shared = loaders()
    trained(shared)  # a first training draws its epoch's order from the shared generator
    second = trained(shared)
    alone = trained(loaders())
    assert all(torch.equal(second[name], alone[name]) for name in alone)


def test_early_stopping_keeps_the_best_epoch(pretrained_workspace):
    result = run(_params(max_epochs=30, patience=1, lr=1e-2), pretrained_workspace)
    assert result.stopped_early
    assert result.epochs - result.best_epoch == 1


def test_frozen_layers_keep_their_pretrained_weights(pretrained_workspace):
    paths = pretrained_workspace
    pretrained = load_gpt(paths.pretrain).state_dict()
    result = run(_params(freeze_layers=1, max_epochs=2), paths)
    tuned = load_classifier(paths.finetune)[0].backbone.state_dict()
    for name in ("wte.weight", "wpe.weight", "blocks.0.attn.qkv.weight"):
        assert torch.equal(tuned[name], pretrained[name]), name
    assert not torch.equal(
        tuned["blocks.1.attn.qkv.weight"], pretrained["blocks.1.attn.qkv.weight"]
    )
    total = sum(t.numel() for k, t in pretrained.items() if k != "lm_head.weight")
    assert result.trainable_parameters < total


def test_a_csv_with_string_labels_and_three_classes(pretrained_workspace):
    paths = pretrained_workspace
    rows = [(f"the {w} item number {i}", w) for i in range(20) for w in ("red", "green", "blue")]
    pd.DataFrame(rows, columns=["body", "colour"]).to_csv(paths.root / "colours.csv", index=False)
    params = _params(dataset="colours.csv", text_column="body", label_column="colour")
    result = run(params, paths)
    assert result.classes == 3
    assert load_classifier(paths.finetune)[1]["labels"] == ["blue", "green", "red"]


def test_missing_column_and_missing_model_are_clear_errors(pretrained_workspace, workspace):
    paths = pretrained_workspace
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_csv(paths.root / "t.csv", index=False)
    with pytest.raises(SourceError, match="no column 'body'"):
        run(_params(dataset="t.csv", text_column="body"), paths)
    with pytest.raises(ArtifactError, match="run the 'pretrain' stage first"):
        run(_params(), workspace)


def test_padding_and_mask_mark_the_real_tokens():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def _val_loss(finetuned, model_folder="") -> float:
    """Mean cross-entropy on the val split of the classifier in ``finetuned/model_folder``."""
    model, config = load_classifier(finetuned / model_folder)
    val = pd.read_parquet(finetuned / "splits" / "val.parquet")
    tokenizer = load_tokenizer(finetuned / "tokenizer.json")
    probs = predict_proba(model, encode_texts(tokenizer, val["text"], 32), pad_id(config))
    return float(-np.log(probs[np.arange(len(val)), val["label"]]).mean())


@pytest.mark.skipif(torch.cuda.is_available(), reason="accelerator auto would pick the GPUs")
def test_fsdp_settings_fine_tune_on_two_processes_with_a_copy_each(pretrained_workspace):
    """Under ``strategy: fsdp`` fine-tuning runs DDP: here on CPUs, where FSDP cannot run."""
    root = pretrained_workspace.root
    sections = {
        "model": TINY_MODEL,
        "trainer": {"accelerator": "auto", "devices": 2, "strategy": "fsdp"},
        "finetune": {"dataset": SMALL_LABELLED, "max_epochs": 2, "lr": 2e-3},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(sections))
    command = [sys.executable, "-m", "components", "finetune", "--params", "params.yaml"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("keeps a whole copy per device (ddp)") == 1
    assert done.stderr.count("finetune finished") == 1  # rank 1 is silent
    # Both ranks scored half the val split each; the classifier written is the best epoch's,
    # and its loss on the whole split is the one reported.
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert _val_loss(pretrained_workspace.finetune) == pytest.approx(
        metrics["best_val_loss"], abs=1e-4
    )
    assert metrics["random_init"]["best_val_loss"] == pytest.approx(
        _val_loss(pretrained_workspace.finetune, "random_init"), abs=1e-4
    )
