"""Document shards built and read whole, for tests (the stages stream them in batches)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from components.data.documents import Document, ShardWriter, iter_batches


def iter_documents(folder: Path) -> Iterator[Document]:
    """Yield every document of a stage output, in order."""
    for batch in iter_batches(folder):
        yield from batch


def write_documents(folder: Path, documents: Iterable[Document], shard_rows: int = 10_000) -> int:
    """Write documents as shards; returns how many were written."""
    writer = ShardWriter(folder, shard_rows=shard_rows)
    for doc in documents:
        writer.write(doc.to_row())
    writer.close()
    return writer.rows_written
