"""Labelled text for classification: builtin movie-review sets or a user's table.

Sources: ``builtin:movie-reviews`` (10,605 Rotten Tomatoes snippets rated by people, labelled
by the sign of their mean rating), ``builtin:questions`` (the 5,381 distinct TREC training
questions, labelled by their answer type: abbreviation, description, entity, human,
location or number), ``builtin:polarity`` (200 movie-review sentences in gensim's test data,
fastText ``__label__pos`` lines), a CSV, TSV, JSONL or Parquet file, or
``hf:<name>``: a Hugging Face ``datasets`` dataset (a folder saved with ``save_to_disk``, a
local data folder, or a name that ``datasets.load_dataset`` resolves), each with
configurable text and label columns. Labels may be strings or integers; they are mapped to
class indices in sorted order. Rows without text or label, and repeats of a text seen in an
earlier row (they would leak between the splits), are counted and dropped, never fatal; a
missing column, an empty dataset or a single class is one clear error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.core.errors import SourceError
from components.data.sources import builtin_path

log = logging.getLogger(__name__)

FASTTEXT_PREFIX = "__label__"
READERS = {
    ".csv": lambda path: pd.read_csv(path),
    ".tsv": lambda path: pd.read_csv(path, sep="\t"),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": lambda path: pd.read_parquet(path),
}


@dataclass(frozen=True)
class LabelledData:
    """Texts with class indices; ``label_names[i]`` names class ``i``."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    dropped: dict[str, int] = field(default_factory=dict)

    def class_counts(self) -> dict[str, int]:
        """Examples per class name."""
        counts = pd.Series(self.labels).value_counts()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(self.label_names)}


