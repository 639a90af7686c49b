"""The Prefect flow on a small DVC project, under one shared Prefect test server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from components.core.errors import ArtifactError, WikilmError
from components.stages import STAGES
from flows.dag import dvc_stages
from flows.pipeline_flow import wikilm_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _stage(cmd: str, outs: list[str], deps: list[str] = ()) -> dict:
    return {"cmd": cmd, "deps": list(deps), "outs": outs}


def _project(root: Path, stages: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "params.yaml").write_text("{}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, check=True, env=env)
    return root / "params.yaml"


WRITE = "python -c \"import pathlib; pathlib.Path('{out}').write_text('{text}')\""


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.setenv("WIKILM_TRACKING", "off")
    return _project(
        tmp_path / "toy",
        {
            "first": _stage(WRITE.format(out="a.txt", text="a"), ["a.txt"]),
            "second": _stage(WRITE.format(out="b.txt", text="b"), ["b.txt"], ["a.txt"]),
        },
    )


def test_the_flow_runs_stages_through_dvc_and_reports_cached_ones(toy):
    first = wikilm_pipeline(params_file=str(toy))
    assert [(s.stage, s.status) for s in first.stages] == [
        ("first", "ran"),
        ("second", "ran"),
    ]
    assert (toy.parent / "b.txt").read_text() == "b"
    lock = (toy.parent / "dvc.lock").read_text()
    assert "first:" in lock
    assert "second:" in lock
    again = wikilm_pipeline(params_file=str(toy))
    assert [s.status for s in again.stages] == ["skipped", "skipped"]
    # DVC sees the flow's work as its own: a plain repro has nothing to do.
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status"], cwd=toy.parent, capture_output=True, text=True
    )
    assert "up to date" in done.stdout


def test_wikilm_run_gives_the_flow_its_approval_timeout(toy, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.cli import main

    monkeypatch.chdir(toy.parent)
    assert main(["run", "--params", str(toy), "--approval-timeout", "45"]) == 0
    with get_client(sync_client=True) as client:
        (latest,) = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert latest.parameters["approval_timeout_s"] == 45
    assert latest.state.is_completed()


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(sort=FlowRunSort.ID_DESC, limit=200))


def _rewrite_second(params: Path, text: str) -> None:
    dvc_yaml = params.parent / "dvc.yaml"
    stages = yaml.safe_load(dvc_yaml.read_text())
    stages["stages"]["second"]["cmd"] = WRITE.format(out="b.txt", text=text)
    dvc_yaml.write_text(yaml.safe_dump(stages, sort_keys=False))


def test_dvc_status_names_the_stale_stages_in_order(toy):
    from flows.dag import stale_stages

    root = toy.parent
    assert stale_stages(root) == ["first", "second"]  # nothing ran yet
    wikilm_pipeline(params_file=str(toy))
    assert stale_stages(root) == []
    _rewrite_second(toy, "c")
    assert stale_stages(root) == ["second"]
    (root / "a.txt").unlink()
    assert stale_stages(root) == ["first", "second"]


def test_stages_before_the_first_stale_one_are_skipped_without_running_dvc(toy):
    wikilm_pipeline(params_file=str(toy))
    _rewrite_second(toy, "c")
    again = wikilm_pipeline(params_file=str(toy))
    assert [(s.stage, s.status, s.seconds) for s in again.stages][0] == (
        "first",
        "skipped",
        0.0,
    )
    assert again.stages[1].status == "ran"
    assert (toy.parent / "b.txt").read_text() == "c"


def test_a_run_with_nothing_to_do_starts_no_flow(toy, monkeypatch, caplog):
    from flows.cli import main

    monkeypatch.chdir(toy.parent)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["run", "--params", str(toy)]) == 0  # the first run has work: a flow run
    runs = _flow_runs()
    with caplog.at_level("INFO", logger="flows.pipeline"):
        assert main(["run", "--params", str(toy)]) == 0
    assert _flow_runs() == runs
    assert "run: every stage is up to date and the export is registered already" in caplog.messages
    _rewrite_second(toy, "c")
    assert main(["run", "--params", str(toy)]) == 0  # work again: the flow runs
    assert _flow_runs() == runs + 1


def test_with_a_prefect_server_set_a_run_with_nothing_to_do_is_recorded_there(toy, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    from flows.cli import main

    monkeypatch.chdir(toy.parent)
    assert main(["run", "--params", str(toy)]) == 0
    runs = _flow_runs()
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    assert main(["run", "--params", str(toy)]) == 0
    assert _flow_runs() == runs + 1


def test_a_failing_stage_fails_the_flow(tmp_path, monkeypatch):
    monkeypatch.setenv("WIKILM_TRACKING", "off")
    params = _project(
        tmp_path / "bad", {"broken": _stage('python -c "raise SystemExit(3)"', ["x"])}
    )
    with pytest.raises(Exception, match="stage broken failed"):
        wikilm_pipeline(params_file=str(params))


def test_a_stage_failing_on_bad_input_fails_once_with_its_own_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WIKILM_TRACKING", "off")
    fail = (
        "python -c \"import sys; open('attempts', 'a').write('x'); "
        "sys.exit('error: ingest: ingest.source: file not found: dumps/typo.xml.bz2')\""
    )
    params = _project(tmp_path / "typo", {"ingest": _stage(fail, ["x"])})
    message = "stage ingest failed: error: ingest: ingest.source: file not found: dumps/typo"
    with pytest.raises(WikilmError, match=message):
        wikilm_pipeline(params_file=str(params))
    assert (params.parent / "attempts").read_text() == "x"  # not retried: it would fail again


@pytest.mark.parametrize(
    ("exit_code", "transient"), [(75, True), (1, False), (2, False), (None, True)]
)
def test_only_transient_stage_failures_are_retried(exit_code, transient):
    from prefect.states import Failed

    from flows.pipeline_flow import _retry_if_transient, stage_failure

    if exit_code is None:  # DVC itself failed, before running the stage
        failure = RuntimeError("dvc crashed")
    else:
        output = (
            "error: ingest: cannot download https://mirror/x.bz2 after 5 attempts: timed out\n"
            f"ERROR: failed to reproduce 'ingest': failed to run: python -m components ingest, "
            f"exited with {exit_code}\n"
        )
        failure = stage_failure("ingest", output, 255)
        assert str(failure) == (
            "stage ingest failed: error: ingest: cannot download https://mirror/x.bz2 after 5 "
            "attempts: timed out"
        )
    assert _retry_if_transient(None, None, Failed(data=failure)) is transient


def test_the_flow_summary_is_published_as_an_artifact(toy):
    from prefect.client.orchestration import get_client

    from flows.pipeline_flow import SUMMARY_ARTIFACT

    wikilm_pipeline(params_file=str(toy))
    with get_client(sync_client=True) as client:
        response = client._client.get(f"/artifacts/{SUMMARY_ARTIFACT}/latest")
    response.raise_for_status()
    artifact = response.json()
    assert artifact["key"] == "wikilm-pipeline-summary"
    assert "| stage | status | seconds | result |" in artifact["data"]
    assert "| first |" in artifact["data"]
    assert "| second |" in artifact["data"]


def test_dvc_yaml_the_stage_registry_and_the_flow_agree():
    assert dvc_stages(REPO) == list(STAGES)


@pytest.mark.parametrize("stage", list(STAGES))
def test_the_stage_table_names_what_each_stage_returns_and_prints(stage):
    import typing

    from components.core.paths import Paths, PathsParams
    from components.stages import stage_line

    entry = STAGES[stage]
    module = entry.load()
    assert typing.get_type_hints(module.run)["return"] is getattr(module, entry.result)
    # The line renders from the metrics the committed run wrote (metrics/<stage>.json).
    metrics = json.loads((REPO / "metrics" / f"{stage}.json").read_text())
    module.__dict__[entry.result].model_validate(metrics)
    assert stage_line(stage, metrics, Paths.resolve(PathsParams(), REPO))


def test_the_flow_retries_a_transient_failure_as_the_stage_table_says(tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setenv("WIKILM_TRACKING", "off")
    monkeypatch.setitem(STAGES, "ingest", replace(STAGES["ingest"], retry_delays_s=(0,)))
    # Unreachable's exit code (75) on the first attempt, success on the second.
    flaky = (
        "python -c \"import pathlib, sys; p = pathlib.Path('attempts'); "
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x'); "
        "pathlib.Path('out').write_text('ok'); sys.exit(75 if p.read_text() == 'x' else 0)\""
    )
    params = _project(tmp_path / "flaky", {"ingest": _stage(flaky, ["out"])})
    wikilm_pipeline(params_file=str(params))
    assert (params.parent / "attempts").read_text() == "xx"


def test_a_stage_listed_before_its_input_is_refused(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {"stages": {"b": _stage("x", ["b"], ["a/part"]), "a": _stage("y", ["a"])}},
            sort_keys=False,
        )
    )
    with pytest.raises(ArtifactError, match="lists 'b' before 'a'"):
        dvc_stages(tmp_path)


def test_deploy_builds_a_cron_deployment_of_the_flow(tmp_path):
    from flows.deploy import build_deployment

    deployment = build_deployment(tmp_path / "params.yaml", "0 3 * * 0")
    assert deployment.flow_name == "wikilm-pipeline"
    assert deployment.parameters == {"params_file": str((tmp_path / "params.yaml").resolve())}
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "0 3 * * 0"
    with pytest.raises(WikilmError, match="--cron 'not a cron': Invalid cron string"):
        build_deployment(tmp_path / "params.yaml", "not a cron")


def test_deploy_builds_an_interval_deployment_and_wants_one_schedule(tmp_path):
    from datetime import timedelta

    from flows.deploy import build_deployment

    (schedule,) = build_deployment(tmp_path / "params.yaml", interval_s=90).schedules
    assert schedule.schedule.interval == timedelta(seconds=90)
    with pytest.raises(WikilmError, match="either --cron or --interval"):
        build_deployment(tmp_path / "params.yaml")
    with pytest.raises(WikilmError, match="either --cron or --interval"):
        build_deployment(tmp_path / "params.yaml", "* * * * *", 60)
    with pytest.raises(WikilmError, match="--interval 0: must be a positive"):
        build_deployment(tmp_path / "params.yaml", interval_s=0)


def test_prefect_yaml_deploys_the_same_flow():
    import importlib

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = config["deployments"]
    module_path, name = deployment["entrypoint"].split(":")
    module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
    assert getattr(module, name) is wikilm_pipeline
    assert set(deployment["parameters"]) <= set(wikilm_pipeline.parameters.properties)


def test_unanswered_approval_forms_leave_both_challengers_pending(exported_workspace, monkeypatch):
    from prefect import flow

    from components.registry.store import APPROVAL_TAG, WAITING_RUN_TAG, Registry
    from flows.approval import await_approval

    paths = exported_workspace
    params, outcomes = _pending(paths, monkeypatch, ("wikilm-classifier", "wikilm-lm"))

    @flow
    def waiting() -> list:
        return await_approval(params, paths, outcomes, timeout_s=2)

    # The second pause follows a timed-out one, and the run still completes.
    assert [o.status for o in waiting()] == ["awaiting approval"] * 2
    for outcome in outcomes:
        tags = Registry(paths).version(outcome.model, outcome.version).tags
        assert tags[APPROVAL_TAG] == "pending"
        assert WAITING_RUN_TAG not in tags  # no run waits for it any more


def test_a_refused_answer_leaves_the_version_pending_and_the_run_going(
    exported_workspace, monkeypatch
):
    from components.registry.store import APPROVAL_TAG, Registry

    paths = exported_workspace
    params, outcomes = _pending_classifier(paths, monkeypatch)
    # The trainer approving its own run: refused by the four-eyes rule.
    form = {"approve": True, "reviewer": "trainer-bot", "comment": "mine is fine"}
    assert _answer_in_the_form(params, paths, outcomes, form)[0].status == "awaiting approval"
    tags = Registry(paths).version("wikilm-classifier", outcomes[0].version).tags
    assert tags[APPROVAL_TAG] == "pending"


def _pending_classifier(paths, monkeypatch) -> tuple:
    """Register the exported models for manual approval; the classifier's outcome row."""
    return _pending(paths, monkeypatch, ("wikilm-classifier",))


