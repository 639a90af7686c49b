"""Exceptions raised for problems a user can fix.

Each carries a one-line, actionable message. Only the command-line adapters map them to
exit codes; library code raises and never exits.
"""

from __future__ import annotations


class WikilmError(Exception):
    """Base class of every error caused by user input or the environment."""

    exit_code = 1


class ConfigError(WikilmError):
    """params.yaml (or an override) is invalid; raised before any work starts."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "params.yaml") -> None:
        self.problems = problems
        self.source = source
        if len(problems) == 1:
            super().__init__(f"invalid configuration in {source}: {problems[0]}")
        else:
            lines = "\n".join(f"  {p}" for p in problems)
            super().__init__(
                f"invalid configuration in {source} ({len(problems)} problems):\n{lines}"
            )


class SourceError(WikilmError):
    """A dump or dataset cannot be found, fetched, decompressed or parsed."""


class Unreachable(SourceError):
    """A server did not answer, or stopped answering: the same run may work later."""

    exit_code = 75  # EX_TEMPFAIL (sysexits.h): what schedulers treat as worth a retry


class ClusterError(WikilmError):
    """A Dask cluster cannot take the work: a malformed address, or workers without the project."""


class ArtifactError(WikilmError):
    """An upstream artifact is missing, of the wrong version, or inconsistent."""


class ValidationFailed(WikilmError):
    """The data-quality suite found unmet expectations."""


class DiskFull(WikilmError):
    """A disk filled up while a stage wrote to it; nothing half-written was left as done."""

    exit_code = 73  # EX_CANTCREAT (sysexits.h): not a retry's business until space is freed
