"""Benchmark: wikilm ingest+clean against WikiExtractor on the same dump, in the same run.

Prints MB of XML per second for each and their ratio, the CPU seconds and peak resident
memory of each process tree, and markup leftovers per MB of output; then the peak memory of
``ingest`` on the 1x and the scaled dump (it must stay flat: the reader streams).

    python benchmarks/ingest.py                  # 10 copies of the builtin sample (~60 MB XML)
    python benchmarks/ingest.py --copies 30 --repeat 5
    python benchmarks/ingest.py --copies 20 --wikiextractor-processes 1
    python benchmarks/ingest.py --bz2-decoder python   # without lbzip2, as where it is missing

The dump is the builtin enwiki sample repeated with fresh ids and titles (see scaled_dump.py).
Both tools run as separate processes, started cold, with all cores available.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scaled_dump  # noqa: E402 - sibling script module

from components.data.validate import markup_leftovers  # noqa: E402

PYTHON = sys.executable
# The smaller dump of the memory check: the builtin sample itself. Its text (2.9 MB) fills
# one of ingest's Parquet row groups, the one buffer that grows with the input until it is
# written (components/data/ingest.py).
SMALL = 1


@dataclass
class Measured:
    """Wall time, CPU time and peak memory of a command's whole process tree."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    returncode: int = 0
    stderr: str = ""


def measure(command: list[str], env: dict | None = None, check: bool = True) -> Measured:
    """Run ``command``, sampling the RSS and CPU time of it and all its descendants every 100 ms.

    Each sample walks the process table: every 20 ms took 12% of a core from the tools.
    CPU time is the last sample of each process, so up to 100 ms of a process's end is missed.
    """
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    cpu: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                for p in tree:
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system
            except psutil.Error:
                pass
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = process.communicate()
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    if check and process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err}")
    return Measured(elapsed, sum(cpu.values()), peak / 2**20, process.returncode, err)


def median_run(runs: list[Measured]) -> Measured:
    """The run of median wall time, with the highest peak memory seen in any of them."""
    median = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    return Measured(median.seconds, median.cpu_seconds, max(r.peak_rss_mb for r in runs))


def xml_megabytes(dump: Path) -> float:
    """Uncompressed size of the dump in MB."""
    total = 0
    with bz2.open(dump) as handle:
        while chunk := handle.read(1 << 22):
            total += len(chunk)
    return total / 1e6


def params_file(work: Path, dump: Path, name: str, bz2_decoder: str) -> Path:
    """A params.yaml for wikilm whose outputs live under ``work/name``."""
    out = work / name
    path = work / f"{name}.params.yaml"
    paths = {key: str(out / key) for key in ("ingest", "clean", "metrics")}
    ingest = {"source": str(dump), "bz2_decoder": bz2_decoder}
    path.write_text(json.dumps({"paths": paths, "ingest": ingest}))
    return path


def decoder_used(bz2_decoder: str) -> str:
    """What wikilm's ingest decodes bz2 with under ``bz2_decoder``."""
    if bz2_decoder != "python" and shutil.which("lbzip2"):
        return "lbzip2"
    return "Python's bz2 module"


def run_wikilm(params: Path) -> tuple[Measured, Measured]:
    """Run the ingest and clean stages as DVC would.

    MLflow tracking is off: a fixed cost per stage that has nothing to do with the dump and
    that WikiExtractor does not pay.
    """
    env = {**tool_environment(), "WIKILM_TRACKING": "off"}
    ingest = measure([PYTHON, "-m", "components", "ingest", "--params", str(params)], env)
    clean = measure([PYTHON, "-m", "components", "clean", "--params", str(params)], env)
    return ingest, clean


def tool_environment() -> dict[str, str]:
    """This environment, with Python's bytecode cache on for both tools.

    pip compiled WikiExtractor's modules when it installed them; wikilm's own modules (an
    editable install) are compiled at their first run and cached, unless
    PYTHONDONTWRITEBYTECODE forbids it: then every stage would compile them again.
    """
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_wikiextractor(dump: Path, out: Path, processes: int) -> Measured:
    """Run WikiExtractor with JSON output (text only, no template expansion download)."""
    command = [
        PYTHON,
        "-m",
        "wikiextractor.WikiExtractor",
        str(dump),
        "-o",
        str(out),
        "--json",
        "--processes",
        str(processes),
        "-q",
    ]
    return measure(command, tool_environment())


