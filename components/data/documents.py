"""The document record and its Parquet shard storage.

Stages exchange documents as Parquet shards (``part-00000.parquet``, ...) with a fixed
schema, read and written in batches so memory stays constant whatever the corpus size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.errors import ArtifactError

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("title", pa.string()),
        ("revision_id", pa.int64()),
        ("timestamp", pa.string()),
        ("text", pa.string()),
    ]
)
REJECTED_SCHEMA = SCHEMA.append(pa.field("reason", pa.string()))
SHARD_GLOB = "part-*.parquet"
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True, slots=True)
class Document:
    """One article: its page id, title, plain text and revision metadata."""

    id: int
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Flatten into a row of :data:`SCHEMA`."""
        return {
            "id": self.id,
            "title": self.title,
            "revision_id": self.metadata.get("revision_id"),
            "timestamp": self.metadata.get("timestamp"),
            "text": self.text,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Document:
        """Inverse of :meth:`to_row`."""
        meta = {k: row[k] for k in ("revision_id", "timestamp") if row.get(k) is not None}
        return cls(id=row["id"], title=row["title"], text=row["text"], metadata=meta)


class ShardWriter:
    """Streams rows into numbered Parquet shards of at most ``shard_rows`` rows.

    Shards are numbered from ``first_shard`` (a resumed stage goes on after its last
    shard). Rows are flushed as row groups whenever the buffer reaches ``group_rows`` rows or
    ``group_bytes`` characters of text, so memory stays bounded whatever the shard size.

    Row groups are encoded and compressed on a thread of the writer's own (Arrow releases
    the GIL for it) while the caller builds the next one: at most one group waits for the
    thread. An error there is raised by the next call that hands the thread work, or by
    :meth:`close`.
    """

    def __init__(
        self,
        folder: Path,
        schema: pa.Schema = SCHEMA,
        shard_rows: int = 10_000,
        group_rows: int = 1024,
        group_bytes: int = 8 << 20,
        first_shard: int = 0,
    ) -> None:
        self.folder = folder
        self.schema = schema
        self.shard_rows = shard_rows
        self.group_rows = group_rows
        self.group_bytes = group_bytes
        self.rows_written = 0
        self.shards = first_shard  # the number the next shard gets
        self._buffer: list[dict[str, Any]] = []  # rows given one by one, not yet in a piece
        self._pieces: list[pa.Table] = []  # the row group so far, in order
        self._buffered = 0  # rows in the row group so far
        self._buffer_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._shard_rows_written = 0
        self._thread: ThreadPoolExecutor | None = None
        self._pending: Future | None = None  # the thread's work in progress
        # Every text is its own value: a dictionary of them only costs (Arrow tries one for
        # each row group, fills its page and falls back to plain), 10% of writing and of
        # reading back, for the same bytes.
        self._dictionary_columns = [name for name in schema.names if name != "text"]
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        """Add one row; flushes a row group or starts a new shard when one is full."""
        self._buffer.append(row)
        self._count(len(row.get("text") or ""))

    def write_table(self, table: pa.Table) -> None:
        """Add a table's rows (in the schema's columns).

        The shards and row groups are those that writing its rows one by one would make.
        """
        import pyarrow.compute as pc  # for the stages that write tables, not every stage

        table = table.select(self.schema.names).cast(self.schema)
        self._take_rows()  # rows written before come first
        lengths = pc.fill_null(pc.utf8_length(table.column("text")), 0).to_pylist()
        start = 0
        for index, length in enumerate(lengths):
            if self._count(length, table, start, index + 1):
                start = index + 1
        if start < len(lengths):
            self._pieces.append(table.slice(start))

    def _count(
        self, length: int, table: pa.Table | None = None, start: int = 0, end: int = 0
    ) -> bool:
        """Count a row just added; flush the row group and close the shard when full.

        ``table[start:end]`` are the table's rows not yet in a piece. Returns whether it flushed.
        """
        self._buffered += 1
        self._buffer_bytes += length
        full_shard = self._shard_rows_written + self._buffered >= self.shard_rows
        if not (
            full_shard
            or self._buffered >= self.group_rows
            or self._buffer_bytes >= self.group_bytes
        ):
            return False
        if table is not None:
            self._pieces.append(table.slice(start, end - start))
        self._flush_group()
        if full_shard:
            self._close_shard()
        return True

    def close(self) -> None:
        """Flush what is left; an empty corpus still gets one (empty) shard with the schema.

        Returns once every shard is written and closed.
        """
        if self._buffered or self.shards == 0:
            self._flush_group()
        self._close_shard()
        self._wait()
        if self._thread is not None:
            self._thread.shutdown()
            self._thread = None

    def _flush_group(self) -> None:
        if self._writer is None:
            path = self.folder / f"part-{self.shards:05d}.parquet"
            self._writer = pq.ParquetWriter(
                path, self.schema, compression="zstd", use_dictionary=self._dictionary_columns
            )
            self.shards += 1
        self._hand_over(self._writer.write_table, self._row_group())
        self._shard_rows_written += self._buffered
        self.rows_written += self._buffered
        self._buffered = self._buffer_bytes = 0

    def _row_group(self) -> pa.Table:
        """The buffered rows as one table, taken out of the buffer."""
        self._take_rows()
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return self.schema.empty_table()
        if len(pieces) == 1:
            return pieces[0]
        return pa.concat_tables(pieces).combine_chunks()

    def _take_rows(self) -> None:
        """Turn the rows given one by one into a piece (before a table's rows come after)."""
        if self._buffer:
            columns = [
                arrow_column([row.get(name) for row in self._buffer], field.type)
                for name, field in zip(self.schema.names, self.schema, strict=True)
            ]
            self._pieces.append(pa.Table.from_arrays(columns, schema=self.schema))
            self._buffer = []

    def _close_shard(self) -> None:
        if self._writer is not None:
            self._hand_over(self._writer.close)
            self._writer = None
            self._shard_rows_written = 0

    def _hand_over(self, work: Callable[..., Any], *args: Any) -> None:
        """Run ``work(*args)`` on the writer's thread, once its work before is done."""
        self._wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="shard-writer")
        self._pending = self._thread.submit(work, *args)

    def _wait(self) -> None:
        """Wait for the thread's work in progress; raise its error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


def document_batch(documents: list[Document]) -> pa.RecordBatch:
    """The documents as a record batch of :data:`SCHEMA` (as a shard would hold them)."""
    rows = [doc.to_row() for doc in documents]
    columns = [arrow_column([row[f.name] for row in rows], f.type) for f in SCHEMA]
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


def arrow_column(values: list[Any], type_: pa.DataType) -> pa.Array:
    """An Arrow string or integer array of ``values`` (None is null), built from buffers.

    ``pa.array`` on Python objects imports pandas to probe them: 0.85 s at the start of a
    stage that never uses it. Buffers built here skip that probe.
    """
    valid = np.fromiter((v is not None for v in values), bool, len(values))
    nulls = len(values) - int(np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if pa.types.is_string(type_):
        encoded = [b"" if v is None else v.encode("utf-8") for v in values]
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(values)), out=offsets[1:])
        data = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        if offsets[-1] <= _INT32_MAX:  # built as is: a cast would import pyarrow.compute
            data[1] = pa.py_buffer(offsets.astype(np.int32))
            return pa.Array.from_buffers(type_, len(values), data, nulls)
        # Too long for 32-bit offsets: the cast to the schema type says so.
        array = pa.Array.from_buffers(pa.large_string(), len(values), data, nulls)
        return array.cast(type_)
    if pa.types.is_integer(type_):
        kind = "u" if pa.types.is_unsigned_integer(type_) else "i"
        dtype = np.dtype(f"{kind}{type_.bit_width // 8}")
        raw = np.fromiter((0 if v is None else v for v in values), dtype, len(values))
        return pa.Array.from_buffers(type_, len(values), [bitmap, pa.py_buffer(raw)], nulls)
    raise TypeError(f"no Arrow column builder for {type_}")


def shard_paths(folder: Path) -> list[Path]:
    """The Parquet shards of a stage output, in order.

    Raises:
        ArtifactError: the folder has no shards.
    """
    paths = sorted(folder.glob(SHARD_GLOB))
    if not paths:
        raise ArtifactError(f"no {SHARD_GLOB} shards in {folder}: rerun the stage that writes it")
    return paths


def _unreadable(path: Path, error: Exception) -> ArtifactError:
    reason = " ".join(str(error).split())  # Arrow's messages span lines
    return ArtifactError(
        f"{path} is not a readable Parquet shard ({reason}): rerun the stage that writes "
        f"{path.parent.name}"
    )


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def read_batches(path: Path, **options: Any) -> Iterator[pa.RecordBatch]:
    """Record batches of one shard (``options`` go to ``ParquetFile.iter_batches``).

    Raises:
        ArtifactError: the shard is truncated or corrupt.
    """
    try:
        yield from _open(path).iter_batches(**options)
    except (pa.ArrowException, OSError) as error:
        raise _unreadable(path, error) from None


def iter_batches(
    folder: Path, batch_rows: int = 1024, batch_chars: int | None = None
) -> Iterator[list[Document]]:
    """Yield documents in shard order, ``batch_rows`` at a time.

    With ``batch_chars``, a batch also holds at most that many characters of text (a longer
    document makes a batch of its own): parallel work then comes in even pieces.
    """
    for path in shard_paths(folder):
        yield from iter_shard(path, batch_rows, batch_chars)


def iter_shard(
    path: Path, batch_rows: int = 1024, batch_chars: int | None = None
) -> Iterator[list[Document]]:
    """Yield the documents of one shard, in batches as :func:`iter_batches` makes them."""
    for batch in _record_batches(path, batch_rows, batch_chars):
        yield [Document.from_row(row) for row in batch.to_pylist()]


def shard_batches(
    shards: list[Path],
    first: int,
    origins: deque[tuple[int, bool]],
    batch_rows: int = 1024,
    batch_chars: int | None = None,
    columns: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of the shards from index ``first`` on, each batch's origin put in ``origins``.

    Batches hold ``columns`` (all when None), cut as :func:`iter_batches` cuts them. They go
    to worker processes as they are: Arrow buffers travel as they lie, where documents would
    be decoded into strings here, pickled, and decoded again by the worker.

    The origin is (shard index, whether this is the shard's last batch): a stage that marks
    shards done reads it back as each batch's result comes in. Every shard gives at least
    one batch (maybe empty), so each is marked done even with no documents.
    """
    for index in range(first, len(shards)):
        previous = None
        for batch in _record_batches(shards[index], batch_rows, batch_chars, columns):
            if previous is not None:
                origins.append((index, False))
                yield previous
            previous = batch
        origins.append((index, True))
        yield previous if previous is not None else _empty_batch(columns)


