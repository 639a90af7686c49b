import os
import subprocess
import sys

import pytest

from components.stages import STAGE_MODULES
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
    assert capsys.readouterr().out.split() == list(STAGE_MODULES)


def test_unknown_stage_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["stage", "nope"])
    assert stopped.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_params_exit_2_with_every_key_path(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("clean:\n  min_words: 0\n  typo: 1\ningest:\n  workers: -2\n")
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "stage", "clean", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "clean.min_words" in done.stderr
    assert "clean.typo" in done.stderr
    assert "ingest.workers" in done.stderr
    assert not (tmp_path / "data").exists()  # rejected before any work
    assert "Traceback" not in done.stderr


def test_missing_upstream_is_one_line_exit_1(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    done = subprocess.run(
        [sys.executable, "-m", "components", "clean", "--params", str(params)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: clean:")
    assert "dvc repro ingest" in lines[-1]
    assert "Traceback" not in done.stderr


def _write_metrics(root, stage, data):
    from components.artifacts import write_json

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


def test_run_outside_a_dvc_project_fails_and_marks_the_pipeline_run(tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WIKILM_TRACKING", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("{}\n")
    assert main(["run", "--params", str(tmp_path / "params.yaml")]) == 1
    assert "error: run: dvc repro failed" in capsys.readouterr().err
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("wikilm").experiment_id])
    assert run.data.tags["wikilm.stage"] == "pipeline"
    assert run.info.status == "FAILED"
    assert "WIKILM_PARENT_RUN_ID" not in os.environ
