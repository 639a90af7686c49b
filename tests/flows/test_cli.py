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