def batch_texts(batch: pa.RecordBatch) -> list[str]:
    """The texts of a record batch, a missing one as empty."""
    return [text or "" for text in batch.column("text").to_pylist()]


def _record_batches(
    path: Path, batch_rows: int, batch_chars: int | None, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The shard's rows, ``batch_rows`` at a time.

    With ``batch_chars``, a batch also holds at most that many characters of text (a longer
    document makes a batch of its own).
    """
    for batch in read_batches(path, batch_size=batch_rows, columns=columns):
        if batch_chars is None:
            yield batch
            continue
        cuts = list(_char_runs(_text_lengths(batch), batch_chars))
        if len(cuts) == 1:
            yield batch
            continue
        for start, end in cuts:
            # A slice pickles with its parent's whole buffers: each is copied out alone.
            yield pa.concat_batches([batch.slice(start, end - start)])


def _text_lengths(batch: pa.RecordBatch) -> list[int]:
    """Each text's length in code points (as ``len`` counts), a missing text's as 0."""
    import pyarrow.compute as pc  # for the stages that cut batches, not every worker

    return pc.fill_null(pc.utf8_length(batch.column("text")), 0).to_pylist()


def _char_runs(lengths: list[int], limit: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive texts of at most ``limit`` characters in all.

    A run ends before the text that would take it past ``limit``; a longer text makes a run
    of its own.
    """
    start, chars = 0, 0
    for index, length in enumerate(lengths):
        if index > start and chars + length > limit:
            yield start, index
            start, chars = index, 0
        chars += length
    if start < len(lengths):
        yield start, len(lengths)


def _empty_batch(columns: list[str] | None) -> pa.RecordBatch:
    """A record batch of no rows with ``columns`` of :data:`SCHEMA` (all when None)."""
    fields = [SCHEMA.field(name) for name in columns or SCHEMA.names]
    return pa.RecordBatch.from_arrays(
        [pa.nulls(0, field.type) for field in fields], schema=pa.schema(fields)
    )


def size_runs(sizes: Iterable[int], limit: int) -> Iterator[tuple[int, int]]:
    """(start, end) of consecutive runs of items, given each item's size.

    A run ends once its items' sizes add up to ``limit`` or more: it holds at most ``limit``
    plus one item's size.
    """
    start, total, end = 0, 0, 0
    for end, size in enumerate(sizes, start=1):
        total += size
        if total >= limit:
            yield start, end
            start, total = end, 0
    if start < end:
        yield start, end


def count_rows(folder: Path) -> int:
    """Number of documents in a stage output, from Parquet footers only."""
    return sum(shard_rows(p) for p in shard_paths(folder))


def shard_rows(path: Path) -> int:
    """Number of documents in one shard, from its Parquet footer."""
    return _open(path).metadata.num_rows
