import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from components.core.errors import ConfigError
from components.model.checkpoints import STATE_FILE
from components.model.model_io import load_gpt
from components.model.pretrain import resume_point, run
from tests.conftest import CPU_TRAINER, TINY_MODEL, make_params

PRETRAIN = {
    "batch_size": 8,
    "max_steps": 30,
    "warmup_steps": 3,
    "lr": 1e-2,
    "min_lr": 1e-3,
    "val_every": 10,
    "val_batches": 4,
    "checkpoint_every": 10,
    "log_every": 5,
}


def _params(**pretrain):
    return make_params(model=TINY_MODEL, trainer=CPU_TRAINER, pretrain={**PRETRAIN, **pretrain})


def test_pretrain_learns_and_writes_a_loadable_model(trained_workspace):
    paths = trained_workspace
    result = run(_params(), paths)
    assert result.steps == 30
    assert result.tokens_seen == 30 * 8 * 32
    # Well below a uniform guess over the 512-token vocabulary (the untrained model's loss).
    assert result.val_loss < math.log(512) - 0.5
    assert result.val_perplexity == pytest.approx(math.exp(result.val_loss), rel=1e-4)
    assert 0 < result.val_bits_per_byte < 8
    assert result.tokens_per_s > 0
    assert result.mfu is None  # no known peak on a CPU
    assert result.threads == torch.get_num_threads()
    model = load_gpt(paths.pretrain)
    assert model.config.n_embd == 32
    assert model.config.vocab_size == 512
    meta = json.loads((paths.pretrain / "meta.json").read_text())
    assert meta["stage"] == "pretrain"
    assert meta["tokenizer"]["sha256"]
    assert (paths.pretrain / "tokenizer.json").is_file()
    # Curves: train loss every 5 steps, val metrics every 10; checkpoints gone when done.
    train = (paths.plots_dir("pretrain") / "train.csv").read_text().splitlines()
    val = (paths.plots_dir("pretrain") / "val.csv").read_text().splitlines()
    assert train[0] == "step,loss"
    assert len(train) == 1 + 6
    assert val[0] == "step,loss,perplexity,bits_per_byte"
    assert len(val) == 1 + 3
    assert not paths.checkpoint_dir("pretrain").exists()


def test_the_train_curve_is_the_loss_per_token_whatever_the_accumulation(trained_workspace):
    paths = trained_workspace
    run(_params(grad_accum=2, batch_size=4, max_steps=10), paths)
    (train,) = [r for r in _curve(paths.plots_dir("pretrain") / "train.csv") if r["step"] == "10"]
    (val,) = _curve(paths.plots_dir("pretrain") / "val.csv")
    # Not halved by the two accumulated micro-batches: about the validation loss.
    assert 0.8 < float(train["loss"]) / float(val["loss"]) < 1.25


def test_checkpoints_of_other_params_or_data_are_discarded(trained_workspace):
    paths = trained_workspace
    point = resume_point(_params(), paths)
    assert point.key != resume_point(_params(lr=5e-3), paths).key
    assert point.key == resume_point(_params(log_every=1, resume=False), paths).key
    point.begin("run-a")
    point.checkpoint.write_bytes(b"stand-in")
    assert point.resumable() == point.checkpoint
    assert point.run_id() == "run-a"
    other = resume_point(_params(max_steps=31), paths)
    assert other.resumable() is None
    assert other.run_id() is None
    assert other.begin("run-b") is None
    assert not point.checkpoint.exists()
    assert point.begin("run-c", allow_resume=False) is None


# --- as a command, the way DVC runs it ----------------------------------------------------


def _project(root: Path, **sections) -> Path:
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(sections))
    return params


def _command(params: Path) -> list[str]:
    return [sys.executable, "-m", "components", "pretrain", "--params", str(params)]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def _pretrain(params: Path, **env) -> dict:
    done = subprocess.run(_command(params), capture_output=True, text=True, env=_env(**env))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((params.parent / "metrics" / "pretrain.json").read_text())


