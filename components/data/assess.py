"""Assessing documents for the ``clean`` stage: the work of its worker processes.

Each document is normalised, put through the quality and repetition rules, hashed for exact
dedup and, when it passes, given its MinHash signature (:func:`assess_batch`). Kept apart from
:mod:`components.data.clean` so that the fork server preloads only what the workers need (numpy,
the rules, the configuration types), not the stage's Parquet and progress machinery.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from components.data.documents import batch_texts
from components.data.filters import TextView, failures
from components.data.minhash import Permutations, signatures
from components.data.stopwords import removable_stop_words

if TYPE_CHECKING:
    from components.data.params import CleanParams

# Runs of white space other than a single plain space (rewriting every space costs a lot).
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_HAS_WORD = re.compile(r"\w")
_WORD = re.compile(r"\w+")
# What str.split() splits on besides " " and "\n": ASCII ones, and the others as characters.
_OTHER_ASCII_SPACES = b"\t\x0b\x0c\r\x1c\x1d\x1e\x1f"
_OTHER_SPACES = frozenset(
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_ASCII = bytes(range(128))
_NEWLINE, _SPACE = ord("\n"), ord(" ")


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the rules make of one document (computed in a worker), without its text.

    ``text`` is the normalised text only where normalising changed it (None: the input is
    normal already, as ingest writes it), and ``output`` what ``clean/`` gets instead of it
    when the document is kept with its stop words removed (``output_words`` its words). The
    text that did not change never travels back from the worker.
    """

    words: int
    reason: str | None
    text_hash: str
    signature: np.ndarray | None = None
    text: str | None = None
    output: str | None = None
    output_words: int | None = None

    @property
    def words_out(self) -> int:
        """Words that ``clean/`` gets if the document is kept."""
        return self.words if self.output_words is None else self.output_words


def normalize(text: str) -> str:
    """NFC, single spaces, no blank or symbol-only lines; paragraphs split by a blank line."""
    return normal_lines(text)[0]


def normal_lines(text: str) -> tuple[str, list[str]]:
    """:func:`normalize`'s text, and its lines (one per paragraph), found on the way."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    lines = _tidy_lines(text)
    if lines is not None:
        return text, lines
    # str.split() collapses every run of Unicode white space and strips the ends, in C:
    # twice as fast as a regular expression over every character.
    words = (" ".join(line.split()) for line in text.split("\n"))
    lines = [line for line in words if _HAS_WORD.search(line)]
    return "\n\n".join(lines), lines


def _tidy_lines(text: str) -> list[str] | None:
    """The lines of ``text`` if :func:`normalize` would leave it as it is, else None.

    Lines separated by one blank line, each with a word character, single plain spaces
    inside and none at either end: checked on the UTF-8 bytes with a few numpy passes,
    where normalising splits every line into words and joins them again. (Byte searches
    for each bad pair of white-space characters cost four times as much: spaces are
    everywhere, and each one starts a comparison.)
    """
    data = text.encode("utf-8", "surrogatepass")
    if len(data.translate(None, _OTHER_ASCII_SPACES)) != len(data):
        return None
    if not _OTHER_SPACES.isdisjoint(data.translate(None, _ASCII).decode("utf-8", "surrogatepass")):
        return None
    codes = np.frombuffer(data, dtype=np.uint8)
    newline = codes == _NEWLINE
    white = newline | (codes == _SPACE)
    if not codes.size or white[0] or white[-1]:
        return None
    breaks = newline[1:] & newline[:-1]  # where a blank line starts (two line breaks)
    if np.count_nonzero(white[1:] & white[:-1]) != np.count_nonzero(breaks):
        return None  # two spaces, or a space next to a line break
    if (breaks[1:] & breaks[:-1]).any():
        return None  # two blank lines in a row
    if np.count_nonzero(newline) != 2 * np.count_nonzero(breaks):
        return None  # a line break that is not a blank line
    lines = text.split("\n\n")
    return lines if all(map(_HAS_WORD.search, lines)) else None


def remove_stop_words(text: str, stops: frozenset[str]) -> str:
    """Token-level stop-word removal (for classical NLP uses, not for LM training)."""
    kept = _WORD.sub(lambda m: "" if m.group().lower() in stops else m.group(), text)
    paragraphs = (_SPACES.sub(" ", p).strip() for p in kept.split("\n\n"))
    return "\n\n".join(p for p in paragraphs if _HAS_WORD.search(p))


def assess_batch(
    batch: pa.RecordBatch, cfg: CleanParams, permutations: Permutations | None = None
) -> list[Assessment]:
    """Normalise and filter a batch's texts; signatures (with ``permutations``) for those kept.

    ``batch`` needs only a ``text`` column.
    """
    texts = batch_texts(batch)
    normal = [normal_lines(text) for text in texts]
    views = TextView.batch([text for text, _ in normal], [lines for _, lines in normal])
    results = []
    for text, view, reason in zip(texts, views, failures(views, cfg), strict=True):
        output = output_words = None
        if reason is None and cfg.remove_stopwords:
            output = remove_stop_words(view.text, removable_stop_words(cfg.language))
            output_words = len(output.split())
        changed = view.text if view.text != text else None
        digest = view.arrays.digest()
        results.append(
            Assessment(view.word_count, reason, digest, None, changed, output, output_words)
        )
    if permutations is None:
        return results
    return _with_signatures(results, views, cfg.dedup.shingle_words, permutations)


def _with_signatures(
    results: list[Assessment], views: list[TextView], shingle_words: int, perms: Permutations
) -> list[Assessment]:
    """Add MinHash signatures to the documents the filters kept."""
    kept = [i for i, a in enumerate(results) if a.reason is None]
    sigs = signatures([views[i].lower_words.hashes for i in kept], shingle_words, perms)
    for index, signature in zip(kept, sigs, strict=True):
        results[index] = replace(results[index], signature=signature)
    return results
