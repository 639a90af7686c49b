import random
import subprocess
import sys

from components.config import DedupParams
from components.dedup import Deduplicator, shingle_hashes, signatures
from components.textstats import lower_words, text_hash

WORDS = [f"w{i}" for i in range(500)]


def _text(seed, n=300):
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _check(dedup, text):
    (signature,) = signatures([lower_words(text)], dedup.cfg)
    return dedup.check(text_hash(text), signature)


def test_shingle_hashes_are_stable_across_processes():
    words = lower_words(_text(1, 50))
    here = shingle_hashes(words, 5).tolist()
    code = (
        "from components.dedup import shingle_hashes; import sys; "
        f"print(shingle_hashes({words!r}, 5).tolist())"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert str(here) == there.strip()


def test_shingles_are_order_sensitive_and_short_texts_have_one():
    assert set(shingle_hashes(["a", "b", "c"], 2)) != set(shingle_hashes(["b", "a", "c"], 2))
    assert len(shingle_hashes(["a", "b"], 5)) == 1


def test_exact_duplicates_up_to_case_and_punctuation():
    dedup = Deduplicator(DedupParams(near=False))
    assert _check(dedup, "The River, runs!") is None
    assert _check(dedup, "the river runs") == "exact_duplicate"


def test_near_duplicates_are_caught_and_the_first_is_kept():
    dedup = Deduplicator(DedupParams())
    original = _text(1)
    words = original.split()
    words[100] = "changed"
    words[200] = "edited"
    assert _check(dedup, original) is None
    assert _check(dedup, " ".join(words)) == "near_duplicate"
    assert _check(dedup, _text(2)) is None


def test_switches_turn_each_kind_off():
    text = _text(3)
    nothing = Deduplicator(DedupParams(exact=False, near=False))
    assert _check(nothing, text) is None
    assert _check(nothing, text) is None
    near_only = Deduplicator(DedupParams(exact=False))
    assert _check(near_only, text) is None
    assert _check(near_only, text) == "near_duplicate"
