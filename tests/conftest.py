"""Shared fixtures: tiny dumps and params anchored in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.config import Params, Paths, PathsParams, parse_params
from tests.dumps import sample_pages, write_dump

# Keep third-party telemetry quiet and local in every test.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def tiny_dump(tmp_path: Path) -> Path:
    """A bz2 dump of :func:`tests.dumps.sample_pages` (3 articles, 3 other pages)."""
    return write_dump(tmp_path / "dumps" / "tinywiki-pages-articles.xml.bz2", sample_pages())


@pytest.fixture
def workspace(tmp_path: Path) -> Paths:
    """Output paths of every stage, inside ``tmp_path``."""
    return Paths.resolve(PathsParams(), tmp_path)


def make_params(**sections: dict) -> Params:
    """Params with the given sections overridden (validated like params.yaml)."""
    return parse_params({name: values for name, values in sections.items()})
