"""The wikilm server's decisions, in process: its rules, its rows, and a failed alias move.

MLflow's own SQL registry store and the server's tables, both on SQLite files; the HTTP
side, PostgreSQL and real clients are in tests/servers/test_registry_server.py.
"""

from __future__ import annotations

import pytest
from mlflow.entities.model_registry import ModelVersionTag
from mlflow.exceptions import MlflowException

from components.registry.gate import Evidence, LmEvidence, evidence_text
from components.registry.server import decisions, records
from components.registry.server.config import ServerConfig
from components.registry.server.decisions import Context, Refused
from components.registry.store import CHALLENGER, CHAMPION, CLASSIFIER, EVIDENCE_TAG, LM

RULES = {"approval": "manual", "four_eyes": True, "min_margin_over_tfidf": 0.0}
WINS = Evidence(accuracy=0.9, macro_f1=0.9, parity_passed=True, p95_latency_ms=5.0,
                tfidf_macro_f1=0.8)  # fmt: skip
LOSES_TO_UNIGRAM = LmEvidence(bits_per_byte=3.0, unigram_bits_per_byte=2.5, parity_passed=True)


class AliasMoveFailsOnce:
    """MLflow's store, whose first move of ``champion`` fails (its database went away)."""

    def __init__(self, store) -> None:
        self.store, self.failed = store, False

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if alias == CHAMPION and not self.failed:
            self.failed = True
            raise MlflowException("connection to the registry database lost")
        self.store.set_registered_model_alias(name, alias, version)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """MLflow's SQL registry store on a SQLite file (its migrations run once)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}")


@pytest.fixture
def ctx(mlflow_store, tmp_path) -> Context:
    """A server with ``ana`` and ``ben`` in its reviewers' group; ``trainer`` its pipeline."""
    db = records.engine(f"sqlite:///{tmp_path / 'auth.db'}")
    with db.begin() as connection:
        for name in ("ana", "ben"):
            records.add_reviewer(connection, name, "admin")
    for model in (CLASSIFIER, LM):
        for version in mlflow_store.search_model_versions(f"name = '{model}'"):
            mlflow_store.delete_model_version(model, version.version)
    config = ServerConfig(pipeline_account="trainer", promote=RULES)
    return Context(config, db, mlflow_store)


def register(ctx: Context, model: str, evidence) -> str:
    """The pipeline registers a version with its evidence; the server records it."""
    from contextlib import suppress

    with suppress(MlflowException):
        ctx.store.create_registered_model(model)
    tags = [ModelVersionTag(EVIDENCE_TAG, evidence_text(evidence))]
    version = str(ctx.store.create_model_version(model, "file:///model", tags=tags).version)
    ctx.store.set_registered_model_alias(model, CHALLENGER, version)
    decisions.registered(ctx, "trainer", model, version)
    return version


def actions(ctx: Context, model: str) -> list[tuple[str, str, str]]:
    with ctx.db.connect() as connection:
        return [(r.action, r.version, r.actor) for r in records.history(connection, model)]


def test_a_failed_alias_move_records_nothing_and_the_version_stays_approvable(ctx):
    version = register(ctx, CLASSIFIER, WINS)
    failing = Context(ctx.config, ctx.db, AliasMoveFailsOnce(ctx.store))
    with pytest.raises(MlflowException, match="connection to the registry database lost"):
        decisions.approve(failing, "ana", CLASSIFIER, version, "looks right")
    assert actions(ctx, CLASSIFIER) == [("gate_passed", version, "trainer")]
    assert decisions.alias(ctx, CLASSIFIER, CHAMPION) is None
    decisions.approve(failing, "ana", CLASSIFIER, version, "looks right")
    assert decisions.alias(ctx, CLASSIFIER, CHAMPION) == version
    assert actions(ctx, CLASSIFIER)[-1] == ("approved", version, "ana")


def test_the_champion_alias_follows_the_rows(ctx):
    first = register(ctx, CLASSIFIER, WINS)
    decisions.approve(ctx, "ana", CLASSIFIER, first, "first")
    second = register(ctx, CLASSIFIER, WINS)
    decisions.approve(ctx, "ben", CLASSIFIER, second, "second")
    # A move outside the server's decisions (a restored database, a direct SQL write):
    ctx.store.set_registered_model_alias(CLASSIFIER, CHAMPION, first)
    row = decisions.rollback(ctx, "ana", CLASSIFIER, "second misroutes")
    # The rows said v2 was champion: rolled back from there, to v1.
    assert (row.champion_before, row.version) == (second, first)
    assert decisions.alias(ctx, CLASSIFIER, CHAMPION) == first


def test_the_servers_rules_decide_not_the_pipelines(ctx):
    version = register(ctx, LM, LOSES_TO_UNIGRAM)
    assert actions(ctx, LM) == [("gate_failed", version, "trainer")]
    with pytest.raises(Refused, match="did not pass the gate under this server's rules") as error:
        decisions.approve(ctx, "ana", LM, version, "ship it")
    assert error.value.status == 409
    assert decisions.alias(ctx, LM, CHAMPION) is None


def test_only_reviewers_and_never_the_author(ctx):
    version = register(ctx, CLASSIFIER, WINS)
    with pytest.raises(Refused, match="trainer is not in the reviewers' group"):
        decisions.approve(ctx, "trainer", CLASSIFIER, version, "mine")
    with ctx.db.begin() as connection:
        records.add_reviewer(connection, "trainer", "admin")
    with pytest.raises(Refused, match="four-eyes rule: trainer registered"):
        decisions.approve(ctx, "trainer", CLASSIFIER, version, "mine")
    with pytest.raises(Refused, match="only the pipeline account promotes"):
        decisions.promote(ctx, "ana", CLASSIFIER, version)
    assert decisions.alias(ctx, CLASSIFIER, CHAMPION) is None
    assert [a for a, _, _ in actions(ctx, CLASSIFIER)] == ["gate_passed"]


def test_a_decided_version_is_not_decided_again(ctx):
    version = register(ctx, CLASSIFIER, WINS)
    decisions.reject(ctx, "ana", CLASSIFIER, version, "regresses on news")
    assert decisions.alias(ctx, CLASSIFIER, CHALLENGER) is None
    for decide in (decisions.approve, decisions.reject):
        with pytest.raises(Refused, match="was already rejected"):
            decide(ctx, "ben", CLASSIFIER, version, "second opinion")
    assert [a for a, _, _ in actions(ctx, CLASSIFIER)] == ["gate_passed", "rejected"]