def _pending(paths, monkeypatch, models: tuple[str, ...]) -> tuple:
    """Register the exported models for manual approval; the outcome rows of ``models``."""
    from components.registry.promotion import register_and_gate
    from tests.conftest import MECHANICS_GATE, make_params

    for name in ("MLFLOW_TRACKING_URI", "WIKILM_PARENT_RUN_ID", "WIKILM_TRACKING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WIKILM_USER", "trainer-bot")
    params = make_params(promote={**MECHANICS_GATE, "approval": "manual"})
    outcomes = [o for o in register_and_gate(params, paths) if o.model in models]
    return params, outcomes


def test_a_decision_taken_with_the_command_is_reported_without_pausing(
    exported_workspace, monkeypatch
):
    import time

    from prefect import flow

    from components.registry.review import approve
    from flows.approval import await_approval

    paths = exported_workspace
    params, outcomes = _pending_classifier(paths, monkeypatch)
    approve(paths, params, "wikilm-classifier", "1", "ana", "approved from a terminal")

    @flow
    def waiting() -> list:
        started = time.perf_counter()
        decided = await_approval(params, paths, outcomes, timeout_s=120)
        assert time.perf_counter() - started < 60  # it did not wait for the form
        return decided

    assert waiting()[0].status == "approved"


def test_a_latest_run_knows_whether_the_dump_is_new(tmp_path):
    from components.core.artifacts import build_meta, write_json
    from components.core.paths import Paths, PathsParams
    from flows.pipeline_flow import last_ingested_sha1

    paths = Paths.resolve(PathsParams(), tmp_path)
    assert last_ingested_sha1(paths) is None  # nothing ingested yet: any dump is new
    write_json(paths.ingest / "meta.json", build_meta("ingest", {}, {"dump_sha1": "ab" * 20}))
    assert last_ingested_sha1(paths) == "sha1:" + "ab" * 20


