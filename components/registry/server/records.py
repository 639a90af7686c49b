"""The server's own tables: append-only decision rows, the reviewers' group, per-model locks.

They live in the auth database beside MLflow's users and permissions. Nothing here updates
or deletes a decision row: the history is what was appended, in order. Decisions on one model
are serialised by a row lock (``model_lock``): the first statement of each decision's
transaction updates that model's row, so a second decision waits until the first commits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy as sa

from components.registry.store import Event

metadata = sa.MetaData()

decisions = sa.Table(
    "wikilm_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(256), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("champion_before", sa.String(32)),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
)

reviewers = sa.Table(
    "wikilm_reviewers",
    metadata,
    sa.Column("username", sa.String(256), primary_key=True),
    sa.Column("added_by", sa.String(256), nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
)

model_locks = sa.Table(
    "wikilm_model_locks",
    metadata,
    sa.Column("model", sa.String(256), primary_key=True),
    sa.Column("decisions", sa.Integer, nullable=False, default=0),
)


# A decision row is a history event, with the fields ``wikilm history`` shows everywhere; its
# sequence is the row's id.
Row = Event


@lru_cache(maxsize=4)
def engine(uri: str) -> sa.Engine:
    """The database at ``uri``, with the server's tables created if missing."""
    options = {"connect_args": {"timeout": 30}} if uri.startswith("sqlite") else {}
    made = sa.create_engine(uri, pool_pre_ping=True, **options)
    metadata.create_all(made, checkfirst=True)
    return made


def now_ms() -> int:
    """Milliseconds since the epoch."""
    return int(time.time() * 1000)


@contextmanager
def model_lock(db: sa.Engine, model: str) -> Iterator[sa.Connection]:
    """A transaction that holds ``model``'s lock until it commits (or rolls back)."""
    with db.begin() as connection:
        exists = connection.execute(
            sa.select(model_locks.c.model).where(model_locks.c.model == model)
        ).first()
        if exists is None:
            _create_lock_row(db, model)
    with db.begin() as connection:
        connection.execute(
            model_locks.update()
            .where(model_locks.c.model == model)
            .values(decisions=model_locks.c.decisions + 1)
        )
        yield connection


def _create_lock_row(db: sa.Engine, model: str) -> None:
    try:
        with db.begin() as connection:
            connection.execute(model_locks.insert().values(model=model, decisions=0))
    except sa.exc.IntegrityError:  # another decision created it a moment ago
        pass


def append(connection: sa.Connection, row: Row) -> None:
    """Append one decision row (the only write to the history)."""
    values = {k: v for k, v in row.__dict__.items() if k != "sequence"}
    values["metrics"] = json.dumps(row.metrics, sort_keys=True)
    connection.execute(decisions.insert().values(**values))


def history(connection: sa.Connection, model: str) -> list[Row]:
    """Every row of ``model``, oldest first."""
    rows = connection.execute(
        sa.select(decisions).where(decisions.c.model == model).order_by(decisions.c.id)
    ).mappings()
    return [
        Row(
            model=r["model"],
            action=r["action"],
            version=r["version"],
            actor=r["actor"],
            reason=r["reason"],
            champion_before=r["champion_before"],
            timestamp_ms=r["timestamp_ms"],
            metrics=json.loads(r["metrics"]),
            sequence=r["id"],
        )
        for r in rows
    ]


def is_reviewer(connection: sa.Connection, username: str) -> bool:
    """Whether ``username`` is in the reviewers' group."""
    found = connection.execute(
        sa.select(reviewers.c.username).where(reviewers.c.username == username)
    ).first()
    return found is not None


def list_reviewers(connection: sa.Connection) -> list[str]:
    """The reviewers' group, sorted."""
    return sorted(connection.execute(sa.select(reviewers.c.username)).scalars())


def add_reviewer(connection: sa.Connection, username: str, added_by: str) -> None:
    """Put ``username`` in the reviewers' group (a no-op if there already)."""
    if not is_reviewer(connection, username):
        connection.execute(
            reviewers.insert().values(username=username, added_by=added_by, timestamp_ms=now_ms())
        )


def remove_reviewer(connection: sa.Connection, username: str) -> None:
    """Take ``username`` out of the reviewers' group."""
    connection.execute(reviewers.delete().where(reviewers.c.username == username))
