"""Progress bars for long work: shown on a terminal, silent in logs and CI."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm  # not tqdm.auto: its asyncio import costs each stage 20 ms


def progress(**kwargs: Any) -> tqdm:
    """A tqdm bar on stderr that is disabled when stderr is not a terminal."""
    kwargs.setdefault("disable", not sys.stderr.isatty())
    kwargs.setdefault("unit_scale", True)
    kwargs.setdefault("leave", False)
    return tqdm(file=sys.stderr, **kwargs)