def test_a_latest_run_with_no_new_dump_retrains_nothing(tmp_path, dump_mirror, monkeypatch):
    import hashlib

    from components.core.artifacts import build_meta, write_json

    monkeypatch.setenv("WIKILM_TRACKING", "off")
    body = b"<mediawiki/>"
    url, _ = dump_mirror(body)
    params = _project(
        tmp_path / "latest", {"first": _stage(WRITE.format(out="a", text="a"), ["a"])}
    )
    params.write_text(yaml.safe_dump({"ingest": {"source": "latest", "mirror": url}}))
    sha1 = hashlib.sha1(body).hexdigest()
    write_json(
        params.parent / "data/ingest/meta.json", build_meta("ingest", {}, {"dump_sha1": sha1})
    )
    result = wikilm_pipeline(params_file=str(params))
    assert (result.stages, result.outcomes, result.new_dump) == ([], [], False)
    assert not (params.parent / "a").exists()


def test_the_approval_form_promotes_the_waiting_challenger(exported_workspace, monkeypatch):
    from components.registry.store import CHAMPION, Registry

    paths = exported_workspace
    params, outcomes = _pending_classifier(paths, monkeypatch)
    form = {"approve": True, "reviewer": "ana", "comment": "looked at the errors"}
    assert _answer_in_the_form(params, paths, outcomes, form)[0].status == "approved"
    champion = Registry(paths).alias("wikilm-classifier", CHAMPION)
    assert str(champion.version) == outcomes[0].version
    assert Registry(paths).history("wikilm-classifier")[-1].actor == "ana"


