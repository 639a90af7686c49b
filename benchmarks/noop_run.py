"""Benchmark: a ``wikilm run`` with nothing to do, beside ``dvc repro`` with nothing to do.

Run after ``make run``, on the same checkout: both commands then find every stage up to
date, and ``wikilm run`` also finds the export registered already. Each is started as a new
process from a plain environment (no Makefile settings, no ``PREFECT_API_URL``), as a
scheduled job or a user's shell would, and timed over whole runs. Prints the median and the
range of each, and their ratio.

    python benchmarks/noop_run.py --repeat 5
    python benchmarks/noop_run.py --prefect-api-url http://127.0.0.1:4200/api  # a server's

With ``--prefect-api-url`` the ``wikilm run`` is recorded as a flow run on that (running)
server, as a deployment's scheduled run is; every stage is skipped in one step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMANDS = {
    "wikilm run": [str(BIN / "wikilm"), "run"],
    "dvc repro": [str(BIN / "dvc"), "repro"],
}
# What tells that a command really had nothing to do.
NOTHING_TO_DO = {"wikilm run": "registered already", "dvc repro": "up to date"}


def plain_environment(prefect_api_url: str | None = None) -> dict[str, str]:
    """A login shell's basics only: nothing the Makefile or a Prefect profile would add."""
    keep = ("HOME", "LANG", "USER", "TMPDIR")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    return {**env, "PATH": f"{BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin"}


def timed(name: str, prefect_api_url: str | None = None) -> float:
    """Seconds of one run of ``name``; refuses a run that did some work."""
    started = time.perf_counter()
    done = subprocess.run(
        COMMANDS[name],
        cwd=ROOT,
        env=plain_environment(prefect_api_url if name == "wikilm run" else None),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode or NOTHING_TO_DO[name] not in done.stdout + done.stderr:
        sys.exit(f"{name} did work or failed (run `make run` first):\n{done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    """Time both commands ``--repeat`` times, alternating, and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (default: 5)")
    parser.add_argument(
        "--prefect-api-url", help="a running Prefect server's API, for wikilm run to record on"
    )
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name in COMMANDS:  # alternating: a slow moment of the machine hits both
            times[name].append(timed(name, args.prefect_api_url))
    for name, values in times.items():
        print(  # noqa: T201 - the benchmark's report
            f"{name:<11} no-op: median {statistics.median(values):.2f} s "
            f"(min {min(values):.2f}, max {max(values):.2f}; {args.repeat} runs)"
        )
    ratio = statistics.median(times["wikilm run"]) / statistics.median(times["dvc repro"])
    print(f"wikilm run / dvc repro: {ratio:.2f}x")  # noqa: T201


if __name__ == "__main__":
    main()