def _decode(line: bytes) -> str:
    """UTF-8, else Windows-1252: older corpora (Pang & Lee's among them) use the latter."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("cp1252", errors="replace")


def read_fasttext(path: Path) -> pd.DataFrame:
    """``__label__X some text`` lines -> a frame with ``text`` and ``label`` columns."""
    rows = []
    for line in map(_decode, path.read_bytes().splitlines()):
        tag, _, text = line.partition(" ")
        label = tag.removeprefix(FASTTEXT_PREFIX) if tag.startswith(FASTTEXT_PREFIX) else None
        rows.append({"text": text.strip(), "label": label})
    return pd.DataFrame(rows, columns=["text", "label"])


def read_rated(path: Path) -> pd.DataFrame:
    """``id<TAB>mean rating<TAB>text`` lines -> ``text`` and ``label`` (pos above 0, neg below).

    A snippet rated exactly 0 is neither: its label is left empty, so it is counted and
    dropped like any row without a label. A line that is not three fields counts likewise.
    """
    rows = []
    for line in map(_decode, path.read_bytes().splitlines()[1:]):  # after the header
        _, _, rest = line.partition("\t")
        rating, _, text = rest.partition("\t")
        try:
            score = float(rating)
        except ValueError:
            score = 0.0
        label = "pos" if score > 0 else "neg" if score < 0 else None
        rows.append({"text": text.strip(), "label": label})
    return pd.DataFrame(rows, columns=["text", "label"])


def read_questions(path: Path) -> pd.DataFrame:
    """``TYPE:subtype question`` lines -> ``text`` and ``label`` (the coarse type, ``LOC``).

    The shipped file holds TREC's nested training sets (1,000 to 5,500 questions) one after
    the other, so most questions appear several times: :func:`load_labelled` keeps the first.
    A line without a ``TYPE:`` tag gets no label, and is counted and dropped.
    """
    rows = []
    for line in map(_decode, path.read_bytes().splitlines()):
        tag, _, text = line.partition(" ")
        coarse, colon, _ = tag.partition(":")
        rows.append({"text": text.strip(), "label": coarse if colon and coarse else None})
    return pd.DataFrame(rows, columns=["text", "label"])


def read_hf(name: str, root: Path, split: str) -> pd.DataFrame:
    """One split of a ``datasets`` dataset: a saved folder, a data folder, or a hub name."""
    import datasets

    local = root / Path(name).expanduser()
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(str(local))
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(str(local) if local.is_dir() else name, split=split)
    except KeyError:
        raise SourceError(
            f"hf:{name} has no split {split!r} (set finetune.dataset_split)"
        ) from None
    except (
        OSError,
        ValueError,
        ConnectionError,
        datasets.exceptions.DatasetNotFoundError,
    ) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SourceError(f"hf:{name} could not be loaded: {message}") from None
    return data.to_pandas()


BUILTIN_READERS = {
    "builtin:movie-reviews": read_rated,
    "builtin:questions": read_questions,
    "builtin:polarity": read_fasttext,
}


def read_table(source: str, root: Path, split: str = "train") -> pd.DataFrame:
    """The raw table behind ``source`` (builtin name, ``hf:`` dataset, or a file in ``root``)."""
    if source in BUILTIN_READERS:
        name = source.removeprefix("builtin:")
        return BUILTIN_READERS[source](builtin_path(name))
    if source.startswith("hf:"):
        return read_hf(source.removeprefix("hf:"), root, split)
    if source.startswith("builtin:"):
        known = ", ".join(BUILTIN_READERS)
        raise SourceError(f"unknown labelled dataset {source!r}; builtin: {known}")
    path = root / Path(source).expanduser()
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise SourceError(f"{path}: unsupported format; use one of {', '.join(READERS)}")
    if not path.is_file():
        raise SourceError(f"labelled dataset not found: {path}")
    try:
        return reader(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise SourceError(f"{path} could not be read: {error}") from None


def load_labelled(
    source: str,
    root: Path,
    text_column: str = "text",
    label_column: str = "label",
    split: str = "train",
) -> LabelledData:
    """Load and check a labelled dataset (``split`` applies to ``hf:`` datasets).

    Raises:
        SourceError: unreadable source, missing column, no usable rows, or a single class.
    """
    table = read_table(source, root, split)
    columns = [text_column, label_column]
    if source in BUILTIN_READERS:
        table = table.rename(columns={"text": text_column, "label": label_column})
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SourceError(
            f"{source}: no column {', '.join(map(repr, missing))}; columns are "
            f"{', '.join(map(str, table.columns))} (set the text and label columns)"
        )
    return _checked(
        source, table[columns].rename(columns={text_column: "text", label_column: "label"})
    )


def _checked(source: str, table: pd.DataFrame) -> LabelledData:
    """Drop unusable and repeated rows (counted), then require at least two classes."""
    no_label = table["label"].isna()
    no_text = table["text"].isna() | (table["text"].astype(str).str.strip() == "")
    usable = ~(no_label | no_text)
    # A text met again would land in two splits; the first row's label is the one kept.
    texts = table["text"].astype(str).str.strip().where(usable)  # unusable rows repeat nothing
    repeated = usable & texts.duplicated()
    dropped = {
        "missing_label": int(no_label.sum()),
        "empty_text": int((no_text & ~no_label).sum()),
        "duplicate_text": int(repeated.sum()),
    }
    dropped = {reason: count for reason, count in dropped.items() if count}
    if dropped:
        log.warning("%s: dropped %s", source, dropped)
    table = table[usable & ~repeated]
    if table.empty:
        raise SourceError(f"{source}: no usable rows (text and label both present)")
    names = sorted({str(label) for label in table["label"]})
    if len(names) < 2:
        raise SourceError(f"{source}: a single class ({names[0]!r}); classification needs two")
    index = {name: i for i, name in enumerate(names)}
    return LabelledData(
        texts=table["text"].astype(str).tolist(),
        labels=[index[str(label)] for label in table["label"]],
        label_names=names,
        dropped=dropped,
    )


def stratified_split(
    labels: list[int], val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Seeded train/val/test indices with each class in the same proportion in every part.

    Raises:
        SourceError: a class has too few examples to appear in every part.
    """
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    # Whole counts: fractions like 0.1 + 0.2 would round up to one example too many.
    n_val, n_test = round(len(labels) * val_fraction), round(len(labels) * test_fraction)
    try:
        train, rest = train_test_split(
            indices, test_size=n_val + n_test, stratify=labels, random_state=seed
        )
        rest_labels = [labels[i] for i in rest]
        val, test = train_test_split(
            rest, test_size=n_test, stratify=rest_labels, random_state=seed
        )
    except ValueError as error:
        raise SourceError(f"cannot split {len(labels)} examples by class: {error}") from None
    return sorted(train), sorted(val), sorted(test)
