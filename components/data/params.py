"""Params sections of the data stages: ingest, clean, validate and tokenize, and ``data``.

Each is one section of params.yaml; :class:`components.params.Params` assembles them with
the other layers' sections. :class:`DataSections` is what the data stages read of it.
"""

from __future__ import annotations

import shutil
from typing import Literal, Protocol, Self

import stopwordsiso
from pydantic import Field, field_validator, model_validator

from components.core.schema import Section

MAX_NGRAM = 10  # the longest word n-gram a repetition rule may look at


class DataParams(Section):
    """Section ``data``: where ingest, clean and validate run their per-document work.

    ``local`` is a process pool on this machine (``<stage>.workers`` processes); ``dask``
    sends the same work to the workers of a Dask cluster. Outputs are the same bytes either
    way.
    """

    engine: Literal["local", "dask"] = "local"
    # null: Dask's own configuration (its scheduler-address key, DASK_SCHEDULER_ADDRESS).
    scheduler: str | None = Field(
        None,
        pattern=r"^((tcp|tls|ucx|ws|wss)://)?[^\s/]+:\d+$",
        description="a Dask scheduler address such as tcp://host:8786",
    )

    @model_validator(mode="after")
    def _check_dask_usable(self) -> Self:
        if self.engine != "dask":
            return self
        try:  # dask is an optional extra: imported only when it is asked for
            from components.core.dask_engine import SCHEDULER_VARIABLE, default_address
        except ImportError:
            raise ValueError(
                "engine: 'dask' needs the dask extra: pip install 'wikilm[dask]'"
            ) from None
        if not (self.scheduler or default_address()):
            raise ValueError(
                "scheduler: engine 'dask' needs a scheduler address: set data.scheduler "
                f"(tcp://host:8786) or the {SCHEDULER_VARIABLE} environment variable"
            )
        return self


class IngestParams(Section):
    """Stage ``ingest``: read a MediaWiki XML dump into Parquet shards of plain text."""

    source: str = "builtin:enwiki-sample"
    # For source "latest": the newest <wiki>-latest-pages-articles.xml.bz2 on the mirror.
    mirror: str = Field("https://dumps.wikimedia.org", pattern=r"^https?://")
    wiki: str = Field("enwiki", pattern=r"^[a-z][a-z0-9_]*wiki$")
    checksum: str | None = Field(
        None,
        pattern=r"^(sha1|md5):[0-9a-fA-F]+$",
        description="expected 'sha1:<hex>' or 'md5:<hex>'",
    )
    keep_disambiguation: bool = False
    keep_headings: bool = True
    min_chars: int = Field(1, ge=1, description="pages with less plain text count as empty")
    shard_docs: int = Field(10_000, ge=1)
    workers: int = Field(0, ge=0, description="0 means one per CPU core")
    # lbzip2 decodes bz2 on several threads with less CPU than Python's bz2 module (libbz2):
    # "auto" uses it when it is installed.
    bz2_decoder: Literal["auto", "lbzip2", "python"] = "auto"
    download_timeout_s: float = Field(60.0, gt=0)
    # 100 GB of XML (all of English Wikipedia) is about 24 GB of bz2: 200 fits any dump, yet
    # stops a wrong URL or a server sending without end before it fills the disk.
    max_download_gb: float = Field(
        200.0, gt=0, description="a download larger than this many GB (10^9 bytes) is refused"
    )

    @field_validator("checksum")
    @classmethod
    def _check_checksum_length(cls, checksum: str | None) -> str | None:
        if checksum:
            algo, digest = checksum.split(":", 1)
            expected = {"sha1": 40, "md5": 32}[algo]
            if len(digest) != expected:
                raise ValueError(f"a {algo} digest has {expected} hex digits")
        return checksum

    @model_validator(mode="after")
    def _check_latest_checksum(self) -> Self:
        if self.source == "latest" and self.checksum:
            raise ValueError(
                "checksum: source 'latest' is checked against the sha1 the mirror publishes "
                "for its newest dump; remove checksum, or name the dump's URL as source"
            )
        return self

    @model_validator(mode="after")
    def _check_lbzip2_installed(self) -> Self:
        # Looked up here, not through components.data.lbzip2: core imports no other layer.
        if self.bz2_decoder == "lbzip2" and shutil.which("lbzip2") is None:
            raise ValueError(
                "bz2_decoder: lbzip2 is not installed (apt install lbzip2); "
                "or set 'auto' to use it only where it is"
            )
        return self


class RepetitionParams(Section):
    """Gopher repetition thresholds (Rae et al. 2021, table A1): max fractions allowed."""

    duplicate_line_fraction: float = Field(0.30, ge=0, le=1)
    duplicate_paragraph_fraction: float = Field(0.30, ge=0, le=1)
    duplicate_line_char_fraction: float = Field(0.20, ge=0, le=1)
    duplicate_paragraph_char_fraction: float = Field(0.20, ge=0, le=1)
    top_ngram_char_fraction: dict[int, float] = {2: 0.20, 3: 0.18, 4: 0.16}
    duplicate_ngram_char_fraction: dict[int, float] = {
        5: 0.15,
        6: 0.14,
        7: 0.13,
        8: 0.12,
        9: 0.11,
        10: 0.10,
    }

    @field_validator("top_ngram_char_fraction", "duplicate_ngram_char_fraction")
    @classmethod
    def _check_ngram_sizes(cls, limits: dict[int, float]) -> dict[int, float]:
        bad = sorted(n for n in limits if not 1 <= n <= MAX_NGRAM)
        if bad:
            raise ValueError(f"n-gram sizes must be between 1 and {MAX_NGRAM}, got {bad}")
        if any(not 0 <= limit <= 1 for limit in limits.values()):
            raise ValueError("fractions must be between 0 and 1")
        return limits


