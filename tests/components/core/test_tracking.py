import pytest
from mlflow import MlflowClient

from components.cli import run_stage_in_process
from components.core.artifacts import build_meta, write_json
from components.core.tracking import (
    EXPERIMENT,
    NullTracker,
    active_tracker,
    flatten,
    fluent_tracking,
    numeric,
    stage_run,
)
from components.core.tracking_server import tracking_uri
from components.data.documents import Document
from tests.corpora import write_documents

TEXT = (
    "The town lies on the bank of the river, with a market that has been held there every "
    "week since the middle ages. It was founded by farmers who came to the valley with their "
    "families and built the first houses of stone, and in the nineteenth century a railway "
    "reached it and the town grew quickly along the river."
)


@pytest.fixture(autouse=True)
def embedded_store(monkeypatch):
    """Each test uses the default embedded store of its own folder, with no parent run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WIKILM_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("WIKILM_TRACKING", raising=False)


def _runs(root):
    client = MlflowClient(tracking_uri=tracking_uri(root))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id])


def test_flatten_and_numeric():
    flat = flatten({"a": 1, "b": {"c": 2.5, "d": {"e": "x"}}, "f": True})
    assert flat == {"a": 1, "b.c": 2.5, "b.d.e": "x", "f": True}
    assert numeric(flat) == {"a": 1.0, "b.c": 2.5, "f": 1.0}


def test_stage_run_records_and_finishes(workspace):
    with stage_run("ingest", workspace, {"workers": 1}) as tracker:
        tracker.log_params({"workers": 1})
        tracker.log_metrics({f"m{i}": i for i in range(250)})
    client, (run,) = _runs(workspace.root)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"workers": "1"}
    assert len(run.data.metrics) == 250
    assert run.data.tags["wikilm.stage"] == "ingest"
    assert "wikilm.git_commit" in run.data.tags
    assert len(run.data.tags["wikilm.params_digest"]) == 16
    assert (workspace.root / "mlflow.db").is_file()


def test_artifacts_stay_beside_a_sqlite_store_whatever_the_directory(
    workspace, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # Registration runs inside fluent_tracking, which exports MLFLOW_TRACKING_URI.
    with fluent_tracking(tracking_uri(workspace.root)), stage_run("register", workspace, {}):
        pass
    client, _ = _runs(workspace.root)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == (workspace.root / "mlartifacts").as_uri()
    assert not (elsewhere / "mlruns").exists()


def test_failed_stage_marks_the_run_failed(workspace):
    with pytest.raises(RuntimeError), stage_run("clean", workspace, {}):
        raise RuntimeError("boom")
    _, (run,) = _runs(workspace.root)
    assert run.info.status == "FAILED"


def test_parent_run_from_the_environment(workspace, monkeypatch):
    client = MlflowClient(tracking_uri=tracking_uri(workspace.root))
    with stage_run("ingest", workspace, {}) as first:
        pass
    monkeypatch.setenv("WIKILM_PARENT_RUN_ID", first.run_id)
    with stage_run("clean", workspace, {}) as child:
        pass
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == first.run_id


def test_switched_off_records_nothing(workspace, monkeypatch):
    monkeypatch.setenv("WIKILM_TRACKING", "off")
    with stage_run("ingest", workspace, {}) as tracker:
        assert isinstance(tracker, NullTracker)
    assert not (workspace.root / "mlflow.db").exists()


def test_run_stage_logs_params_metrics_lineage_and_artifacts(tmp_path):
    (tmp_path / "params.yaml").write_text("clean:\n  workers: 1\n  min_words: 20\n")
    ingest = tmp_path / "data" / "ingest"
    write_documents(ingest, [Document(i, f"T{i}", f"{TEXT} Number {i}.") for i in range(3)])
    write_json(
        ingest / "meta.json",
        build_meta("ingest", {}, {"dump_sha1": "abc"}, dump="x-pages-articles.xml"),
    )
    run_stage_in_process("clean", tmp_path / "params.yaml")
    client, (run,) = _runs(tmp_path)
    assert run.data.params["min_words"] == "20"
    assert run.data.params["dedup.threshold"] == "0.8"
    assert run.data.params["data.engine"] == "local"  # where the work ran (components.stages)
    assert run.data.metrics["documents_out"] == 1.0  # three near-identical texts
    assert run.data.tags["wikilm.dump"] == "x-pages-articles.xml"
    assert run.data.tags["wikilm.dump_sha1"] == "abc"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"clean.json", "meta.json"}


def test_resume_continues_the_named_run_and_counts_resumptions(workspace):
    client = MlflowClient(tracking_uri=tracking_uri(workspace.root))
    with pytest.raises(KeyboardInterrupt), stage_run("pretrain", workspace, {}) as first:
        raise KeyboardInterrupt
    assert client.get_run(first.run_id).info.status == "KILLED"
    with stage_run("pretrain", workspace, {}, resume=first.run_id) as again:
        assert active_tracker() is again
    assert again.run_id == first.run_id
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["wikilm.resumed"] == "1"
    assert isinstance(active_tracker(), NullTracker)  # reset when the block ends


@pytest.mark.parametrize("resume", ["no-such-run", "other-stage"])
def test_resume_of_an_unusable_run_starts_a_new_one(workspace, resume):
    with stage_run("clean", workspace, {}) as other:
        pass
    name = other.run_id if resume == "other-stage" else resume
    with stage_run("pretrain", workspace, {}, resume=name) as tracker:
        pass
    assert tracker.run_id not in {name, None}


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"])
def test_only_the_first_process_of_a_distributed_run_records(workspace, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with stage_run("pretrain", workspace, {}) as tracker:
        assert isinstance(tracker, NullTracker)
    assert not (workspace.root / "mlflow.db").exists()