def _answer_in_the_form(params, paths, outcomes: list, form: dict) -> list:
    """Run a flow awaiting approval while a reviewer submits ``form``, as the Prefect UI does."""
    import threading
    from uuid import UUID

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    from flows.approval import await_approval

    run_ids: list[str] = []

    @flow
    def waiting() -> list:
        run_ids.append(flow_run.id)
        return await_approval(params, paths, outcomes, timeout_s=120)

    def reviewer() -> None:
        run_id = _paused(run_ids)
        with get_client(sync_client=True) as client:
            client.resume_flow_run(UUID(run_id), run_input=form)

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    result = waiting()
    thread.join(timeout=30)
    return result


def _paused(run_ids: list[str]) -> str:
    """Wait until the flow run recorded in ``run_ids`` is paused; its id."""
    import time
    from uuid import UUID

    from prefect.client.orchestration import get_client

    while not run_ids:
        time.sleep(0.2)
    with get_client(sync_client=True) as client:
        while not client.read_flow_run(UUID(run_ids[0])).state.is_paused():
            time.sleep(0.2)
    return run_ids[0]


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_the_command_ends_the_pause_of_the_run_waiting_for_it(
    exported_workspace, monkeypatch, capsys, decision
):
    import threading
    import time

    from prefect import flow
    from prefect.runtime import flow_run

    from components.registry.store import WAITING_RUN_TAG, Registry
    from flows.approval import await_approval
    from flows.cli import main

    paths = exported_workspace
    params, outcomes = _pending_classifier(paths, monkeypatch)
    params_file = paths.root / "params.yaml"
    params_file.write_text("promote:\n  approval: manual\n")
    run_ids: list[str] = []
    tags: list[dict] = []

    @flow
    def waiting() -> list:
        run_ids.append(flow_run.id)
        started = time.perf_counter()
        decided = await_approval(params, paths, outcomes, timeout_s=300)
        assert time.perf_counter() - started < 120  # the command ended the pause
        return decided

    def reviewer() -> None:
        _paused(run_ids)
        tags.append(Registry(paths).version("wikilm-classifier", "1").tags)
        command = [decision, "wikilm-classifier", "1", "--reviewer", "ana", "--comment", "seen"]
        assert main([*command, "--params", str(params_file)]) == 0

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    expected = "approved" if decision == "approve" else "rejected"
    assert waiting()[0].status == expected
    thread.join(timeout=30)
    assert tags[0][WAITING_RUN_TAG] == run_ids[0]  # the version named the run waiting for it
    assert f"flow run {run_ids[0]} waiting for it goes on" in capsys.readouterr().out
    version = Registry(paths).version("wikilm-classifier", "1")
    assert WAITING_RUN_TAG not in version.tags
    assert [e.action for e in Registry(paths).history("wikilm-classifier")].count(expected) == 1


