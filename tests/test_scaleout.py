"""Scale-out training: the trainer settings, the launchers, and the examples in infra/.

Three parts. The ``trainer:`` settings reach Lightning as written, and settings that this
machine or its launcher cannot run fail before any work. Pretraining runs on two CPU
processes under the launchers the examples use (torchrun across two "nodes", as the
Kubernetes Job does; srun's variables, as the sbatch script does) and gives the same model
under both. The examples (infra/k8s, infra/slurm) are parsed and held to each other, to
prefect.yaml, the images and the stage commands; the sbatch script is run with a stand-in
``srun``. No cluster is needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from dockerfile_parse import DockerfileParser
from lightning_fabric.plugins.environments import (
    LightningEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy
from safetensors.torch import load_file
from torch.distributed.run import get_args_parser

from components.cli import run_stage_in_process
from components.core.errors import ConfigError
from components.core.paths import Paths
from components.model.model_io import load_classifier, load_gpt
from components.model.params import TrainerParams
from components.model.pretrain import final_validation
from components.model.token_data import WindowSpec
from components.model.training import make_trainer
from components.params import load_params, parse_params
from components.stages import STAGES
from flows.cli import build_parser
from tests.conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
SBATCH = INFRA / "slurm" / "pretrain.sbatch"
BIN = Path(sys.executable).parent
# What a launcher sets; cleared around each test so that none leaks in from the machine.
LAUNCHER_VARIABLES = re.compile(
    r"^(SLURM_\w+|TORCHELASTIC_\w+|RANK|LOCAL_RANK|GROUP_RANK|NODE_RANK|WORLD_SIZE|"
    r"LOCAL_WORLD_SIZE|ROLE_RANK|ROLE_WORLD_SIZE|GROUP_WORLD_SIZE|MASTER_ADDR|MASTER_PORT)$"
)


@pytest.fixture
def launcher_env(monkeypatch):
    """Set launcher variables for one test; the environment is restored whole afterwards.

    Lightning writes some variables itself (MASTER_ADDR, MASTER_PORT), hence the snapshot.
    """
    saved = dict(os.environ)
    for name in [n for n in os.environ if LAUNCHER_VARIABLES.match(n)]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WIKILM_TRACKING", raising=False)

    def launch(variables: dict) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, str(value))

    yield launch
    os.environ.clear()
    os.environ.update(saved)


def _torchrun(world: int, rank: int = 0, local_world: int = 1) -> dict:
    return {
        "TORCHELASTIC_RUN_ID": "test",
        "WORLD_SIZE": world,
        "RANK": rank,
        "LOCAL_RANK": rank % local_world,
        "GROUP_RANK": rank // local_world,
        "LOCAL_WORLD_SIZE": local_world,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": 29500,
    }


def _srun(tasks_per_node: int, nodes: int, rank: int = 0) -> dict:
    return {
        "SLURM_JOB_ID": 4242,
        "SLURM_JOB_NAME": "wikilm-pretrain",
        "SLURM_NTASKS": tasks_per_node * nodes,
        "SLURM_NTASKS_PER_NODE": tasks_per_node,
        "SLURM_NNODES": nodes,
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_PROCID": rank,
        "SLURM_LOCALID": rank % tasks_per_node,
        "SLURM_NODEID": rank // tasks_per_node,
    }


# --- the trainer section reaches Lightning ------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "message"),
    [
        ("cpu", "trainer.strategy: fsdp runs on CUDA GPUs only"),
        ("mps", "with accelerator: mps); set accelerator: gpu, or strategy: ddp"),
    ],
)
def test_fsdp_off_cuda_is_a_params_error(accelerator, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params({"trainer": {"strategy": "fsdp", "accelerator": accelerator}})
    assert parse_params({"trainer": {"strategy": "fsdp", "accelerator": "gpu"}})


@pytest.mark.parametrize(
    ("trainer", "launcher", "strategy", "environment", "devices", "nodes"),
    [
        ({"devices": 1}, {}, SingleDeviceStrategy, None, 1, 1),
        ({"devices": 1, "strategy": "ddp"}, {}, DDPStrategy, LightningEnvironment, 1, 1),
        ({"devices": 2, "strategy": "ddp"}, {}, DDPStrategy, LightningEnvironment, 2, 1),
        ({"devices": 2}, {}, DDPStrategy, LightningEnvironment, 2, 1),  # auto: ddp
        (
            {"devices": 2, "num_nodes": 2, "strategy": "ddp"},
            _torchrun(world=4, rank=3, local_world=2),
            DDPStrategy,
            TorchElasticEnvironment,
            2,
            2,
        ),
        (
            {"devices": 1, "num_nodes": 2},  # auto: ddp across nodes
            _torchrun(world=2),
            DDPStrategy,
            TorchElasticEnvironment,
            1,
            2,
        ),
        (
            {"devices": 2, "num_nodes": 2, "strategy": "ddp"},
            _srun(tasks_per_node=2, nodes=2, rank=1),
            DDPStrategy,
            SLURMEnvironment,
            2,
            2,
        ),
        (
            {"devices": 2, "num_nodes": 2, "strategy": "ddp"},
            {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": 29500, "NODE_RANK": 1},
            DDPStrategy,
            LightningEnvironment,
            2,
            2,
        ),
    ],
)
def test_devices_nodes_and_strategy_reach_the_trainer(
    launcher_env, trainer, launcher, strategy, environment, devices, nodes
):
    launcher_env(launcher)
    built = make_trainer(TrainerParams(accelerator="cpu", **trainer), [])
    assert type(built.strategy) is strategy
    cluster = getattr(built.strategy, "cluster_environment", None)
    assert (type(cluster) if cluster is not None else None) is environment
    assert (built.num_devices, built.num_nodes) == (devices, nodes)
    assert built.world_size == devices * nodes


@pytest.mark.parametrize(
    ("trainer", "launcher", "message"),
    [
        (
            {"devices": 1},
            _torchrun(world=4),
            "trainer.devices x trainer.num_nodes is 1 x 1 = 1 processes, but torchrun started 4",
        ),
        (
            {"devices": 2, "num_nodes": 2, "strategy": "ddp"},
            _torchrun(world=2),
            "is 2 x 2 = 4 processes, but torchrun started 2",
        ),
        (
            {"devices": 2, "num_nodes": 1, "strategy": "ddp"},
            _srun(tasks_per_node=1, nodes=4),
            "is 2 x 1 = 2 processes, but srun started 4",
        ),
        (
            {"devices": 2, "num_nodes": 2, "strategy": "ddp"},
            {**_srun(tasks_per_node=2, nodes=2), "SLURM_NTASKS_PER_NODE": 4, "SLURM_NNODES": 1},
            "trainer: You set `devices=2` in Lightning, but the number of tasks per node",
        ),
        (
            {"devices": 1, "num_nodes": 2, "strategy": "ddp"},
            {},
            "trainer.num_nodes: 2 nodes need a launcher on every node (torchrun, srun",
        ),
        (
            {"devices": 1, "num_nodes": 2, "strategy": "ddp"},
            {"MASTER_ADDR": "10.0.0.1"},  # no NODE_RANK: every node would think it is node 0
            "trainer.num_nodes: 2 nodes need a launcher",
        ),
    ],
)
def test_settings_the_launcher_contradicts_are_refused(launcher_env, trainer, launcher, message):
    launcher_env(launcher)
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_trainer(TrainerParams(accelerator="cpu", **trainer), [])


def test_the_refusal_comes_before_the_stage_records_or_touches_anything(launcher_env, tmp_path):
    launcher_env({})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"trainer": {"accelerator": "cpu", "num_nodes": 2}}))
    with pytest.raises(ConfigError, match="trainer.num_nodes: 2 nodes need a launcher"):
        run_stage_in_process("pretrain", params)
    # No MLflow store, run or checkpoint folder: the stage never started.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# --- pretraining under the examples' launchers, on CPUs -----------------------------------

PRETRAIN = {
    "batch_size": 8,
    "max_steps": 4,
    "warmup_steps": 1,
    "lr": 1e-2,
    "min_lr": 1e-3,
    "val_every": 2,
    "val_batches": 4,
    "checkpoint_every": 2,
    "log_every": 2,
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _workspace(root: Path, tokens: Path, **trainer) -> Path:
    shutil.copytree(tokens, root / "data" / "tokens")
    params = root / "params.yaml"
    sections = {"model": TINY_MODEL, "trainer": {"accelerator": "cpu", **trainer}}
    params.write_text(yaml.safe_dump({**sections, "pretrain": PRETRAIN}))
    return params


def _clean_env(store: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not LAUNCHER_VARIABLES.match(k)}
    env.pop("WIKILM_TRACKING", None)
    # One tracking store for the whole test, as a team's server would be (and created once).
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    return {**env, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in extra.items()}}


def _wait(processes: list[subprocess.Popen]) -> list[str]:
    """Every process's stderr, once all ended with exit code 0."""
    errors = []
    for process in processes:
        _, stderr = process.communicate(timeout=180)
        errors.append(stderr)
        assert process.returncode == 0, stderr[-3000:]
    return errors


