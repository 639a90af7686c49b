"""Benchmark: ``python -m components <stage>`` in this checkout beside another checkout's.

What DVC runs for each stage is a new process: its start-up (imports, params, the worker
server of a stage that fans out) and its exit count in every stage of every run. On the
builtin sample the data stages do well under a second of work, so their whole wall time
is mostly start-up and exit. Each stage runs in both checkouts in turn, ``--repeat`` times,
with tracking off; prints the median and range of each and the ratio (this / baseline).

    git worktree add /tmp/baseline <commit>     # the version to compare with
    python benchmarks/stage_startup.py --baseline /tmp/baseline --repeat 7

Both checkouts need the stages' inputs first (``dvc repro tokenize`` in each), and run
with this interpreter, whose editable install is this checkout: each process imports the
``components`` of the folder it starts in.
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
STAGES = ("ingest", "clean", "validate", "tokenize")


def run_once(checkout: Path, stage: str) -> float:
    """Wall seconds of one ``python -m components <stage>`` started in ``checkout``."""
    env = {**os.environ, "WIKILM_TRACKING": "off"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "components", stage],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{stage} failed in {checkout}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    """Time each stage in both checkouts, alternating, and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stages", nargs="+", default=list(STAGES))
    args = parser.parse_args()
    checkouts = {"this": ROOT, "baseline": args.baseline.resolve()}
    print(f"{'stage':<9} {'this (s)':>18} {'baseline (s)':>18} {'ratio':>6}")
    for stage in args.stages:
        times: dict[str, list[float]] = {name: [] for name in checkouts}
        for _ in range(args.repeat):
            for name, checkout in checkouts.items():
                times[name].append(run_once(checkout, stage))
        shown = {
            name: f"{statistics.median(t):.3f} [{min(t):.2f}-{max(t):.2f}]"
            for name, t in times.items()
        }
        ratio = statistics.median(times["this"]) / statistics.median(times["baseline"])
        print(f"{stage:<9} {shown['this']:>18} {shown['baseline']:>18} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