def test_a_decision_never_ends_the_pause_of_another_version(
    exported_workspace, monkeypatch, capsys
):
    """The command read the waiting run's id, but the run has moved on to the next pause.

    That happens when the run waited in the registry (Prefect down) and saw the decision
    there first. Prefect hands an answer to whatever pause is current, so a resume then
    would decide the next version with this one's answer.
    """
    import threading

    from prefect import flow
    from prefect.flow_runs import pause_flow_run
    from prefect.runtime import flow_run

    from components.registry.store import APPROVAL_TAG, WAITING_RUN_TAG, Registry
    from flows.approval import ApprovalForm, pause_key, resume_waiting_run
    from flows.cli import main

    paths = exported_workspace
    _pending_classifier(paths, monkeypatch)
    params_file = paths.root / "params.yaml"
    params_file.write_text("promote:\n  approval: manual\n")
    run_ids: list[str] = []
    answers: list[ApprovalForm] = []
    outputs: list[str] = []
    lm_key = pause_key("wikilm-lm", 1)

    @flow
    def waiting_for_the_lm() -> None:
        run_ids.append(flow_run.id)
        answers.append(pause_flow_run(ApprovalForm, timeout=120, poll_interval=1, key=lm_key))

    def reviewer() -> None:
        run_id = str(_paused(run_ids))
        client = Registry(paths).client
        client.set_model_version_tag("wikilm-classifier", "1", WAITING_RUN_TAG, run_id)
        command = ["approve", "wikilm-classifier", "1", "--reviewer", "ana", "--comment", "clf"]
        assert main([*command, "--params", str(params_file)]) == 0
        lm = ApprovalForm(approve=False, reviewer="bo", comment="lm")
        outputs.append(resume_waiting_run(run_id, lm, lm_key))

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    waiting_for_the_lm()
    thread.join(timeout=30)
    out = capsys.readouterr().out
    assert f"not resumed: it now waits for another version ({lm_key})" in out
    assert outputs == [f"the Prefect flow run {run_ids[0]} waiting for it goes on"]
    fields = {"approve", "reviewer", "comment"}
    assert [answer.model_dump(include=fields) for answer in answers] == [
        {"approve": False, "reviewer": "bo", "comment": "lm"}
    ]
    assert Registry(paths).version("wikilm-classifier", "1").tags[APPROVAL_TAG] == "approved"


def test_a_decision_for_a_run_no_longer_waiting_is_kept(exported_workspace, monkeypatch, capsys):
    import uuid

    from components.registry.store import APPROVAL_TAG, WAITING_RUN_TAG, Registry
    from flows.cli import main

    paths = exported_workspace
    _pending_classifier(paths, monkeypatch)
    params_file = paths.root / "params.yaml"
    params_file.write_text("promote:\n  approval: manual\n")
    gone = str(uuid.uuid4())  # a run that crashed while paused left its id behind
    Registry(paths).client.set_model_version_tag("wikilm-classifier", "1", WAITING_RUN_TAG, gone)
    command = ["approve", "wikilm-classifier", "1", "--reviewer", "ana", "--comment", "seen"]
    assert main([*command, "--params", str(params_file)]) == 0
    out = capsys.readouterr().out
    assert f"flow run {gone} waiting for it was not resumed: this Prefect server does not" in out
    assert Registry(paths).version("wikilm-classifier", "1").tags[APPROVAL_TAG] == "approved"


# What `dvc repro --single-item clean` prints after running a stage (DVC 3).
DVC_OUTPUT = """Running stage 'clean':
> python -m components clean
12:00:01 INFO components: clean finished in 1.2 s

Updating lock file 'dvc.lock'

To track the changes with git, run:

\tgit add dvc.lock

To enable auto staging, run:

\tdvc config core.autostage true
Use `dvc push` to send your updates to remote storage.
"""


def test_a_stage_logs_its_own_lines_without_dvc_advice():
    from flows.pipeline_flow import without_dvc_advice

    assert without_dvc_advice(DVC_OUTPUT) == [
        "Running stage 'clean':",
        "> python -m components clean",
        "12:00:01 INFO components: clean finished in 1.2 s",
        "Updating lock file 'dvc.lock'",
    ]