class DedupParams(Section):
    """Exact (normalised-text hash) and near-duplicate (MinHash LSH) removal."""

    exact: bool = True
    near: bool = True
    threshold: float = Field(0.8, gt=0, lt=1, description="Jaccard similarity")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_words: int = Field(5, ge=1, le=20)
    seed: int = 1
    # The out-of-core index sorts its records in partitions of this size: the stage's memory
    # for deduplication, whatever the corpus size (see components/data/dedup.py).
    memory_mb: int = Field(256, ge=16, description="memory for sorting dedup records, in MB")


class CleanParams(Section):
    """Stage ``clean``: normalise, quality-filter (Gopher rules) and deduplicate."""

    language: str = Field("en", pattern=r"^[a-z]{2,3}$")
    stop_words: Literal["auto", "gopher", "stopwordsiso"] = "auto"
    min_stop_words: int = Field(2, ge=0)
    min_words: int = Field(50, gt=0)
    max_words: int = Field(100_000, gt=0)
    min_mean_word_length: float = Field(3.0, ge=0)
    max_mean_word_length: float = Field(10.0, gt=0)
    max_symbol_word_ratio: float = Field(0.1, ge=0)
    max_bullet_lines_fraction: float = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_fraction: float = Field(0.3, ge=0, le=1)
    min_alpha_words_fraction: float = Field(0.8, ge=0, le=1)
    # FineWeb (Penedo et al. 2024) line rules: they catch list pages that Gopher's rules keep.
    min_punctuated_lines_fraction: float = Field(0.12, ge=0, le=1)
    max_short_lines_fraction: float = Field(0.67, ge=0, le=1)
    short_line_chars: int = Field(30, ge=1)
    repetition: RepetitionParams = RepetitionParams()
    remove_stopwords: bool = False
    dedup: DedupParams = DedupParams()
    workers: int = Field(0, ge=0, description="0 means one per CPU core")

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        problems = []
        if self.min_words > self.max_words:
            problems.append("min_words: must not exceed max_words")
        if self.min_mean_word_length > self.max_mean_word_length:
            problems.append("min_mean_word_length: must not exceed max_mean_word_length")
        if self.stop_words == "gopher" and self.language != "en":
            problems.append("stop_words: 'gopher' is an English list; use 'stopwordsiso' or 'auto'")
        if (self.stop_words != "gopher" or self.remove_stopwords) and not stopwordsiso.has_lang(
            self.language
        ):
            problems.append(f"language: stopwordsiso has no stop-word list for {self.language!r}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class ValidateParams(Section):
    """Stage ``validate``: bounds of the Great Expectations suite over document statistics."""

    min_chars: int = Field(200, ge=0)
    max_chars: int = Field(2_000_000, gt=0)
    min_stop_word_ratio: float = Field(0.05, ge=0, le=1)
    max_stop_word_ratio: float = Field(0.8, ge=0, le=1)
    max_duplicate_rate: float = Field(0.0, ge=0, le=1)
    # A dump of millions of articles has a few whose statistics fall just outside a range
    # that the corpus as a whole keeps: the share of documents each range must hold for.
    mostly: float = Field(
        0.999, gt=0, le=1, description="share of documents each n_chars and stop-word range needs"
    )
    workers: int = Field(0, ge=0, description="0 means one per CPU core")

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        if self.min_chars > self.max_chars:
            raise ValueError("min_chars: must not exceed max_chars")
        if self.min_stop_word_ratio > self.max_stop_word_ratio:
            raise ValueError("min_stop_word_ratio: must not exceed max_stop_word_ratio")
        return self


class TokenizeParams(Section):
    """Stage ``tokenize``: byte-level BPE trained on the train split, then batch encoding."""

    vocab_size: int = Field(8192, ge=320, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    special_tokens: list[str] = ["<|endoftext|>", "<|pad|>"]
    val_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 1337
    batch_docs: int = Field(256, ge=1)
    # The tokenizer learns from a seeded sample of the train split of about this much text
    # (every document when the split is smaller); the whole corpus is still encoded.
    train_sample_mb: float = Field(100.0, gt=0, description="MB of UTF-8 text to train on")

    @model_validator(mode="after")
    def _check_special_tokens(self) -> Self:
        if not self.special_tokens:
            raise ValueError("special_tokens: the first entry is the end-of-text separator")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError("special_tokens: entries must be distinct")
        return self


class DataSections(Protocol):
    """The assembled params as the data stages read them."""

    @property
    def data(self) -> DataParams: ...  # noqa: D102

    @property
    def ingest(self) -> IngestParams: ...  # noqa: D102

    @property
    def clean(self) -> CleanParams: ...  # noqa: D102

    @property
    def validate_(self) -> ValidateParams: ...  # noqa: D102

    @property
    def tokenize(self) -> TokenizeParams: ...  # noqa: D102
