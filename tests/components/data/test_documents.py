import pickle
import subprocess
import sys
from collections import deque

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.errors import ArtifactError
from components.data import documents
from components.data.documents import (
    SCHEMA,
    Document,
    ShardWriter,
    arrow_column,
    count_rows,
    iter_batches,
    shard_paths,
    size_runs,
)
from tests.corpora import iter_documents, write_documents


def _row(i: int, text: str = "x") -> dict:
    return {"id": i, "title": f"T{i}", "revision_id": i * 10, "timestamp": None, "text": text}


@pytest.mark.parametrize(
    ("values", "type_"),
    [
        (["", "h\u00e4l\u00e9 \U0001f600", None, "x" * 5000], pa.string()),
        ([None, None], pa.string()),
        ([], pa.string()),
        ([0, None, -5, 2**40], pa.int64()),
        ([7, 1], pa.int32()),
        ([None], pa.int64()),
    ],
)
def test_arrow_columns_keep_values_and_nulls(values, type_):
    column = arrow_column(values, type_)
    column.validate(full=True)
    assert column.type == type_
    assert column.to_pylist() == values


def test_strings_past_32_bit_offsets_take_the_64_bit_path(monkeypatch):
    values = ["é" * 3, None, "", "text"]
    monkeypatch.setattr(documents, "_INT32_MAX", 4)  # as if the column held over 2 GB
    column = arrow_column(values, pa.string())
    assert column.type == pa.string()
    assert column.to_pylist() == values


def test_an_integer_too_large_for_its_column_is_refused():
    with pytest.raises(OverflowError):
        arrow_column([2**70], pa.int64())


def test_writing_shards_leaves_pandas_and_arrow_compute_unloaded(tmp_path):
    """Writing shards needs neither pandas nor pyarrow.compute (1 s and 40 ms of start-up)."""
    code = (
        "import sys; from pathlib import Path; "
        "from components.data.documents import Document, ShardWriter; "
        f"writer = ShardWriter(Path({str(tmp_path)!r})); "
        "writer.write(Document(1, 'T', 'text', {}).to_row()); writer.close(); "
        "loaded = {'pandas', 'pyarrow.compute'} & set(sys.modules); "
        "assert not loaded, f'imported {loaded}'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert count_rows(tmp_path) == 1


@pytest.mark.parametrize(
    ("rows", "shard_rows", "shards"),
    [(0, 5, 1), (4, 5, 1), (5, 5, 1), (12, 5, 3), (8, 4, 2)],
)
def test_shards_rotate_at_shard_rows_and_keep_order(tmp_path, rows, shard_rows, shards):
    writer = ShardWriter(tmp_path, shard_rows=shard_rows, group_rows=2)
    for i in range(rows):
        writer.write(_row(i))
    writer.close()
    assert len(shard_paths(tmp_path)) == shards == writer.shards
    assert [doc.id for doc in iter_documents(tmp_path)] == list(range(rows))
    assert count_rows(tmp_path) == rows == writer.rows_written


def test_a_failed_write_on_the_writers_thread_is_raised_by_close(tmp_path, monkeypatch):
    """Row groups are written on the writer's thread; a write that fails there fails close."""
    real_write = pq.ParquetWriter.write_table
    calls = []

    def fail_third(self, table, *args, **kwargs):
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_third)
    writer = ShardWriter(tmp_path, shard_rows=100, group_rows=2)
    for i in range(6):  # the third group is handed over with the sixth row
        writer.write(_row(i))
    with pytest.raises(OSError, match="No space left on device"):
        writer.close()
    assert calls == [2, 2, 2]


def test_close_returns_once_every_shard_is_complete(tmp_path):
    writer = ShardWriter(tmp_path, shard_rows=3, group_rows=1)
    for i in range(10):
        writer.write(_row(i, "z" * 1000))
    writer.close()
    assert [pq.ParquetFile(path).metadata.num_rows for path in shard_paths(tmp_path)] == [
        3,
        3,
        3,
        1,
    ]


def test_row_groups_are_bounded_by_text_size(tmp_path):
    writer = ShardWriter(tmp_path, group_rows=1000, group_bytes=100)
    for i in range(10):
        writer.write(_row(i, "y" * 60))
    writer.close()
    # 60 characters a row and at most 100 a group: groups of two rows.
    assert pq.ParquetFile(shard_paths(tmp_path)[0]).num_row_groups == 5


@pytest.mark.parametrize("split", [0, 3, 7, 23])
def test_a_table_makes_the_shards_and_row_groups_its_rows_would_make(tmp_path, split):
    """write_table after some rows written one by one: the same files, byte for byte."""
    rows = [_row(i, "y" * (i * 7 % 50)) for i in range(23)]
    rows[5]["text"] = None
    options = {"shard_rows": 10, "group_rows": 4, "group_bytes": 90}
    one_by_one = ShardWriter(tmp_path / "rows", **options)
    for row in rows:
        one_by_one.write(row)
    one_by_one.close()
    mixed = ShardWriter(tmp_path / "mixed", **options)
    for row in rows[:split]:
        mixed.write(row)
    mixed.write_table(pa.Table.from_pylist(rows[split:], schema=SCHEMA))
    mixed.close()
    expected = shard_paths(tmp_path / "rows")
    assert [p.name for p in shard_paths(tmp_path / "mixed")] == [p.name for p in expected]
    for path in expected:
        assert (tmp_path / "mixed" / path.name).read_bytes() == path.read_bytes()
    assert mixed.rows_written == 23


