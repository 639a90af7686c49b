"""The bases of the typed records: params sections in, stage reports out.

Also how validation errors are rendered. Every layer's params sections build on it; the
loader that assembles them is :mod:`components.params`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """Base of every section: immutable, and unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Report(BaseModel):
    """Base of what a stage reports (``run(params, paths)``'s result, ``metrics/<stage>.json``).

    Immutable: a report is what happened, written once.
    """

    model_config = ConfigDict(frozen=True)


def _key_path(loc: tuple[str | int, ...]) -> str:
    """Join a pydantic error location into a dotted key path, dropping validator labels."""
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "value_error"))]
    return ".".join(parts) or "(top level)"


def format_errors(error: ValidationError) -> list[str]:
    """Render every pydantic error as ``key.path: message``.

    Cross-field validators raise ``field: message`` lines (one per problem); the field is
    appended to the section's path so that every line names the exact key.
    """
    problems = []
    for item in error.errors():
        path = _key_path(item["loc"])
        for line in item["msg"].removeprefix("Value error, ").splitlines():
            field, sep, message = line.partition(": ")
            if sep and all(part.isidentifier() for part in field.split(".")):
                problems.append(f"{path}.{field}: {message}" if item["loc"] else line)
            else:
                problems.append(f"{path}: {line}")
    return problems
