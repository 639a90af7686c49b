import json
import os
import subprocess
import sys

import pytest

from components.stages import STAGES
from flows.cli import main


def test_help_lists_commands_with_an_example(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0
    assert "stage" in out
    assert "example: wikilm" in out


def test_stage_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["stage", "--help"])
    assert "example: wikilm stage" in capsys.readouterr().out


def test_stages_lists_the_registry_in_order(capsys):
    assert main(["stages"]) == 0
    assert capsys.readouterr().out.split() == list(STAGES)


def test_unknown_stage_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["stage", "nope"])
    assert stopped.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _run(*command: str) -> subprocess.CompletedProcess:
    """``python -m <command>`` in a subprocess, as DVC and users run it."""
    return subprocess.run(
        [sys.executable, "-m", *command], capture_output=True, text=True, check=False
    )


def test_bad_params_exit_2_with_every_key_path(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("clean:\n  min_words: 0\n  typo: 1\ningest:\n  workers: -2\n")
    done = _run("flows.cli", "stage", "clean", "--params", str(params))
    assert done.returncode == 2
    assert "clean.min_words" in done.stderr
    assert "clean.typo" in done.stderr
    assert "ingest.workers" in done.stderr
    assert not (tmp_path / "data").exists()  # rejected before any work
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("paths", "named"),
    [("ingest: .", "paths.ingest"), ("clean: data", "paths.clean")],
    ids=["project-folder", "holds-other-outputs"],
)
def test_an_output_path_that_would_delete_other_files_is_refused(tmp_path, paths, named):
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  {paths}\n")
    keep = [tmp_path / "notes.txt", tmp_path / "data" / "downloads" / "dump.xml.bz2"]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("precious")
    done = _run("components", "ingest", "--params", str(params))
    assert done.returncode == 2
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert all(path.read_text() == "precious" for path in keep)
    assert params.exists()


