"""MinHash signatures: shingle hashes, datasketch's permutations and values, LSH bands."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from components.core.errors import ConfigError
from components.data.minhash import (
    Permutations,
    lsh_bands,
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


def _in_fresh_processes(text, size, hash_seeds):
    """Shingle hashes of ``text`` (and its ``hash``) from interpreters run side by side."""
    code = (
        "import json, sys; from components.data.minhash import shingle_hashes; "
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


def test_documents_permuted_together_get_their_own_signatures():
    """Batched signatures equal one document's at a time: short, empty and long documents."""
    rng = np.random.default_rng(3)
    sizes = [0, 1, 4, 5, 700, 9000, 300, 0, 8000, 200, 2]
    words = [rng.integers(0, 2**63, size, dtype=np.uint64) for size in sizes]
    perms = Permutations.of(DedupParams(num_perm=32, seed=5))
    together = signatures(words, 5, perms)
    alone = [signature(shingle_hashes(w, 5), perms) for w in words]
    assert [s.tolist() for s in together] == [s.tolist() for s in alone]
    assert together[0].tolist() == [np.iinfo(np.uint32).max] * 32  # no words: the maximum


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


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.8, 128), (0.5, 64), (0.9, 256)])
def test_bands_are_datasketchs(threshold, num_perm):
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    bands = lsh_bands(DedupParams(threshold=threshold, num_perm=num_perm))
    assert bands == [(int(s), int(e)) for s, e in lsh.hashranges]
    assert len(bands) == lsh.b
    assert all(end - start == lsh.r for start, end in bands)


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.9, 16), (0.95, 32)])
def test_a_threshold_without_a_banding_is_a_config_error(threshold, num_perm):
    with pytest.raises(ConfigError, match=r"clean\.dedup\.threshold: .* raise num_perm"):
        lsh_bands(DedupParams(threshold=threshold, num_perm=num_perm))
