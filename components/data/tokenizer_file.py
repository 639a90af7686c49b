"""The tokenizer file (``tokenizer.json``) that the tokenize stage writes and later stages read.

Shared by every stage that encodes text with the trained tokenizer (finetune, evaluate,
export), so none of them imports the tokenize stage's module.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer


def load_tokenizer(path: Path) -> Tokenizer:
    """Load a saved ``tokenizer.json`` so it encodes exactly as the token files were encoded.

    ``encode_special_tokens`` is not stored in tokenizer.json, so it is set again here.
    """
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True
    return tokenizer
