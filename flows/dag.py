"""The stage list and order, read from dvc.yaml: the pipeline's only DAG definition."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.core.errors import ArtifactError, ConfigError

# The one params file dvc.yaml's stages read: the one in the project's folder.
PIPELINE_PARAMS = "params.yaml"


def check_pipeline_params(params_file: Path) -> None:
    """Refuse a params file that the pipeline's stages would not read.

    Raises:
        ConfigError: the file is not named params.yaml (DVC and every stage read the
            params.yaml next to dvc.yaml, so its settings would be silently ignored).
    """
    if params_file.name != PIPELINE_PARAMS:
        raise ConfigError(
            [
                f"the pipeline's stages read {params_file.parent / PIPELINE_PARAMS}, not this "
                "file; edit that one, or try values with `dvc exp run -S key=value`"
            ],
            str(params_file),
        )


def dvc_stages(root: Path) -> list[str]:
    """Stage names of ``root/dvc.yaml`` in an order where every stage follows its inputs.

    dvc.yaml lists stages in dependency order by convention; the order is checked against
    the stages' declared outputs and dependencies, so a misordered file is an error rather
    than a silently wrong run.

    Raises:
        ArtifactError: no dvc.yaml, or a stage listed before a stage whose output it reads.
    """
    path = root / "dvc.yaml"
    if not path.is_file():
        raise ArtifactError(f"{path} not found: run from the project root (or pass --params)")
    stages = yaml.safe_load(path.read_text(encoding="utf-8")).get("stages", {})
    produced: dict[str, str] = {}
    for name, stage in stages.items():
        for out in stage.get("outs", []):
            produced[_path(out)] = name
    seen: set[str] = set()
    for name, stage in stages.items():
        for dep in stage.get("deps", []):
            owner = next((s for o, s in produced.items() if _under(_path(dep), o)), None)
            if owner and owner != name and owner not in seen:
                raise ArtifactError(
                    f"dvc.yaml lists '{name}' before '{owner}', whose output it reads"
                )
        seen.add(name)
    return list(stages)


def _path(entry: str | dict) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else entry


def _under(dep: str, out: str) -> bool:
    return dep == out or dep.startswith(out.rstrip("/") + "/")


def stale_stages(root: Path) -> list[str]:
    """The stages of ``root/dvc.yaml`` that DVC would rerun now, in dvc.yaml's order.

    One ``dvc status`` for the whole DAG: a stage is stale when a dependency, a parameter,
    its command or an output differs from dvc.lock (or an output is missing). A stage
    downstream of a stale one is listed only if it is stale itself; it may still rerun once
    its upstream has. Where DVC cannot tell (no DVC project here), every stage is listed:
    running them reports why.

    Raises:
        ArtifactError: no dvc.yaml, or one listing a stage before its input.
    """
    from dvc.exceptions import DvcException  # imported here: DVC only when asked
    from dvc.repo import Repo

    stages = dvc_stages(root)
    try:
        with Repo(str(root)) as repo:
            changed = {name.rpartition(":")[2] for name in repo.status()}
    except DvcException:
        return stages
    return [stage for stage in stages if stage in changed]