def test_documents_round_trip_with_metadata(tmp_path):
    docs = [Document(1, "A", "text a", {"revision_id": 7, "timestamp": "2024-01-01T00:00:00Z"})]
    assert write_documents(tmp_path, docs) == 1
    assert list(iter_documents(tmp_path)) == docs
    assert [len(b) for b in iter_batches(tmp_path, batch_rows=1)] == [1]


@pytest.mark.parametrize(
    ("lengths", "batch_chars", "sizes"),
    [
        ([3, 3, 3, 3], 6, [2, 2]),
        ([3, 3, 3, 3], 7, [2, 2]),
        ([10, 1, 1], 5, [1, 2]),  # a document longer than the bound is a batch of its own
        ([1, 1, 1, 1, 1], 100, [4, 1]),  # batch_rows still bounds the batch
    ],
)
def test_batches_are_bounded_by_text_size(tmp_path, lengths, batch_chars, sizes):
    docs = [Document(i, f"T{i}", "x" * n) for i, n in enumerate(lengths)]
    write_documents(tmp_path, docs)
    batches = list(iter_batches(tmp_path, batch_rows=4, batch_chars=batch_chars))
    assert [len(b) for b in batches] == sizes
    assert [d for b in batches for d in b] == docs


def test_missing_shards_is_an_actionable_error(tmp_path):
    with pytest.raises(ArtifactError, match="rerun the stage"):
        count_rows(tmp_path)


@pytest.mark.parametrize(
    ("damage", "footer_lost"),
    [
        (lambda data: b"garbage", True),
        (lambda data: data[: len(data) // 2], True),
        (lambda data: data[:8] + bytes(len(data) - 16) + data[-8:], False),  # pages zeroed
    ],
    ids=["not-parquet", "truncated", "zeroed-pages"],
)
def test_an_unreadable_shard_is_an_artifact_error_naming_it(tmp_path, damage, footer_lost):
    folder = tmp_path / "ingest"
    write_documents(folder, [Document(i, f"T{i}", "some text " * 50) for i in range(20)])
    shard = shard_paths(folder)[0]
    shard.write_bytes(damage(shard.read_bytes()))
    named = rf"{shard}.*rerun the stage that writes ingest"
    with pytest.raises(ArtifactError, match=named):
        list(iter_batches(folder))
    if footer_lost:
        with pytest.raises(ArtifactError, match=named):
            count_rows(folder)


@pytest.mark.parametrize(
    ("sizes", "runs"),
    [
        ([], []),
        ([3, 3, 3, 3], [(0, 2), (2, 4)]),  # a run ends once it reaches the limit
        ([1, 1, 1], [(0, 3)]),  # the last run may stay under it
        ([10, 1, 1, 9], [(0, 1), (1, 4)]),  # one large item makes a run of its own
        ([0, 0, 6, 0], [(0, 3), (3, 4)]),
    ],
)
def test_size_runs_cut_consecutive_items_once_their_sizes_reach_the_limit(sizes, runs):
    assert list(size_runs(iter(sizes), 6)) == runs


def test_shard_batches_are_record_batches_cut_by_text_size(tmp_path):
    """Each cut batch travels alone: pickled, it holds its own rows' text, not its parent's."""
    writer = ShardWriter(tmp_path, shard_rows=100)
    for i in range(8):
        writer.write(_row(i, "w" * 1000))
    writer.close()
    origins = deque()
    batches = list(documents.shard_batches(shard_paths(tmp_path), 0, origins, 8, 2500, ["text"]))
    assert [b.num_rows for b in batches] == [2, 2, 2, 2]
    assert batches[0].schema.names == ["text"]
    assert all(len(pickle.dumps(b)) < 4000 for b in batches)  # the 8,000 of all rows: not sent
    assert list(origins) == [(0, False), (0, False), (0, False), (0, True)]


def test_an_empty_shard_gives_one_empty_batch_and_a_missing_text_reads_as_empty(tmp_path):
    ShardWriter(tmp_path / "empty").close()
    origins = deque()
    shards = shard_paths(tmp_path / "empty")
    (batch,) = documents.shard_batches(shards, 0, origins, columns=["id", "text"])
    assert (batch.num_rows, batch.schema.names, list(origins)) == (0, ["id", "text"], [(0, True)])
    writer = ShardWriter(tmp_path / "gap")
    writer.write({**_row(1), "text": None})
    writer.close()
    (batch,) = documents.shard_batches(shard_paths(tmp_path / "gap"), 0, deque(), 10, 100)
    assert documents.batch_texts(batch) == [""]


def test_shards_store_texts_plainly_and_other_columns_with_a_dictionary(tmp_path):
    writer = ShardWriter(tmp_path)
    for i in range(50):
        writer.write({**_row(i, f"text {i}"), "timestamp": "2020-01-01T00:00:00Z"})
    writer.close()
    group = pq.ParquetFile(shard_paths(tmp_path)[0]).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(5)}
    assert "RLE_DICTIONARY" not in encodings["text"]
    assert "RLE_DICTIONARY" in encodings["timestamp"]
