"""Benchmark: ingest+clean on the local process pool and on a Dask cluster, side by side.

Runs ``python -m components ingest`` and ``clean`` (as DVC would, MLflow tracking off) on the
same dump with ``data.engine: local`` (one worker process per core) and with
``data.engine: dask`` pointed at a ``LocalCluster`` of single-threaded worker processes that
this script starts first (its start-up is reported apart: a real cluster outlives the
stages). Prints the seconds of each, their ratio, and whether both wrote the same bytes.

    python benchmarks/data_engine.py                   # 10 copies of the builtin sample
    python benchmarks/data_engine.py --copies 30 --repeat 5 --dask-workers 4

On one machine the cluster can only add overhead (pickling through the scheduler, which
runs in this process); the figure to read is how small it stays.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil
from distributed import LocalCluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaled_dump  # noqa: E402 - sibling script module
from ingest import tool_environment, xml_megabytes  # noqa: E402 - sibling script module

PYTHON = sys.executable
STAGES = ("ingest", "clean")


def params_file(work: Path, dump: Path, name: str, data: dict) -> Path:
    """A params.yaml (JSON is YAML) whose outputs live under ``work/name``."""
    out = work / name
    path = work / f"{name}.params.yaml"
    paths = {key: str(out / key) for key in ("ingest", "clean", "metrics")}
    path.write_text(json.dumps({"paths": paths, "data": data, "ingest": {"source": str(dump)}}))
    return path


def run_stages(params: Path) -> dict[str, float]:
    """Wall seconds of each stage, run as its own process."""
    env = {**tool_environment(), "WIKILM_TRACKING": "off"}
    seconds = {}
    for stage in STAGES:
        started = time.perf_counter()
        command = [PYTHON, "-m", "components", stage, "--params", str(params)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        seconds[stage] = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return seconds


def digest(folder: Path) -> str:
    """One hash of every file under ``folder`` (names and bytes)."""
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return sha.hexdigest()


def median(values: list[float]) -> float:
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def run_engines(work: Path, dump: Path, repeat: int, dask_workers: int) -> tuple[dict, float]:
    """Seconds per stage of each round, by engine; and the cluster's start-up seconds."""
    started = time.perf_counter()
    with LocalCluster(
        n_workers=dask_workers,
        threads_per_worker=1,  # the work is pure Python: threads would share one GIL
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        startup = time.perf_counter() - started
        engines = {
            "local": {"engine": "local"},
            "dask": {"engine": "dask", "scheduler": cluster.scheduler_address},
        }
        files = {
            name: params_file(work, dump, f"engine-{name}", data) for name, data in engines.items()
        }
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
        for _ in range(repeat):  # alternated, so that drifts in machine speed hit both
            for name, params in files.items():
                rounds[name].append(run_stages(params))
    return rounds, startup


def report(work: Path, rounds: dict[str, list[dict[str, float]]]) -> None:
    """The table of median seconds, the time ratio and whether the outputs are the same."""
    print("| engine | ingest s | clean s | ingest+clean s |")
    print("|---|---|---|---|")
    totals = {}
    for name, runs in rounds.items():
        stage = {s: median([r[s] for r in runs]) for s in STAGES}
        totals[name] = median([sum(r.values()) for r in runs])
        print(f"| {name} | {stage['ingest']:.2f} | {stage['clean']:.2f} | {totals[name]:.2f} |")
    pairs = zip(rounds["dask"], rounds["local"], strict=True)
    ratios = sorted(sum(dask.values()) / sum(local.values()) for dask, local in pairs)
    same = all(
        digest(work / "engine-local" / s) == digest(work / "engine-dask" / s) for s in STAGES
    )
    print(
        f"\ndask / local time: {totals['dask'] / totals['local']:.2f}x "
        f"(medians of {len(ratios)} rounds; per round {ratios[0]:.2f}x to {ratios[-1]:.2f}x); "
        f"outputs byte-identical: {'yes' if same else 'NO'}"
    )
    # Both engines share the cores with whatever else runs: say how busy the machine was.
    print(f"load average over the last 15 minutes: {psutil.getloadavg()[2]:.1f}")


def main() -> None:
    """Build the dump, run both engines in alternation, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="sample copies in the dump")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--dask-workers", type=int, default=2, help="LocalCluster processes")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".work")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    dump = scaled_dump.build(work / f"x{args.copies}-pages-articles.xml.bz2", args.copies)
    rounds, startup = run_engines(work, dump, args.repeat, args.dask_workers)
    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores "
        f"({psutil.cpu_count(logical=False)} physical), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print(f"dump: {dump.name}, {xml_megabytes(dump):.1f} MB of XML ({args.copies} x the sample)")
    print(
        f"local: {psutil.cpu_count()} worker processes (workers: 0); dask: LocalCluster of "
        f"{args.dask_workers} single-threaded worker processes, started in {startup:.1f} s "
        "(not counted)\n"
    )
    report(work, rounds)


if __name__ == "__main__":
    main()