def test_missing_upstream_is_one_line_exit_1(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    done = _run("components", "clean", "--params", str(params))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: clean:")
    assert "dvc repro ingest" in lines[-1]
    assert "Traceback" not in done.stderr


def _write_metrics(root, stage, data):
    from components.core.artifacts import write_json

    write_json(root / "metrics" / f"{stage}.json", data)


def test_summary_prints_one_line_per_stage_with_metrics(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    _write_metrics(tmp_path, "ingest", {"documents": 98, "pages": 206, "dump": "x.xml.bz2"})
    _write_metrics(
        tmp_path,
        "clean",
        {"documents_in": 98, "documents_out": 95, "rejected": {"too_few_words": 3}},
    )
    _write_metrics(
        tmp_path,
        "validate",
        {
            "success": False,
            "data_docs": "data_docs/index.html",
            "suites": {"a": {"expectations": 5}, "b": {"expectations": 9}},
        },
    )
    assert main(["summary", "--params", str(tmp_path / "params.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "ingest    98 articles from 206 pages of x.xml.bz2",
        "clean     kept 95 of 98 documents (dropped: too_few_words 3)",
        "validate  FAILED: 14 expectations, report in reports/validate/data_docs/index.html",
    ]


def test_summary_without_metrics_says_what_to_do(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    assert main(["summary", "--params", str(tmp_path / "params.yaml")]) == 1
    assert "run `dvc repro` first" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "summary", "stage"])
def test_every_command_has_help_with_an_example(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert f"example: wikilm {command}" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_run_refuses_an_approval_timeout_that_is_not_positive_seconds(capsys, value):
    with pytest.raises(SystemExit) as stopped:
        main(["run", "--approval-timeout", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"--approval-timeout: '{value}' is not a whole number of seconds above 0" in err


@pytest.mark.parametrize("prefect", [[], ["--no-prefect"]])
def test_run_refuses_a_params_file_the_stages_would_not_read(tmp_path, capsys, prefect):
    other = tmp_path / "experiment.yaml"
    other.write_text("clean:\n  min_words: 80\n")
    assert main(["run", *prefect, "--params", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: run: invalid configuration in {other}: the pipeline's stages read "
        f"{tmp_path / 'params.yaml'}, not this file; edit that one, or try values with "
        "`dvc exp run -S key=value`"
    )


def test_run_under_prefect_without_dvc_yaml_fails_before_starting_a_server(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    assert main(["run", "--params", str(tmp_path / "params.yaml")]) == 1
    err = capsys.readouterr().err
    assert "dvc.yaml not found" in err
    assert "Starting temporary server" not in err


def test_run_outside_a_dvc_project_fails_and_marks_the_pipeline_run(tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WIKILM_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  only:\n    cmd: echo\n")  # no `dvc init`
    assert main(["run", "--no-prefect", "--params", str(tmp_path / "params.yaml")]) == 1
    assert "error: run: dvc repro failed" in capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("wikilm").experiment_id])
    assert run.data.tags["wikilm.stage"] == "pipeline"
    assert run.info.status == "FAILED"
    assert "WIKILM_PARENT_RUN_ID" not in os.environ


@pytest.mark.parametrize(
    "command",
    [
        "approve",
        "reject",
        "promote",
        "history",
        "rollback",
        "predict",
        "generate",
        "serve",
        "deploy",
        "status",
    ],
)
def test_registry_and_serving_commands_have_help_with_an_example(capsys, command):
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    assert f"example: wikilm {command}" in capsys.readouterr().out


def test_champion_commands_answer_and_refusals_are_one_line(
    exported_workspace, capsys, monkeypatch
):
    from components.registry.promotion import register_and_gate
    from tests.conftest import MECHANICS_GATE, make_params

    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    params = exported_workspace.root / "params.yaml"
    params.write_text("promote:\n  approval: manual\n")
    register_and_gate(
        make_params(promote={**MECHANICS_GATE, "approval": "manual"}), exported_workspace
    )
    assert main(["predict", "a fine film", "--params", str(params)]) == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith("error: predict: wikilm-classifier has no champion")
    )
    assert main(["serve", "wikilm-lm", "--params", str(params)]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: serve: wikilm-lm has no champion: `wikilm history wikilm-lm` shows each "
        "decision of the gate and of reviewers (`wikilm run` registers and gates a new version)"
    )
    args = ["approve", "wikilm-classifier", "1", "--comment", "mine", "--params", str(params)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: approve: four-eyes rule")
    assert "\n" not in err
    assert main([*args, "--reviewer", "ana"]) == 0
    assert main(["predict", "a fine film", "a dull film", "--params", str(params)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-2:]
    assert [line.split("\t")[0] in {"neg", "pos"} for line in lines] == [True, True]
    assert lines[0].endswith("\ta fine film")
    main(["status", "--params", str(params)])  # no DVC project here: only the registry part
    status = capsys.readouterr().out.splitlines()
    assert "wikilm-classifier  champion   v1 (gate passed)" in status
    assert "wikilm-lm          champion   -" in status
    assert "wikilm-lm          challenger v1 (gate passed)" in status
    approve_lm = ["approve", "wikilm-lm", "1", "--comment", "ok", "--reviewer", "ana"]
    assert main([*approve_lm, "--params", str(params)]) == 0
    assert main(["generate", "The", "--max-new-tokens", "4", "--params", str(params)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("The")
    wide = ["generate", "The", "--max-new-tokens", "2", "--top-k", "100000"]
    assert main([*wide, "--params", str(params)]) == 0  # capped at the vocabulary


def _promoted(paths, monkeypatch, tmp_path):
    """Both models of ``paths`` registered and promoted; a params file and a model cache."""
    from components.registry.promotion import register_and_gate
    from tests.conftest import MECHANICS_GATE, make_params

    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    monkeypatch.setenv("WIKILM_MODEL_CACHE", str(tmp_path / "cache"))
    register_and_gate(make_params(promote=MECHANICS_GATE), paths)
    params = paths.root / "params.yaml"
    params.write_text("{}\n")
    return params


def test_predict_refuses_a_champion_whose_files_changed_on_the_store(
    exported_workspace, capsys, monkeypatch, tmp_path
):
    from components.registry.store import CHAMPION, CLASSIFIER, Registry

    params = _promoted(exported_workspace, monkeypatch, tmp_path)
    (graph,) = (exported_workspace.root / "mlartifacts").rglob("classifier.onnx")
    graph.write_bytes(graph.read_bytes()[:-1] + b"\0")  # one byte of the registered graph
    assert main(["predict", "a fine film", "--params", str(params)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: predict: wikilm-classifier v1: its files' digest ")
    assert "recorded at registration (wikilm.serving_digest)" in err
    assert "\n" not in err
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
    assert str(Registry(exported_workspace).alias(CLASSIFIER, CHAMPION).version) == "1"


# What `wikilm predict` imports once the champion's files are cached (a fresh interpreter).
IMPORTED = """
import json, sys
from flows.cli import main
code = main(["predict", "a fine film", "--params", sys.argv[1]])
heavy = ("mlflow", "pandas", "torch", "prefect", "sqlalchemy", "lightning")
print(json.dumps({"code": code, "imported": [m for m in heavy if m in sys.modules]}))
"""


def test_predict_from_the_cache_imports_neither_mlflow_nor_pandas(
    exported_workspace, monkeypatch, tmp_path
):
    params = _promoted(exported_workspace, monkeypatch, tmp_path)
    first = _run("flows.cli", "predict", "a fine film", "--params", str(params))
    assert first.returncode == 0, first.stderr
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, str(params)], capture_output=True, text=True, check=False
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == first.stdout.strip()  # the same answer, from the cache
    assert json.loads(lines[-1]) == {"code": 0, "imported": []}


def test_the_flows_package_turns_prefect_telemetry_off_by_itself():
    """Without a network, the server's usage reports fail with an error line every run."""
    code = (
        "import flows; from prefect.settings import get_current_settings as s; "
        "print(s().server.analytics_enabled, s().logging.extra_loggers)"
    )
    env = {"HOME": os.environ["HOME"], "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "['components']"]
