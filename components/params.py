"""Typed configuration: one frozen pydantic model per ``params.yaml`` section.

Every problem in the file (unknown key, wrong type, out-of-range value, cross-field conflict)
is collected and reported at once, each naming its key path, before any stage does work.
Each layer owns its sections (:mod:`components.data.params`, :mod:`components.model.params`,
:mod:`components.export.params`, :mod:`components.registry.params`; ``paths`` is
:mod:`components.core.paths`); this module, in the entry layer, assembles them and checks
what spans two layers. The defaults live in the sections, and params.yaml states the same
values (tests/components/test_params.py holds the two together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from components.core.errors import ConfigError
from components.core.paths import PathsParams
from components.core.schema import Section, format_errors
from components.data.params import (
    CleanParams,
    DataParams,
    IngestParams,
    TokenizeParams,
    ValidateParams,
)
from components.export.params import ExportParams
from components.model.params import (
    EvaluateParams,
    FinetuneParams,
    ModelParams,
    PretrainParams,
    TrainerParams,
    check_model_fit,
)
from components.registry.params import PromoteParams


class Params(Section):
    """The whole ``params.yaml``."""

    paths: PathsParams = PathsParams()
    data: DataParams = DataParams()
    ingest: IngestParams = IngestParams()
    clean: CleanParams = CleanParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    tokenize: TokenizeParams = TokenizeParams()
    model: ModelParams = ModelParams()
    trainer: TrainerParams = TrainerParams()
    pretrain: PretrainParams = PretrainParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    promote: PromoteParams = PromoteParams()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _check_across_sections(self) -> Self:
        problems = check_model_fit(self.model, self.finetune)
        if self.clean.remove_stopwords and self.validate_.min_stop_word_ratio > 0:
            problems.append(
                f"validate.min_stop_word_ratio: {self.validate_.min_stop_word_ratio} cannot "
                "hold when clean.remove_stopwords is true (the cleaned text keeps no stop "
                "words); set it to 0"
            )
        if self.promote.serve_int8 and not self.export.quantize:
            problems.append(
                "promote.serve_int8: true needs the int8 classifier; set export.quantize: true"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def section(self, name: str) -> Section:
        """A section by its params.yaml name (``validate`` is stored as ``validate_``)."""
        return self.validate_ if name == "validate" else getattr(self, name)


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    """Validate a raw mapping into :class:`Params`, raising one :class:`ConfigError` for all."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_errors(error), source) from None


def load_params(path: Path) -> Params:
    """Read and validate a params file.

    Raises:
        ConfigError: the file is missing, is not YAML, or has invalid values.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"not UTF-8 text: {error}"], str(path)) from None
    except OSError as error:
        raise ConfigError([f"cannot read it: {error.strerror or error}"], str(path)) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"not valid YAML: {error}".replace("\n", " ")], str(path)) from None
    if not isinstance(raw, dict):
        raise ConfigError(["the top level must be a mapping of sections"], str(path))
    return parse_params(raw, str(path))
