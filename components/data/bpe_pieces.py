r"""Encoding a corpus with the byte-level BPE tokenizer, each distinct piece of text once.

The tokenizer that ``tokenize`` trains (GPT-2's byte-level BPE: no normalizer, Hugging Face's
``ByteLevel`` pre-tokenizer with its regular expression, no prefix space) never lets a token
span a space that follows a non-white-space character:

- every pre-token of that expression that holds a space either starts with it
  (`` ?\p{L}+``, `` ?\p{N}+``, `` ?[^\s\p{L}\p{N}]+``) or is white space only
  (``\s+(?!\S)``, ``\s+``), so a pre-token ends before such a space;
- the expression has no look-behind, and no match before the space looks past it, so the
  text after the space splits as it would alone, and the text before it too;
- BPE merges within a pre-token only.

So a text's ids are the ids of its *pieces*, the text cut before each space that follows a
visible ASCII character (``!`` to ``~``: not white space in any definition of it), one after
the other. Most pieces are words seen before (" the", " of"): a :class:`PieceEncoder` keeps
the ids of up to ``capacity`` distinct pieces and asks the tokenizer only for the others,
once per batch each. Cutting, hashing and gathering are numpy passes over a batch's UTF-8
bytes, read from the Arrow column without a Python string per text; most of the tokenizer's
own time went on pre-tokenizing every word of every text again.

Pieces are told apart by two independent 64-bit hashes of their bytes: the first is the
key, the second is checked on every use. A batch where the two disagree (two pieces whose
first hashes collide, never seen in practice) is encoded by the tokenizer itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import Tokenizer, pre_tokenizers

from components.data.wordarrays import Powers, span_hashes

log = logging.getLogger(__name__)

# Distinct pieces whose ids are kept: the first ones seen, as the tokenizer's own cache
# keeps them. 2**18 (about 12 MB) encodes as fast as 2**20 on a 1 GB dump.
CAPACITY = 1 << 18
_IDS_PER_PIECE = 4  # ids kept per piece that the store starts with room for
# Longer pieces are not kept: they seldom repeat, and the store's size stays bounded.
_MAX_KEPT_BYTES = 32
_WINDOW = 1 << 16  # bytes hashed at once
_SPACE = 0x20
_VISIBLE = (0x21, 0x7E)  # visible ASCII: "!" to "~"
# Two hashes with different bases: a piece is recognised only when both agree.
_KEY_POWERS = Powers()
_CHECK_POWERS = Powers(0xC2B2AE3D27D4EB4F)


def cuts_exactly(tokenizer: Tokenizer) -> bool:
    """Whether ``tokenizer`` encodes a text as its pieces one after the other.

    True for the tokenizer ``tokenize`` trains: no normalizer, the byte-level pre-tokenizer
    with its expression and no prefix space, and no added token matched in the text.
    """
    pre = tokenizer.pre_tokenizer
    added = tokenizer.get_added_tokens_decoder().values()
    return (
        tokenizer.normalizer is None
        and isinstance(pre, pre_tokenizers.ByteLevel)
        and pre.use_regex
        and not pre.add_prefix_space
        and tokenizer.truncation is None
        and all(token.special for token in added)
        and (tokenizer.encode_special_tokens or not added)
    )


@dataclass
class Encoded:
    """The ids of a batch of texts, one text after the other, and each text's token count."""

    ids: np.ndarray  # int64
    counts: np.ndarray  # int64, one per text


@dataclass
class _Pool:
    """The ids of a batch's distinct pieces: a pool of ids, and each piece's start and length."""

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


@dataclass
class _Pieces:
    """Pieces of a batch's bytes ``data``: their spans and their two hashes."""

    data: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    keys: np.ndarray
    checks: np.ndarray

    def __getitem__(self, index: np.ndarray) -> _Pieces:
        """The pieces at ``index``, of the same bytes."""
        starts, ends = self.starts[index], self.ends[index]
        return _Pieces(self.data, starts, ends, self.keys[index], self.checks[index])

    def strings(self) -> list[str]:
        """The pieces as text (whole UTF-8 sequences: pieces start at ASCII spaces or texts)."""
        text = self.data.tobytes()
        spans = zip(self.starts.tolist(), self.ends.tolist(), strict=True)
        return [text[a:b].decode("utf-8") for a, b in spans]