def wikilm_output_text(folder: Path) -> list[str]:
    """Texts of a wikilm stage output."""
    return [
        t
        for p in sorted(folder.glob("part-*.parquet"))
        for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]


def wikiextractor_output_text(folder: Path) -> list[str]:
    """Texts of WikiExtractor's JSON-lines output."""
    return [
        json.loads(line)["text"]
        for path in sorted(folder.rglob("wiki_*"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def leftovers_per_mb(texts: list[str]) -> tuple[float, float]:
    """Markup leftovers per MB of output, and the output size in MB."""
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    return sum(map(markup_leftovers, texts)) / max(megabytes, 1e-9), megabytes


def table_row(name: str, run: Measured, mb: float, leftovers: str = "", out_mb: str = "") -> str:
    """One Markdown row of the results table."""
    return (
        f"| {name} | {run.seconds:.2f} | {run.cpu_seconds:.1f} | {mb / run.seconds:.2f} | "
        f"{leftovers} | {out_mb} | {run.peak_rss_mb:.0f} |"
    )


def main() -> None:
    """Build the dumps, run both tools, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="sample copies in the dump")
    parser.add_argument("--wikiextractor-processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".work")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of both tools; medians are reported"
    )
    parser.add_argument(
        "--bz2-decoder",
        choices=("auto", "lbzip2", "python"),
        default="auto",
        help="wikilm's ingest.bz2_decoder (auto: lbzip2 where it is installed)",
    )
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    dump = scaled_dump.build(work / f"x{args.copies}-pages-articles.xml.bz2", args.copies)
    small = scaled_dump.build(work / f"x{SMALL}-pages-articles.xml.bz2", SMALL)
    mb = xml_megabytes(dump)

    wx_out = work / "wikiextractor"
    rounds = []
    for _ in range(args.repeat):  # alternated, so that drifts in machine speed hit both alike
        ingest, clean = run_wikilm(params_file(work, dump, "wikilm", args.bz2_decoder))
        subprocess.run(["rm", "-rf", str(wx_out)], check=True)
        rounds.append(
            (ingest, clean, run_wikiextractor(dump, wx_out, args.wikiextractor_processes))
        )
    ingest, clean, wx = (median_run([r[i] for r in rounds]) for i in range(3))
    ours_s = ingest.seconds + clean.seconds
    ratios = sorted(w.seconds / (i.seconds + c.seconds) for i, c, w in rounds)
    ours_left, ours_mb = leftovers_per_mb(wikilm_output_text(work / "wikilm" / "ingest"))
    wx_left, wx_mb = leftovers_per_mb(wikiextractor_output_text(wx_out))
    small_ingest, _ = run_wikilm(params_file(work, small, f"wikilm-x{SMALL}", args.bz2_decoder))

    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print(f"dump: {dump.name}, {mb:.1f} MB of XML ({args.copies} x the builtin sample)")
    print(f"wikilm decodes bz2 with {decoder_used(args.bz2_decoder)}\n")
    ours = Measured(
        ours_s, ingest.cpu_seconds + clean.cpu_seconds, max(ingest.peak_rss_mb, clean.peak_rss_mb)
    )
    columns = ("seconds", "CPU seconds", "MB XML/s", "leftovers per MB out", "output MB")
    print(f"| tool | {' | '.join(columns)} | peak RSS MB |")
    print("|---" * (len(columns) + 2) + "|")
    print(table_row("wikilm ingest+clean", ours, mb, f"{ours_left:.2f}", f"{ours_mb:.1f}"))
    print(table_row("├ ingest", ingest, mb))
    print(table_row("└ clean", clean, mb))
    wx_name = f"WikiExtractor ({args.wikiextractor_processes} processes)"
    print(table_row(wx_name, wx, mb, f"{wx_left:.2f}", f"{wx_mb:.1f}"))
    print(
        f"\nspeed ratio (WikiExtractor time / wikilm ingest+clean time): {wx.seconds / ours_s:.2f}x"
        f" (medians of {args.repeat} rounds; per round {ratios[0]:.2f}x to {ratios[-1]:.2f}x)"
    )
    print(
        f"ingest peak RSS: {small_ingest.peak_rss_mb:.0f} MB on {SMALL}x, "
        f"{ingest.peak_rss_mb:.0f} MB on {args.copies}x "
        f"(ratio {ingest.peak_rss_mb / small_ingest.peak_rss_mb:.2f})"
    )


if __name__ == "__main__":
    main()