def _torchrun_two_nodes(params: Path, store: Path) -> list[str]:
    """Two torchrun agents, one per "node", one process each: the Kubernetes Job's launch."""
    port = _free_port()
    common = ["--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1"]
    stage = [str(BIN / "wikilm"), "stage", "pretrain", "--params", str(params)]
    processes = [
        subprocess.Popen(
            [str(BIN / "torchrun"), *common, f"--master-port={port}", f"--node-rank={node}"]
            + ["--no-python", *stage],
            cwd=params.parent,
            env=_clean_env(store),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    return _wait(processes)


def _srun_two_tasks(params: Path, store: Path) -> list[str]:
    """Two tasks with the variables srun gives them (one node, --ntasks-per-node=2)."""
    port = _free_port()
    processes = [
        subprocess.Popen(
            [str(BIN / "wikilm"), "stage", "pretrain", "--params", str(params)],
            cwd=params.parent,
            env=_clean_env(store, **_srun(tasks_per_node=2, nodes=1, rank=rank), MASTER_PORT=port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    return _wait(processes)


def _pretrain_runs(store: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    return client.search_runs(
        [client.get_experiment_by_name("wikilm").experiment_id],
        filter_string="tags.`wikilm.stage` = 'pretrain'",
    )


def test_torchrun_across_two_nodes_and_srun_train_the_same_model(tmp_path, token_corpus):
    store = tmp_path / "mlflow.db"
    launched = {
        "torchrun": _torchrun_two_nodes(
            _workspace(tmp_path / "torchrun", token_corpus, devices=1, num_nodes=2), store
        ),
        "srun": _srun_two_tasks(
            _workspace(tmp_path / "srun", token_corpus, devices=2, strategy="ddp"), store
        ),
    }
    # Global rank 0 of each execution records one run; the other rank records nothing.
    runs = _pretrain_runs(store)
    assert len(runs) == len(launched)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["trainer.num_nodes"] for r in runs} == {"1", "2"}
    metrics = {}
    for name, (first, second) in launched.items():
        root = tmp_path / name
        metrics[name] = json.loads((root / "metrics" / "pretrain.json").read_text())
        assert metrics[name]["world_size"] == 2
        assert metrics[name]["steps"] == 4
        assert metrics[name]["tokens_seen"] == 4 * 2 * 8 * 32  # steps x ranks x batch x block
        assert metrics[name]["first_batch_distinct"] == metrics[name]["first_batch_windows"] == 16
        # Global rank 0 narrates and writes; rank 1 trains and stays quiet.
        assert first.count("pretrain finished") == 1
        assert " INFO " not in second
        assert not (root / "checkpoints" / "pretrain").exists()  # removed once done
        model = load_gpt(root / "models" / "pretrain")
        assert model.config.n_embd == TINY_MODEL["overrides"]["n_embd"]
    # Same seeds, same windows per rank, same all-reduced steps: the same model either way.
    assert metrics["torchrun"]["val_loss"] == pytest.approx(metrics["srun"]["val_loss"], abs=1e-5)
    weights = [load_file(tmp_path / n / "models/pretrain/model.safetensors") for n in launched]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        torch.testing.assert_close(tensor, weights[1][name], rtol=0, atol=1e-5, msg=name)


def _stage(stage: str, params: Path, store: Path) -> subprocess.CompletedProcess:
    """``stage`` run as DVC runs it, exit code 0 required."""
    done = subprocess.run(
        [sys.executable, "-m", "components", stage, "--params", str(params)],
        env=_clean_env(store),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Lightning's FSDP needs CUDA devices")
def test_fsdp_on_the_gpus_writes_the_whole_trained_model(tmp_path, token_corpus):
    gpus = torch.cuda.device_count()
    trainer = {"accelerator": "gpu", "devices": gpus, "strategy": "fsdp", "precision": "32-true"}
    params = _workspace(tmp_path, token_corpus, **trainer)
    _stage("pretrain", params, tmp_path / "mlflow.db")
    metrics = json.loads((tmp_path / "metrics" / "pretrain.json").read_text())
    assert metrics["world_size"] == gpus
    # Whole tensors, not one rank's shards, and the weights the stage scored.
    model = load_gpt(tmp_path / "models" / "pretrain")
    fresh = type(model)(model.config).state_dict()
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in fresh.items()
    }
    spec = WindowSpec(model.config.block_size, PRETRAIN["batch_size"], 1337)
    tokens = tmp_path / "data" / "tokens"
    loss = final_validation(model, tokens, spec, PRETRAIN["val_batches"], torch.device("cuda"))
    assert loss == pytest.approx(metrics["val_loss"], abs=1e-4)
    # Fine-tuning under the same settings keeps a whole classifier per GPU.
    sections = yaml.safe_load(params.read_text())
    finetune = {"dataset": "builtin:polarity", "max_epochs": 2}
    params.write_text(yaml.safe_dump({**sections, "finetune": finetune}))
    done = _stage("finetune", params, tmp_path / "mlflow.db")
    assert "keeps a whole copy per device (ddp)" in done.stderr
    assert load_classifier(tmp_path / "models" / "finetune")[1]["labels"] == ["neg", "pos"]


# --- the examples: infra/k8s and infra/slurm ----------------------------------------------


def _documents() -> list[dict]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return documents


DOCUMENTS = _documents()


def _one(kind: str, name: str) -> dict:
    (found,) = [d for d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _image_tags() -> dict[str, str]:
    """The images infra/ builds: compose's tag for infra/Dockerfile, the CUDA file's tag."""
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    (cpu,) = {s["image"] for s in compose["services"].values() if "build" in s}
    (cuda,) = re.findall(r"-t (\S+) \.$", (INFRA / "Dockerfile.cuda").read_text(), re.M)
    return {"Dockerfile": cpu, "Dockerfile.cuda": cuda}


def _workdir(dockerfile: str) -> str:
    with (INFRA / dockerfile).open("rb") as handle:
        structure = DockerfileParser(fileobj=handle).structure
    return [i["value"] for i in structure if i["instruction"] == "WORKDIR"][-1]


def _sbatch_options() -> dict[str, str]:
    lines = re.findall(r"^#SBATCH\s+--([\w-]+)=(\S+)", SBATCH.read_text(), re.M)
    return dict(lines)


def _expand(argument: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], argument)


def _job_launch() -> tuple:
    """The Job's torchrun options and the wikilm arguments it runs (as pod 0)."""
    container = _container(_one("Job", "wikilm-pretrain"))
    env = {"NODE_RANK": "0"}
    args = [_expand(a, env) for a in container["command"][1:] + container["args"]]
    assert container["command"][0] == "torchrun"
    torchrun = get_args_parser().parse_args(args)
    assert torchrun.no_python
    assert torchrun.training_script == "wikilm"
    return torchrun, build_parser().parse_args(torchrun.training_script_args)


def _nodes_and_processes(torchrun) -> tuple[int, int]:
    """The --nnodes and --nproc-per-node of torchrun (strings: ranges and "gpu" are valid)."""
    return int(torchrun.nnodes), int(torchrun.nproc_per_node)


def _job_params():
    (params,) = _one("ConfigMap", "wikilm-pretrain-params")["data"].values()
    return parse_params(yaml.safe_load(params), "the Job's ConfigMap")


def test_the_manifests_are_the_worker_the_volume_and_the_job():
    kinds = sorted((d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in DOCUMENTS)
    assert kinds == [
        ("apps/v1", "Deployment", "wikilm-worker"),
        ("batch/v1", "Job", "wikilm-pretrain"),
        ("v1", "ConfigMap", "wikilm-pretrain-params"),
        ("v1", "PersistentVolumeClaim", "wikilm-workspace"),
        ("v1", "Service", "wikilm-pretrain"),
    ]
    assert _one("PersistentVolumeClaim", "wikilm-workspace")["spec"]["accessModes"] == [
        "ReadWriteMany"  # the Job's pods on several nodes share it
    ]


def test_the_worker_serves_prefect_yamls_pool_from_the_cpu_image():
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    container = _container(_one("Deployment", "wikilm-worker"))
    command = container["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] in {d["work_pool"]["name"] for d in deployments}
    assert command[command.index("--type") + 1] == "process"
    assert container["image"].rsplit("/", 1)[-1] == _image_tags()["Dockerfile"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WIKILM_HOME"]["value"] == _workdir("Dockerfile")  # prefect.yaml's checkout
    assert {
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    } <= set(env)


def test_the_job_runs_the_pretrain_stage_with_torchrun_on_the_cuda_image():
    job = _one("Job", "wikilm-pretrain")
    container = _container(job)
    assert container["image"].rsplit("/", 1)[-1] == _image_tags()["Dockerfile.cuda"]
    assert container["workingDir"] == _workdir("Dockerfile.cuda")
    _, wikilm = _job_launch()
    assert (wikilm.command, wikilm.stage) == ("stage", "pretrain")
    assert wikilm.stage in STAGES
    # --params names the ConfigMap's file, mounted where the stage's paths are anchored.
    params_at = Path(container["workingDir"]) / wikilm.params
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == params_at]
    pod = job["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "wikilm-pretrain-params"
    assert mount["subPath"] in _one("ConfigMap", "wikilm-pretrain-params")["data"]


def test_every_folder_the_stage_uses_is_on_the_shared_volume():
    job = _one("Job", "wikilm-pretrain")
    container = _container(job)
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    shared = [Path(m["mountPath"]) for m in container["volumeMounts"] if m["name"] in claims]
    paths = Paths.resolve(_job_params().paths, Path(container["workingDir"]))
    for folder in (paths.tokens, paths.pretrain, paths.checkpoints, paths.metrics, paths.plots):
        assert any(folder.is_relative_to(mount) for mount in shared), folder


def test_the_jobs_pods_gpus_and_torchrun_agree_with_its_params():
    job = _one("Job", "wikilm-pretrain")
    spec, container = job["spec"], _container(job)
    torchrun, _ = _job_launch()
    trainer = _job_params().trainer
    assert spec["completionMode"] == "Indexed"
    nodes, processes = _nodes_and_processes(torchrun)
    assert spec["completions"] == spec["parallelism"] == nodes == trainer.num_nodes
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == processes == trainer.devices
    assert trainer.num_nodes > 1
    assert (trainer.accelerator, trainer.strategy) == ("gpu", "ddp")
    # Each pod's torchrun gets its index as node rank; pod 0 is the master, by the
    # headless Service's name for it.
    (rank,) = [e for e in container["env"] if f"$({e['name']})" in " ".join(container["args"])]
    field = rank["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    service = _one("Service", "wikilm-pretrain")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    assert torchrun.master_addr == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert torchrun.master_port in {p["port"] for p in service["spec"]["ports"]}


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|_KEY$")


def _credentials_example() -> dict[str, str]:
    lines = (K8S / "credentials.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_credentials_come_only_from_the_secret():
    example = _credentials_example()
    for document in DOCUMENTS:
        if document["kind"] not in {"Deployment", "Job"}:
            continue
        for item in _container(document)["env"]:
            reference = item.get("valueFrom", {}).get("secretKeyRef")
            if SECRET_NAME.search(item["name"]) or item["name"].startswith("MLFLOW_TRACKING_"):
                assert reference is not None, f"{item['name']} is not read from the Secret"
            if reference is not None:
                assert reference["name"] == "wikilm-credentials"
                assert reference["key"] in example  # documented in the example file
    # The example holds no secret values, and no value of the compose example is reused.
    assert all(not v for k, v in example.items() if SECRET_NAME.search(k)), example
    lines = (INFRA / ".env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    secrets = [v for k, v in pairs if "PASSWORD" in k or "SECRET" in k]
    files = [*K8S.iterdir(), SBATCH]
    for value in filter(None, secrets):
        assert not any(value in path.read_text() for path in files), value
    assert not any(d["kind"] == "Secret" for d in DOCUMENTS)  # created by hand, never applied


def _run_sbatch(tmp_path: Path, options: dict[str, str]) -> tuple[list[str], dict]:
    """Run the script as sbatch would, with a stand-in srun that records what it ran."""
    bin_dir, checkout = tmp_path / "bin", tmp_path / "checkout"
    bin_dir.mkdir()
    checkout.mkdir()
    shutil.copy(REPO / "params.yaml", checkout / "params.yaml")
    record = tmp_path / "srun"
    (bin_dir / "srun").write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n'
        'for last; do :; done\ncp "$last" "$RECORD.params"\n'  # the job removes its params
    )
    (bin_dir / "srun").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{BIN}:/usr/bin:/bin",
        "RECORD": str(record),
        "SLURM_SUBMIT_DIR": str(checkout),
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS_PER_NODE": options["ntasks-per-node"],
        "SLURM_JOB_NUM_NODES": options["nodes"],
    }
    subprocess.run(["bash", str(SBATCH)], env=env, check=True, timeout=60)
    assert sorted(p.name for p in checkout.iterdir()) == ["params.yaml"]  # cleaned up
    return record.read_text().splitlines(), yaml.safe_load(Path(f"{record}.params").read_text())


@pytest.mark.parametrize(
    "override",
    [{}, {"nodes": "3", "ntasks-per-node": "8", "gpus-per-node": "8"}],
    ids=["as-written", "sbatch-command-line"],
)
def test_the_sbatch_script_runs_the_stage_on_one_task_per_gpu(tmp_path, override):
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    written_options = _sbatch_options()
    assert written_options["ntasks-per-node"] == written_options["gpus-per-node"]  # per GPU
    # The allocation SLURM grants: the #SBATCH lines, or what `sbatch --nodes=...` overrides.
    options = {**written_options, **override}
    srun, written = _run_sbatch(tmp_path, options)
    assert srun[: srun.index("wikilm")] == ["--kill-on-bad-exit=1"]
    wikilm = build_parser().parse_args(srun[srun.index("wikilm") + 1 :])
    assert (wikilm.command, wikilm.stage) == ("stage", "pretrain")
    assert wikilm.stage in STAGES
    params = parse_params(written)
    # Lightning's SLURMEnvironment: devices = --ntasks-per-node, num_nodes = --nodes.
    assert params.trainer.devices == int(options["ntasks-per-node"])
    assert params.trainer.num_nodes == int(options["nodes"]) > 1
    assert (params.trainer.accelerator, params.trainer.strategy) == ("gpu", "ddp")
    # Everything else is the checkout's params.yaml.
    checkout = load_params(REPO / "params.yaml")
    assert params.model_dump(exclude={"trainer"}) == checkout.model_dump(exclude={"trainer"})
    scale_out = {"accelerator", "strategy", "devices", "num_nodes"}
    assert params.trainer.model_dump(exclude=scale_out) == checkout.trainer.model_dump(
        exclude=scale_out
    )


def test_the_job_and_the_sbatch_script_scale_out_alike():
    options = _sbatch_options()
    torchrun, _ = _job_launch()
    assert _nodes_and_processes(torchrun) == (
        int(options["nodes"]),
        int(options["gpus-per-node"]),
    )