class _Collision(Exception):
    """Two different pieces share a key hash."""


class PieceEncoder:
    """Encodes Arrow string arrays with ``tokenizer``, keeping the ids of pieces seen.

    Gives the ids ``tokenizer.encode_batch_fast(texts, add_special_tokens=False)`` gives.
    """

    def __init__(self, tokenizer: Tokenizer, capacity: int = CAPACITY) -> None:
        if not cuts_exactly(tokenizer):
            raise ValueError("the tokenizer is not a plain byte-level BPE tokenizer")
        self.tokenizer = tokenizer
        self.capacity = capacity
        self._kept = 0  # pieces kept, in slots 0 to _kept - 1
        self._keys = np.zeros(0, dtype=np.uint64)  # the kept pieces' key hashes, sorted
        self._key_slots = np.zeros(0, dtype=np.int64)  # the slot of each of _keys
        self._checks = np.zeros(capacity, dtype=np.uint64)  # per slot, its check hash
        self._offsets = np.zeros(capacity + 1, dtype=np.int64)  # per slot, where its ids start
        self._ids = np.zeros(capacity * _IDS_PER_PIECE, dtype=np.int64)  # slot after slot

    @property
    def kept(self) -> int:
        """Distinct pieces whose ids are kept."""
        return self._kept

    def encode(self, texts: pa.Array) -> Encoded:
        """The ids of ``texts`` (a missing text counts as empty)."""
        try:
            return self._encode(texts)
        except _Collision as collision:
            log.warning("tokenize: %s; the batch is encoded by the tokenizer alone", collision)
            strings = ["" if text is None else text for text in texts.to_pylist()]
            ids, counts = self._encoded(strings)
            return Encoded(ids, counts)

    def _encode(self, texts: pa.Array) -> Encoded:
        data, text_starts = utf8_bytes(texts)
        starts = piece_starts(data, text_starts)
        ends = np.append(starts[1:], data.size)
        keys = piece_hashes(data, starts, ends, _KEY_POWERS)
        checks = piece_hashes(data, starts, ends, _CHECK_POWERS)
        codes, distinct = pd.factorize(keys, sort=False)
        first = _first_occurrences(codes, distinct.size)
        if not np.array_equal(checks, checks[first][codes]):
            raise _Collision("two pieces of a batch share a key")
        pool = self._pool(_Pieces(data, starts, ends, keys, checks)[first])
        lengths = pool.lengths[codes]
        text_of_piece = np.searchsorted(text_starts, starts, side="right") - 1
        counts = np.bincount(text_of_piece, weights=lengths, minlength=len(texts))
        return Encoded(_ragged_take(pool.ids, pool.starts[codes], lengths), counts.astype(np.int64))

    def _pool(self, pieces: _Pieces) -> _Pool:
        """The ids of these distinct pieces: kept ones looked up, the others encoded."""
        slots = self._slots_of(pieces.keys)
        kept, new = np.flatnonzero(slots >= 0), np.flatnonzero(slots < 0)
        if not np.array_equal(self._checks[slots[kept]], pieces.checks[kept]):
            raise _Collision("a piece shares its key with a kept piece")
        kept_starts = self._offsets[slots[kept]]
        kept_lengths = self._offsets[slots[kept] + 1] - kept_starts
        new_ids, new_lengths = self._encode_and_keep(pieces[new])
        lengths = np.empty(slots.size, dtype=np.int64)
        lengths[kept], lengths[new] = kept_lengths, new_lengths
        order = np.concatenate([kept, new])  # the pool holds the kept pieces' ids first
        pool_starts = np.empty(slots.size, dtype=np.int64)
        pool_starts[order] = np.cumsum(lengths[order]) - lengths[order]
        ids = np.concatenate([_ragged_take(self._ids, kept_starts, kept_lengths), new_ids])
        return _Pool(ids, pool_starts, lengths)

    def _encode_and_keep(self, pieces: _Pieces) -> tuple[np.ndarray, np.ndarray]:
        """The tokenizer's ids of these pieces and their lengths; the short ones are kept."""
        ids, lengths = self._encoded(pieces.strings())
        short = np.flatnonzero(pieces.ends - pieces.starts <= _MAX_KEPT_BYTES)
        firsts = np.cumsum(lengths) - lengths
        short_ids = _ragged_take(ids, firsts[short], lengths[short])
        self._keep(pieces[short], short_ids, lengths[short])
        return ids, lengths

    def _slots_of(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, or -1 for a piece not kept."""
        if self._keys.size == 0:
            return np.full(keys.size, -1, dtype=np.int64)
        at = np.searchsorted(self._keys, keys).clip(max=self._keys.size - 1)
        return np.where(self._keys[at] == keys, self._key_slots[at], -1)

    def _encoded(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The tokenizer's ids of ``texts`` (one after the other) and each text's count."""
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        counts = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), np.int64, counts.sum())
        return ids, counts

    def _keep(self, pieces: _Pieces, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Keep the first of these pieces that fit in the capacity (``ids``: theirs)."""
        room = min(pieces.keys.size, self.capacity - self._kept)
        if room <= 0:
            return
        first, last = self._kept, self._kept + room
        keys, slots = pieces.keys[:room], np.arange(first, last)
        order = np.argsort(keys)
        at = np.searchsorted(self._keys, keys[order])
        self._keys = np.insert(self._keys, at, keys[order])
        self._key_slots = np.insert(self._key_slots, at, slots[order])
        self._checks[first:last] = pieces.checks[:room]
        self._offsets[first + 1 : last + 1] = self._offsets[first] + np.cumsum(lengths[:room])
        end = self._offsets[last]
        if end > self._ids.size:
            self._ids = np.concatenate([self._ids, np.zeros(max(end, self._ids.size), np.int64)])
        self._ids[self._offsets[first] : end] = ids[: end - self._offsets[first]]
        self._kept = last


def utf8_bytes(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The texts' UTF-8 bytes one after the other, and where each text starts there.

    Read from the Arrow buffers, without copying; a missing text counts as empty.
    """
    if texts.null_count:
        texts = pc.fill_null(texts, "")
    offset_type = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    _, offsets_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(
        offsets_buffer, offset_type, len(texts) + 1, texts.offset * np.dtype(offset_type).itemsize
    ).astype(np.int64)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer else np.zeros(0, np.uint8)
    return data[offsets[0] : offsets[-1]], offsets[:-1] - offsets[0]


def piece_starts(data: np.ndarray, text_starts: np.ndarray) -> np.ndarray:
    """Where each piece starts in ``data``.

    At each text's start, and before each space that follows a visible ASCII character.
    """
    low, high = _VISIBLE
    before = data[:-1]
    starts = np.zeros(data.size + 1, dtype=bool)
    starts[1:-1] = (data[1:] == _SPACE) & (before >= low) & (before <= high)
    starts[text_starts] = True
    return np.flatnonzero(starts[:-1])


def piece_hashes(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, powers: Powers
) -> np.ndarray:
    """The :func:`span_hashes` of the pieces, a window of about :data:`_WINDOW` bytes at a time.

    A hash depends on its piece's bytes alone, so windows give the hashes the whole would;
    their arrays, and the table of powers, stay the size of a window (and of the longest
    piece), not of the batch.
    """
    hashes = np.empty(starts.size, dtype=np.uint64)
    first = 0
    while first < starts.size:
        last = max(first + 1, int(np.searchsorted(starts, starts[first] + _WINDOW)))
        base, top = starts[first], ends[last - 1]
        hashes[first:last] = span_hashes(
            data[base:top], starts[first:last] - base, ends[first:last] - base, powers
        )
        first = last
    return hashes


def _first_occurrences(codes: np.ndarray, count: int) -> np.ndarray:
    """For each of ``count`` codes, the first position that holds it."""
    first = np.empty(count, dtype=np.int64)
    # Written from the last position to the first: the first position's write is the last.
    first[codes[::-1]] = np.arange(codes.size - 1, -1, -1)
    return first


def _ragged_take(source: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``source[start:start + length]`` for each pair, one after the other."""
    total = int(lengths.sum())
    shifts = starts - (np.cumsum(lengths) - lengths)
    return source[np.repeat(shifts, lengths) + np.arange(total)]
