"""Where every stage writes: the ``paths:`` section of params.yaml, resolved to folders.

dvc.yaml reads the same section through ``${}`` templating, so each path is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from pydantic import ConfigDict, Field

from components.core.errors import ConfigError
from components.core.schema import Section


class PathsParams(Section):
    """Where each stage writes, relative to the repository root (dvc.yaml reads these too)."""

    downloads: str = "data/downloads"
    ingest: str = "data/ingest"
    clean: str = "data/clean"
    validate_: str = Field("reports/validate", alias="validate")
    tokens: str = "data/tokens"
    pretrain: str = "models/pretrain"
    finetune: str = "models/finetune"
    evaluate: str = "reports/evaluate"
    export: str = "models/export"
    metrics: str = "metrics"
    plots: str = "plots"
    # Resumable training state. Outside every DVC output, because DVC deletes a stage's
    # outputs before running it, and a killed run must find its last checkpoint.
    checkpoints: str = "checkpoints"

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


@dataclass(frozen=True)
class Paths:
    """Absolute locations of every stage output, resolved against the repository root."""

    root: Path
    downloads: Path
    ingest: Path
    clean: Path
    validate: Path
    tokens: Path
    pretrain: Path
    finetune: Path
    evaluate: Path
    export: Path
    metrics: Path
    plots: Path
    checkpoints: Path

    @classmethod
    def resolve(cls, paths: PathsParams, root: Path) -> Paths:
        """Anchor the relative ``paths:`` section at ``root``.

        Raises:
            ConfigError: a path is the project folder or holds it, or two paths overlap.
                Stages replace their whole output folder, so either would delete files.
        """
        root = root.resolve()
        folders = paths.model_dump()  # by field name: validate_
        folders["validate"] = folders.pop("validate_")
        located = {name: root / folder for name, folder in folders.items()}
        problems = _overlaps({name: path.resolve() for name, path in located.items()}, root)
        if problems:
            raise ConfigError(problems)
        return cls(root=root, **located)

    def output(self, stage: str) -> Path:
        """The folder a stage writes (``tokenize`` writes ``tokens``)."""
        return self.tokens if stage == "tokenize" else getattr(self, stage)

    def metrics_file(self, stage: str) -> Path:
        """``metrics/<stage>.json``, the file DVC declares as the stage's metrics."""
        return self.metrics / f"{stage}.json"

    def plots_dir(self, stage: str) -> Path:
        """``plots/<stage>/``, the stage's plot data (CSV files DVC declares as plots)."""
        return self.plots / stage

    def checkpoint_dir(self, stage: str) -> Path:
        """``checkpoints/<stage>/``, where a training stage keeps its resumable state."""
        return self.checkpoints / stage


def _overlaps(folders: dict[str, Path], root: Path) -> list[str]:
    """Problems of ``paths:`` that would let one stage delete another's files, or the project."""
    problems, separate = [], {}
    for name, path in folders.items():
        if path == root or path in root.parents:
            problems.append(f"paths.{name}: {path} is the project folder or holds it")
        else:
            separate[name] = path
    for (first, one), (second, other) in combinations(separate.items(), 2):
        if one == other or one in other.parents or other in one.parents:
            problems.append(
                f"paths.{first}: {one} overlaps paths.{second} ({other}); each path needs "
                "a folder of its own, since stages replace their whole output folder"
            )
    return problems
