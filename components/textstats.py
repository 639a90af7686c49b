"""Per-document text statistics shared by the clean and validate stages and the benchmarks."""

from __future__ import annotations

import hashlib
import re

# Wikitext that must never survive into plain text (checked by the validate suite).
MARKUP_TOKENS = ("{{", "}}", "[[", "<ref", "{|")
_MARKUP_RE = re.compile("|".join(re.escape(token) for token in MARKUP_TOKENS))
_WORD_RE = re.compile(r"\w+")


def lower_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words, punctuation stripped (for stop words and hashing)."""
    return _WORD_RE.findall(text.lower())


def markup_leftovers(text: str) -> int:
    """Number of wikitext markup tokens left in ``text``."""
    return len(_MARKUP_RE.findall(text))


def stop_word_ratio(words: list[str], stop_words: frozenset[str]) -> float:
    """Fraction of ``words`` (already lower-cased) that are stop words; 0 for no words."""
    if not words:
        return 0.0
    return sum(word in stop_words for word in words) / len(words)


def hash_words(words: list[str]) -> str:
    """Hash of a lower-cased word sequence (see :func:`text_hash`)."""
    return hashlib.sha1(" ".join(words).encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    """Hash of the text up to case, punctuation and white space: equal for exact duplicates."""
    return hash_words(lower_words(text))
