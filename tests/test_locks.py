"""The installs' locks hold exactly what pyproject.toml asks for, and installs hold the lock.

``make lock`` writes locks/ from pyproject.toml with uv; ``make install`` installs from
them, hash-checked, with ``--no-deps``. These tests fail when the two disagree: a
requirement with no pin or a pin outside its range, a pin that nothing needs any more, a pin
without a hash, or an environment that holds other versions than the lock.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "locks"
# What `make install` asks for: the project with its dev extra, and the lock group.
EXTRAS = ("dev",)
GROUPS = ("lock",)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)
_BLOCK = re.compile(r"^(?=[A-Za-z0-9])", re.M)  # a pin's lines run to the next pin
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)", re.M)

Requires = Callable[[str], list[Requirement]]


def lock_blocks(path: Path) -> dict[str, str]:
    """Each pinned package's canonical name and its lines (pin, hashes, annotations)."""
    blocks = _BLOCK.split(path.read_text(encoding="utf-8"))
    return {canonicalize_name(m[1]): b for b in blocks if (m := _PIN.match(b))}


def lock_pins(path: Path) -> dict[str, Version]:
    """Each pinned package's canonical name and version."""
    return {name: Version(_PIN.match(block)[2]) for name, block in lock_blocks(path).items()}


def pyproject() -> dict:
    """pyproject.toml, parsed."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def roots(project: dict, extras: Iterable[str], groups: Iterable[str]) -> list[Requirement]:
    """The requirements an install of the project asks for, its own extras expanded."""
    own = canonicalize_name(project["project"]["name"])
    optional = project["project"].get("optional-dependencies", {})
    asked = list(project["project"]["dependencies"])
    asked += [r for extra in extras for r in optional[extra]]
    asked += [r for group in groups for r in project["dependency-groups"][group]]
    found: list[Requirement] = []
    while asked:
        requirement = Requirement(asked.pop())
        if canonicalize_name(requirement.name) == own:
            asked += [r for extra in requirement.extras for r in optional[extra]]
        else:
            found.append(requirement)
    return found


# The environment the locks are for: `make lock` resolves for --python-version 3.11, which
# uv reads as 3.11.0 (so a pin needed below 3.11.3 is in the lock, and installed).
LOCK_TARGET = {"python_version": "3.11", "python_full_version": "3.11.0"}


def _applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**LOCK_TARGET, "extra": e}) for e in extras or {""})


def lock_problems(
    asked: list[Requirement], pins: dict[str, Version], requires: Requires
) -> list[str]:
    """What is wrong with ``pins`` as the closure of ``asked`` (none: the lock fits).

    ``requires(name)`` gives a pinned package's own requirements (its metadata).
    """
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(r, "pyproject.toml") for r in asked if _applies(r, frozenset())]
    while queue:
        requirement, via = queue.pop()
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{name} ({requirement}, via {via}) has no pin in the lock")
            continue
        if not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{name}=={pins[name]} is outside {requirement} (via {via})")
        key = (name, frozenset(requirement.extras))
        if key not in seen:
            seen.add(key)
            needed = [r for r in requires(name) if _applies(r, key[1])]
            queue += [(r, name) for r in needed]
    reached = {name for name, _ in seen}
    problems += [f"{n} is pinned but nothing asks for it" for n in sorted(set(pins) - reached)]
    return problems


def installed_requires(name: str) -> list[Requirement]:
    """A package's requirements, from its installed metadata."""
    return [Requirement(r) for r in metadata.distribution(name).requires or []]


def test_the_cpu_lock_is_the_closure_of_pyproject():
    pins = lock_pins(LOCKS / "cpu.txt")
    assert lock_problems(roots(pyproject(), EXTRAS, GROUPS), pins, installed_requires) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["project"]["dependencies"].append("left-pad>=1"), "left-pad (left-pad>=1"),
        (lambda p: p["project"]["dependencies"].append("prefect>=4"), "outside prefect>=4"),
        (
            lambda p: p["project"]["dependencies"].remove("stopwordsiso>=0.6"),
            "stopwordsiso is pinned but nothing asks for it",
        ),
        (
            lambda p: (
                p["dependency-groups"]["lock"].remove("torch==2.13.0")
                or p["project"]["dependencies"].append("torch>=2.14")
            ),
            "outside torch>=2.14",
        ),
    ],
)
def test_a_pyproject_change_without_a_new_lock_is_caught(change, expected):
    changed = pyproject()
    change(changed)
    pins = lock_pins(LOCKS / "cpu.txt")
    problems = lock_problems(roots(changed, EXTRAS, GROUPS), pins, installed_requires)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("lock", ["cpu.txt", "cuda.txt", "data.txt"])
def test_every_pin_is_hash_checked(lock):
    blocks = lock_blocks(LOCKS / lock)
    assert blocks
    assert [name for name, block in blocks.items() if "--hash=sha256:" not in block] == []


def test_the_cuda_lock_differs_only_in_torch_and_what_its_cuda_build_needs():
    cpu, cuda = lock_pins(LOCKS / "cpu.txt"), lock_pins(LOCKS / "cuda.txt")
    assert str(cpu["torch"]).endswith("+cpu")
    assert cuda["torch"].public == cpu["torch"].public
    assert cuda["torch"].local is None  # PyPI's build
    shared = set(cpu) - {"torch"}
    assert {n for n in shared if cpu[n] != cuda.get(n)} == set()
    added = set(cuda) - set(cpu)
    blocks = lock_blocks(LOCKS / "cuda.txt")
    vias = {name: set(_VIA.findall(blocks[name])) - {"via"} for name in added}
    assert {n: v for n, v in vias.items() if not v <= added | {"torch"}} == {}


def test_the_data_lock_pins_exactly_its_group():
    asked = [Requirement(r) for r in pyproject()["dependency-groups"]["data"]]
    pins = lock_pins(LOCKS / "data.txt")
    assert {canonicalize_name(r.name): r.specifier for r in asked}.keys() == pins.keys()
    assert all(r.specifier.contains(pins[canonicalize_name(r.name)]) for r in asked)


def test_the_environment_holds_exactly_the_locks():
    pins = lock_pins(LOCKS / "cpu.txt") | lock_pins(LOCKS / "data.txt")
    installed = {
        canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()
    }
    installed.pop(canonicalize_name(pyproject()["project"]["name"]))
    # Anything else was installed by hand: `rm -rf .venv && make install` starts clean.
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}
    assert set(pins) - set(installed) == set()
