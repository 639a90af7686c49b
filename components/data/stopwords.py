"""Stop-word lists: Gopher's eight English words, or stopwordsiso's list for any language."""

from __future__ import annotations

from functools import cache

import stopwordsiso

from components.data.wordarrays import Words, hash_set

# Rae et al. 2021 (Gopher), appendix A: keep documents with at least two of these words.
GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})


@cache
def stop_words(language: str, kind: str = "auto") -> frozenset[str]:
    """The lower-cased stop-word set for ``language``.

    Args:
        language: ISO 639-1 code, such as ``en``, ``de`` or ``bg``.
        kind: ``gopher`` (English only), ``stopwordsiso``, or ``auto`` (Gopher's list for
            English, stopwordsiso's otherwise).
    """
    if kind == "auto":
        kind = "gopher" if language == "en" else "stopwordsiso"
    if kind == "gopher":
        return GOPHER_STOP_WORDS
    return frozenset(word.lower() for word in stopwordsiso.stopwords(language))


@cache
def removable_stop_words(language: str) -> frozenset[str]:
    """The full list used for token-level stop-word removal (always stopwordsiso's)."""
    return stop_words(language, "stopwordsiso")


def stop_word_ratio(words: Words, stops: frozenset[str]) -> float:
    """Fraction of ``words`` (lower-cased words) that are in ``stops``; 0 for no words."""
    if not len(words):
        return 0.0
    return float(words.among(hash_set(stops)).mean())
