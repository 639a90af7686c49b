"""Shingle hashing and the exact / near-duplicate detector."""

import json
import logging
import os
import random
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash

from components.core.errors import ConfigError
from components.data.dedup import (
    Deduplicator,
    Permutations,
    index_bytes,
    shingle_hashes,
    signature,
    signatures,
)
from components.data.params import DedupParams
from components.data.wordarrays import TextArrays, hash_strings

ROOT = Path(__file__).resolve().parents[3]
VOCABULARY = [f"w{i}" for i in range(500)]


def _text(seed, n=300):
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


def _edited(text, edits):
    words = text.split()
    for position, word in edits.items():
        words[position] = word
    return " ".join(words)


def _check(dedup, text):
    if not dedup.cfg.near:
        return dedup.check(TextArrays(text).digest(), None)
    words = TextArrays(text).lower_words.hashes
    (signature,) = signatures([words], dedup.cfg.shingle_words, dedup.permutations)
    return dedup.check(TextArrays(text).digest(), signature)


def _in_fresh_processes(text, size, hash_seeds):
    """Shingle hashes of ``text`` (and its ``hash``) from interpreters run side by side."""
    code = (
        "import json, sys; from components.data.dedup import shingle_hashes; "
        "from components.data.wordarrays import TextArrays; "
        "text, size = json.loads(sys.argv[1]); "
        "words = TextArrays(text).lower_words.hashes; "
        "print(json.dumps([shingle_hashes(words, size).tolist(), hash(text)]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps([text, size])],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        for seed in hash_seeds
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    return [json.loads(out) for out in outputs]


def test_shingle_hashes_are_the_same_in_every_process():
    text = _text(1, 40) + " Überstraße naïve"  # ASCII and not
    (first, str_hash_1), (second, str_hash_2) = _in_fresh_processes(text, 5, (1, 2))
    assert str_hash_1 != str_hash_2  # str hashes really differ between these processes ...
    words = TextArrays(text).lower_words.hashes
    assert first == second == shingle_hashes(words, 5).tolist()  # ... shingle hashes do not


def test_shingle_hashes_are_order_sensitive():
    ab, ba = hash_strings(["a", "b"]), hash_strings(["b", "a"])
    assert shingle_hashes(ab, 2).tolist() != shingle_hashes(ba, 2).tolist()
    abc = set(shingle_hashes(hash_strings(["a", "b", "c"]), 2).tolist())
    assert abc.isdisjoint(shingle_hashes(hash_strings(["b", "a", "c"]), 2).tolist())
    words = TextArrays(_text(2, 40)).lower_words.hashes
    forward = set(shingle_hashes(words, 5).tolist())
    assert forward.isdisjoint(shingle_hashes(words[::-1], 5).tolist())


@pytest.mark.parametrize(
    ("words", "size", "count"),
    [
        (["a", "b", "c", "d"], 2, 3),
        (["a", "b", "a", "b", "a"], 2, 2),  # "a b" and "b a", each kept once
        (["a", "b"], 5, 1),  # fewer words than a shingle: one shingle of all of them
        (["a", "b", "c"], 1, 3),
        ([], 5, 0),
    ],
    ids=["distinct", "repeated", "short-text", "unigrams", "no-words"],
)
def test_shingle_counts(words, size, count):
    hashes = shingle_hashes(hash_strings(words), size)
    assert len(hashes) == count == len(set(hashes.tolist()))
    assert hashes.dtype == np.uint32


@pytest.mark.parametrize("shingles", [0, 1, 300, 20_000], ids=["empty", "one", "some", "blocks"])
def test_signature_equals_datasketchs_minhash(shingles):
    cfg = DedupParams(num_perm=64, seed=7)
    hashes = np.unique(np.random.default_rng(shingles).integers(0, 2**32, shingles, np.uint32))
    reference = MinHash(num_perm=64, seed=7, scheme="affine32", hashfunc=int)
    reference.update_batch(hashes.tolist())
    ours = signature(hashes, Permutations.of(cfg))
    assert ours.dtype == np.uint32
    assert ours.tolist() == reference.hashvalues.tolist()


@pytest.mark.parametrize(("num_perm", "seed"), [(16, 0), (128, 1), (256, 12345)])
def test_permutations_are_datasketchs(num_perm, seed):
    ours = Permutations.of(DedupParams(num_perm=num_perm, seed=seed))
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    assert (ours.a.tolist(), ours.b.tolist()) == (a.tolist(), b.tolist())
    assert ours.a.dtype == ours.b.dtype == np.uint32


def test_worker_side_of_clean_does_not_load_datasketch():
    code = "import sys, components.data.clean; print('datasketch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_exact_duplicates_up_to_case_punctuation_and_white_space():
    dedup = Deduplicator(DedupParams(near=False))
    assert _check(dedup, "The River, runs through the town!") is None
    assert _check(dedup, "the   river runs\nthrough -- the TOWN") == "exact_duplicate"
    assert _check(dedup, "The river runs through a town.") is None


def test_exact_reason_wins_over_near():
    dedup = Deduplicator(DedupParams())
    text = _text(3)
    assert _check(dedup, text) is None
    assert _check(dedup, text.upper() + "!") == "exact_duplicate"


def test_near_duplicates_are_caught_and_distinct_texts_kept():
    dedup = Deduplicator(DedupParams(threshold=0.8))
    original = _text(4)
    assert _check(dedup, original) is None
    assert _check(dedup, _edited(original, {100: "changed"})) == "near_duplicate"
    assert _check(dedup, _edited(original, {50: "edited", 250: "altered"})) == "near_duplicate"
    assert [_check(dedup, _text(seed)) for seed in range(10, 20)] == [None] * 10


def test_the_first_occurrence_is_the_one_kept():
    original = _text(5)
    variant = _edited(original, {10: "changed", 290: "edited"})
    forward, backward = Deduplicator(DedupParams()), Deduplicator(DedupParams())
    assert [_check(forward, t) for t in (original, variant)] == [None, "near_duplicate"]
    assert [_check(backward, t) for t in (variant, original)] == [None, "near_duplicate"]
    exact = Deduplicator(DedupParams(near=False))
    assert [_check(exact, t) for t in ("one text", "two", "One text.")] == [
        None,
        None,
        "exact_duplicate",
    ]


@pytest.mark.parametrize(
    ("exact", "near", "reasons"),
    [
        (False, False, [None, None, None]),
        (True, False, [None, "exact_duplicate", None]),
        (False, True, [None, "near_duplicate", "near_duplicate"]),
        (True, True, [None, "exact_duplicate", "near_duplicate"]),
    ],
    ids=["neither", "exact-only", "near-only", "both"],
)
def test_switches(exact, near, reasons):
    dedup = Deduplicator(DedupParams(exact=exact, near=near))
    text = _text(6)
    same, similar = text.upper(), _edited(text, {150: "changed"})
    assert [_check(dedup, t) for t in (text, same, similar)] == reasons


def _fill(dedup: Deduplicator, count: int, first: int = 0) -> None:
    """Keep ``count`` distinct documents (random signatures never collide in a band)."""
    rng = np.random.default_rng(first)
    for i in range(first, first + count):
        signature = rng.integers(0, 2**32, dedup.cfg.num_perm, dtype=np.uint32)
        assert dedup.check(f"{i:040x}", signature) is None


@pytest.mark.parametrize("near", [False, True], ids=["exact", "exact-and-near"])
def test_index_memory_per_document_is_as_documented(near):
    dedup = Deduplicator(DedupParams(near=near))
    _fill(dedup, 10)  # the index exists, and datasketch's first allocations are done
    count = 5_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _fill(dedup, count, first=10)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    bands = dedup._near_index()[0].b if near else 0
    # Hash tables grow by doubling, so the cost per document moves with the count.
    assert 0.6 < grown / index_bytes(count, bands, dedup.cfg.num_perm) < 1.6


@pytest.mark.parametrize(("equal_share", "reason"), [(0.6, None), (0.9, "near_duplicate")])
def test_an_lsh_candidate_is_a_duplicate_only_at_the_threshold(equal_share, reason):
    dedup = Deduplicator(DedupParams(threshold=0.8))
    lsh = dedup._near_index()[0]
    rng = np.random.default_rng(0)
    kept = rng.integers(0, 2**32, dedup.cfg.num_perm, dtype=np.uint32)
    assert dedup.check("a" * 40, kept) is None
    # Equal in the first band (an LSH candidate), then in ``equal_share`` of all values.
    other = rng.integers(0, 2**32, dedup.cfg.num_perm, dtype=np.uint32)
    equal = max(lsh.r, int(equal_share * dedup.cfg.num_perm))
    other[:equal] = kept[:equal]
    assert dedup.check("b" * 40, other) == reason


def test_an_index_too_large_for_the_machine_is_announced(caplog):
    with caplog.at_level(logging.WARNING, logger="components.data.dedup"):
        _fill(Deduplicator(DedupParams(), documents=1_000), 1)
        assert not caplog.records
        _fill(Deduplicator(DedupParams(), documents=10**12), 1)
    (record,) = caplog.records
    assert "clean.dedup.near: false" in record.getMessage()


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.9, 16), (0.95, 32)])
def test_a_threshold_the_index_cannot_serve_is_a_config_error_before_any_decision(
    threshold, num_perm
):
    dedup = Deduplicator(DedupParams(threshold=threshold, num_perm=num_perm))
    with pytest.raises(ConfigError, match=r"clean\.dedup\.threshold: .* raise num_perm"):
        dedup.prepare().result()
    assert dedup.ready()  # a failed build is over too: the next check raises its error
    with pytest.raises(ConfigError, match=r"clean\.dedup\.threshold"):
        dedup.check("a" * 40, np.zeros(num_perm, dtype=np.uint32))
    Deduplicator(DedupParams(threshold=threshold, near=False)).prepare().result()  # no index


def test_ready_only_once_the_index_is_built(monkeypatch):
    release, build = threading.Event(), Deduplicator._build_index
    monkeypatch.setattr(Deduplicator, "_build_index", lambda self: release.wait(5) and build(self))
    dedup = Deduplicator(DedupParams())
    assert not dedup.ready()
    release.set()
    dedup.prepare().result()
    assert dedup.ready()
    assert _check(dedup, _text(6)) is None
