"""Out-of-core exact and near-duplicate removal, held to an in-memory MinHash LSH index."""

import hashlib
import random
import tracemalloc

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHashLSH

from components.data.dedup import EXACT, KEPT, NEAR, REASONS, DedupStore, partitions
from components.data.minhash import SCHEME, Permutations, lsh_bands, signatures
from components.data.params import DedupParams
from components.data.wordarrays import TextArrays

VOCABULARY = [f"w{i}" for i in range(500)]


def _text(seed, n=300):
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCABULARY) for _ in range(n))


def _edited(text, edits):
    words = text.split()
    for position, word in edits.items():
        words[position] = word
    return " ".join(words)


def _records(cfg, texts):
    """Each text's digest and signature, as clean's workers compute them."""
    arrays = [TextArrays(t) for t in texts]
    words = [a.lower_words.hashes for a in arrays]
    return [a.digest() for a in arrays], signatures(words, cfg.shingle_words, Permutations.of(cfg))


def _store(tmp_path, cfg, expected=None, name="dedup"):
    bands = lsh_bands(cfg) if cfg.near else []
    return DedupStore(tmp_path / name, cfg, bands, expected or 1)


def _decide(tmp_path, cfg, digests, sigs, expected=None, batch=7):
    store = _store(tmp_path, cfg, expected)
    for start in range(0, len(digests), batch):  # several appends, as batches come
        store.add(digests[start : start + batch], sigs[start : start + batch])
    try:
        return store.decide()
    finally:
        store.close()


def _reasons(tmp_path, cfg, texts):
    decisions = _decide(tmp_path, cfg, *_records(cfg, texts))
    return [REASONS.get(int(d)) for d in decisions]


class InMemoryIndex:
    """The rule in memory: datasketch's MinHashLSH holding every document kept so far."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.digests = set()
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self.kept = []

    def check(self, digest, signature):
        if self.cfg.exact and digest in self.digests:
            return EXACT
        if self.cfg.near:
            minhash = LeanMinHash(seed=self.cfg.seed, hashvalues=signature, scheme=SCHEME)
            for key in self.lsh.query(minhash):
                equal = np.count_nonzero(signature == self.kept[int(key)])
                if equal >= self.cfg.threshold * signature.size:
                    return NEAR
            self.lsh.insert(str(len(self.kept)), minhash, check_duplication=False)
            self.kept.append(signature)
        self.digests.add(digest)
        return KEPT


def test_exact_duplicates_up_to_case_punctuation_and_white_space(tmp_path):
    texts = ["The River, runs through the town!", "the   river runs\nthrough -- the TOWN"]
    texts.append("The river runs through a town.")
    assert _reasons(tmp_path, DedupParams(near=False), texts) == [None, "exact_duplicate", None]


def test_exact_reason_wins_over_near(tmp_path):
    text = _text(3)
    reasons = _reasons(tmp_path, DedupParams(), [text, text.upper() + "!"])
    assert reasons == [None, "exact_duplicate"]


def test_near_duplicates_are_caught_and_distinct_texts_kept(tmp_path):
    original = _text(4)
    texts = [original, _edited(original, {100: "changed"})]
    texts.append(_edited(original, {50: "edited", 250: "altered"}))
    texts += [_text(seed) for seed in range(10, 20)]
    reasons = _reasons(tmp_path, DedupParams(threshold=0.8), texts)
    assert reasons == [None, "near_duplicate", "near_duplicate"] + [None] * 10


def test_the_first_occurrence_is_the_one_kept(tmp_path):
    original = _text(5)
    variant = _edited(original, {10: "changed", 290: "edited"})
    cfg = DedupParams()
    assert _reasons(tmp_path / "a", cfg, [original, variant]) == [None, "near_duplicate"]
    assert _reasons(tmp_path / "b", cfg, [variant, original]) == [None, "near_duplicate"]


def test_a_copy_of_a_dropped_document_is_a_near_duplicate_of_the_kept_one(tmp_path):
    """Only kept documents count: the copy's first occurrence was dropped, so it is `near`."""
    original = _text(8)
    variant = _edited(original, {150: "changed"})
    texts = [original, variant, variant.upper()]
    assert _reasons(tmp_path, DedupParams(), texts) == [None, "near_duplicate", "near_duplicate"]


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
def test_switches(tmp_path, exact, near, reasons):
    text = _text(6)
    texts = [text, text.upper(), _edited(text, {150: "changed"})]
    assert _reasons(tmp_path, DedupParams(exact=exact, near=near), texts) == reasons


