"""Stop-word lists: Gopher's eight English words, or stopwordsiso's list for any language."""

from __future__ import annotations

from functools import cache

import stopwordsiso

# Rae et al. 2021 (Gopher), appendix A: keep documents with at least two of these words.
GOPHER_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})


def has_language(language: str) -> bool:
    """Whether stopwordsiso ships a list for this ISO 639-1 code."""
    return stopwordsiso.has_lang(language)


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