def _pretrain_runs(root: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs(
        [client.get_experiment_by_name("wikilm").experiment_id],
        filter_string="tags.`wikilm.stage` = 'pretrain'",
    )


def test_sigkill_then_rerun_resumes_to_the_same_loss_in_the_same_run(trained_workspace):
    root = trained_workspace.root
    sections = {
        "model": TINY_MODEL,
        "trainer": CPU_TRAINER,
        # The first checkpoint comes with a validation: the kill follows both.
        "pretrain": {**PRETRAIN, "max_steps": 200, "checkpoint_every": 25, "val_every": 25},
    }
    straight = _pretrain(_project(root, **sections), WIKILM_TRACKING="off")
    straight_weights = (root / "models" / "pretrain" / "model.safetensors").read_bytes()
    (root / "metrics" / "pretrain.json").unlink()
    straight_val = _curve(root / "plots" / "pretrain" / "val.csv")

    params = _project(root, **sections)
    checkpoint = trained_workspace.checkpoint_dir("pretrain") / "last.ckpt"
    process = subprocess.Popen(
        _command(params), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (root / "metrics" / "pretrain.json").exists()
    state = json.loads((checkpoint.parent / STATE_FILE).read_text())

    resumed = _pretrain(params)
    assert resumed["resumed_from_step"] > 0
    assert resumed["steps"] == straight["steps"] == 200
    assert resumed["val_loss"] == pytest.approx(straight["val_loss"], abs=1e-4)
    # The checkpoint holds all the state: the resumed run ends with the very same weights.
    assert (root / "models" / "pretrain" / "model.safetensors").read_bytes() == straight_weights
    runs = _pretrain_runs(root)
    assert [r.info.run_id for r in runs] == [state["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["wikilm.resumed"] == "1"
    # The loss curves span the whole run, before and after the kill.
    train = (root / "plots" / "pretrain" / "train.csv").read_text().splitlines()
    assert len(train) == 1 + 200 // 5
    resumed_val = _curve(root / "plots" / "pretrain" / "val.csv")
    assert [row["step"] for row in resumed_val] == [str(s) for s in range(25, 201, 25)]
    for before, after in zip(straight_val, resumed_val, strict=True):
        assert float(after["loss"]) == pytest.approx(float(before["loss"]), abs=1e-4)


def _curve(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_ddp_on_two_cpu_processes(trained_workspace):
    root = trained_workspace.root
    params = _project(
        root,
        model=TINY_MODEL,
        trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
        pretrain={**PRETRAIN, "max_steps": 4, "val_every": 2},
    )
    done = subprocess.run(_command(params), capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((root / "metrics" / "pretrain.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["tokens_seen"] == 4 * 2 * 8 * 32
    # Ranks read different windows: all 16 windows of the first step are distinct.
    assert metrics["first_batch_windows"] == 16
    assert metrics["first_batch_distinct"] == 16
    # Only the first rank records, writes and narrates.
    assert len(_pretrain_runs(root)) == 1
    assert done.stderr.count("pretrain finished") == 1
    assert done.stderr.count("pretrain: val loss") == 1
    assert (root / "models" / "pretrain" / "model.safetensors").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without")
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"accelerator": "gpu"}, "trainer: No supported gpu backend found"),
        ({"strategy": "fsdp"}, "trainer: The strategy `fsdp` requires a GPU accelerator"),
    ],
)
def test_settings_that_need_a_gpu_are_config_errors_without_one(setting, message):
    from components.model.params import TrainerParams
    from components.model.training import make_trainer

    with pytest.raises(ConfigError, match=message):
        make_trainer(TrainerParams(**setting), [])


@pytest.mark.skipif(torch.cuda.is_available(), reason="Lightning substitutes bf16 on CPUs only")
def test_the_precision_reported_is_the_one_that_ran(trained_workspace):
    params = make_params(
        model=TINY_MODEL,
        trainer={**CPU_TRAINER, "precision": "16-mixed"},
        pretrain={**PRETRAIN, "max_steps": 4, "val_every": 2, "checkpoint_every": 2},
    )
    assert run(params, trained_workspace).precision == "bf16-mixed"