@pytest.mark.parametrize(("equal_share", "decision"), [(0.6, KEPT), (0.9, NEAR)])
def test_a_band_candidate_is_a_duplicate_only_at_the_threshold(tmp_path, equal_share, decision):
    cfg = DedupParams(threshold=0.8)
    (start, end), *_ = lsh_bands(cfg)
    rng = np.random.default_rng(0)
    kept = rng.integers(0, 2**32, cfg.num_perm, dtype=np.uint32)
    # Equal in the first band (a candidate), then in ``equal_share`` of all values.
    other = rng.integers(0, 2**32, cfg.num_perm, dtype=np.uint32)
    equal = max(end - start, int(equal_share * cfg.num_perm))
    other[:equal] = kept[:equal]
    decisions = _decide(tmp_path, cfg, ["a" * 40, "b" * 40], [kept, other])
    assert decisions.tolist() == [KEPT, decision]


def test_equal_values_outside_every_band_are_no_candidate(tmp_path):
    """The threshold is reached, but no band is equal whole: LSH never compares the two."""
    cfg = DedupParams(threshold=0.5)
    bands = lsh_bands(cfg)
    rng = np.random.default_rng(1)
    kept = rng.integers(0, 2**32, cfg.num_perm, dtype=np.uint32)
    other = kept.copy()
    for start, _ in bands:
        other[start] ^= 1  # one value differs in each band
    assert np.count_nonzero(kept == other) >= cfg.threshold * cfg.num_perm
    decisions = _decide(tmp_path, cfg, ["a" * 40, "b" * 40], [kept, other])
    assert decisions.tolist() == [KEPT, KEPT]


def _corpus(seed, count=400):
    """Texts with chains of near copies (a ~ b ~ c, a !~ c), exact copies and copies of copies."""
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        if texts and rng.random() < 0.45:
            source = rng.choice(texts)
            roll = rng.random()
            if roll < 0.3:
                texts.append(source.upper())
                continue
            edits = {rng.randrange(200): f"e{index}_{k}" for k in range(rng.choice([1, 4, 12, 30]))}
            texts.append(_edited(source, edits))
        else:
            texts.append(_text(seed * 10_000 + index, 200))
    return texts


@pytest.mark.parametrize(
    ("seed", "exact", "near", "threshold", "expected"),
    [
        (1, True, True, 0.8, None),
        (2, True, True, 0.5, None),
        (3, False, True, 0.8, None),
        (4, True, False, 0.8, None),
        (5, True, True, 0.8, 10**7),  # many partitions: each record kind spread over 30+ files
        (6, True, True, 0.7, 10**6),
    ],
)
def test_decisions_equal_an_in_memory_index(tmp_path, seed, exact, near, threshold, expected):
    cfg = DedupParams(exact=exact, near=near, threshold=threshold, memory_mb=16)
    digests, sigs = _records(cfg, _corpus(seed))
    index = InMemoryIndex(cfg)
    reference = [index.check(d, s) for d, s in zip(digests, sigs, strict=True)]
    ours = _decide(tmp_path, cfg, digests, sigs, expected=expected).tolist()
    assert ours == reference
    # The corpus does exercise every outcome it can.
    assert {KEPT, EXACT} <= set(ours) if exact else True
    assert NEAR in ours if near else True


def test_partitions_follow_the_memory_param():
    assert partitions(1_000, 256) == 1
    many = partitions(10**8, 256)
    assert many == partitions(10**8, 512) * 2 or many == partitions(10**8, 512) * 2 - 1
    assert many > 1


def test_restore_drops_records_written_after_the_state(tmp_path):
    cfg = DedupParams()
    texts = [_text(30), _text(31), _text(30).upper(), _text(32)]
    digests, sigs = _records(cfg, texts)
    store = _store(tmp_path, cfg)
    store.add(digests[:2], sigs[:2])
    state = store.sync()
    store.add(digests[2:], sigs[2:])  # a shard whose marker was never written
    store.close()
    resumed = _store(tmp_path, cfg)
    resumed.restore(state)
    resumed.add(digests[3:], sigs[3:])  # the copy of text 30 is gone, text 32 comes next
    assert resumed.decide().tolist() == [KEPT, KEPT, KEPT]
    resumed.close()


def _random_candidates(count, cfg):
    rng = np.random.default_rng(7)
    sigs = rng.integers(0, 2**32, (count, cfg.num_perm), dtype=np.uint32)
    digests = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(count)]
    return digests, list(sigs)


def test_memory_of_deciding_shrinks_with_the_partitions(tmp_path):
    """The sort of one partition is the big allocation: more partitions, less at once."""
    cfg = DedupParams(num_perm=32, threshold=0.5, memory_mb=16)
    digests, sigs = _random_candidates(60_000, cfg)
    peaks = {}
    for expected in (60_000, 10**7):
        store = _store(tmp_path, cfg, expected, name=f"d{expected}")
        store.add(digests, sigs)
        tracemalloc.start()
        try:
            assert (store.decide() == KEPT).all()
            peaks[store.partitions] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            store.close()
    (one, few), (many, less) = sorted(peaks.items())
    assert one == 1
    assert many > 10
    assert less < few / 3
