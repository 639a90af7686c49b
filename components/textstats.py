"""Per-document text statistics shared by the clean and validate stages and the benchmarks."""

from __future__ import annotations

import re

from components.wordarrays import Words, hash_set

# Wikitext that must never survive into plain text (checked by the validate suite).
MARKUP_TOKENS = ("{{", "}}", "[[", "<ref", "{|")
_MARKUP_RE = re.compile("|".join(re.escape(token) for token in MARKUP_TOKENS))


def markup_leftovers(text: str) -> int:
    """Number of wikitext markup tokens left in ``text``."""
    return len(_MARKUP_RE.findall(text))


def stop_word_ratio(words: Words, stop_words: frozenset[str]) -> float:
    """Fraction of ``words`` (lower-cased words) that are stop words; 0 for no words."""
    if not len(words):
        return 0.0
    return float(words.among(hash_set(stop_words)).mean())
