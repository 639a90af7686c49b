"""Benchmark: the data stages (ingest, clean, validate, tokenize) on dumps of growing size.

Generates dumps of distinct articles (generated_dump.py; cached in the work folder by size
and seed) and runs each stage on each as DVC would, ``python -m components <stage>`` with a
params file whose ``paths`` point into the work folder, MLflow tracking off. Prints per stage
and size: wall seconds, MB of XML per second per core, peak RSS of the stage's process tree,
and bytes written; then how peak memory grows with the dump, the whole data path's speed, and
a projection to a full English Wikipedia dump. WikiExtractor runs on one of the dumps in the
same run, for a speed ratio; ``--dask-workers`` reruns ingest and clean on a Dask cluster.

    python benchmarks/scale.py                                  # 100, 1000 and 4000 MB of XML
    python benchmarks/scale.py --sizes-mb 20 60 --reference-mb 60
    python benchmarks/scale.py --sizes-mb 20 --reference-mb 0 --dask-workers 1 2
    python benchmarks/scale.py --dask-workers 1 2 --dask-mb 1000    # Dask on the 1000 MB dump
    python benchmarks/scale.py --stages ingest clean --keep --json scale.json

Each stage runs cold, in its own process, with all cores available; other load on the
machine slows it down (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generated_dump  # noqa: E402 - sibling script module
from dask_cluster import dask_cluster, peak_rss  # noqa: E402 - sibling module
from ingest import measure, run_wikiextractor, tool_environment  # noqa: E402 - sibling module

PYTHON = sys.executable
STAGES = ("ingest", "clean", "validate", "tokenize")
DASK_STAGES = frozenset({"ingest", "clean"})  # the stages that data.engine applies to
OUTPUT = {"ingest": "ingest", "clean": "clean", "validate": "validate", "tokenize": "tokens"}
# A full English Wikipedia pages-articles dump, uncompressed.
FULL_DUMP_MB = 100_000
FULL_DUMP_ARTICLES = 7_000_000
CORES = len(os.sched_getaffinity(0))


@dataclass
class StageRun:
    """One stage on one dump: time, memory, bytes written, and its metrics file."""

    stage: str
    xml_mb: float
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float  # the stage's process tree (a Dask cluster's workers: apart)
    write_mb: float  # write_bytes of the process tree, counted by the kernel
    output_mb: float  # size of the output folder afterwards
    cores: int  # cores the stage ran on: the machine's, or the Dask workers'
    metrics: dict = field(default_factory=dict)
    workers_peak_rss_mb: float | None = None  # a Dask cluster's workers, during the stage
    failed: bool = False  # validate found unmet expectations (it still did all its work)

    @property
    def mb_per_s_per_core(self) -> float:
        """MB of XML per second per core."""
        return self.xml_mb / self.seconds / self.cores


def machine() -> dict:
    """CPU model, cores, memory and load of this machine."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": CORES,
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "lbzip2": bool(shutil.which("lbzip2")),
        "load_average_15min": round(psutil.getloadavg()[2], 2),
    }


def stage_environment() -> dict[str, str]:
    """The environment of every stage: bytecode cache on, MLflow tracking off.

    Tracking is a fixed cost per stage that has nothing to do with the dump's size.
    """
    return {**tool_environment(), "WIKILM_TRACKING": "off"}


def write_params(folder: Path, dump: Path, data: dict) -> Path:
    """A params file (JSON is YAML) whose stage outputs live in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {**{key: key for key in OUTPUT.values()}, "metrics": "metrics"}
    params = {"paths": paths, "data": data, "ingest": {"source": str(dump)}}
    path = folder / "params.yaml"
    path.write_text(json.dumps(params, indent=2))
    return path


def clear_output(folder: Path, stage: str) -> None:
    """Remove what an earlier run of ``stage`` left, so that it starts from nothing.

    That includes its scratch and temporary siblings (``.clean.work``, ``.clean.tmp-*``):
    a stage resumes unfinished work it finds there.
    """
    name = OUTPUT[stage]
    for path in [folder / name, *folder.glob(f".{name}.*")]:
        shutil.rmtree(path, ignore_errors=True)
    (folder / "metrics" / f"{stage}.json").unlink(missing_ok=True)


def folder_mb(folder: Path) -> float:
    """Size of the files under ``folder`` in MB (0 if it is missing)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def written_bytes() -> int:
    """Bytes written to storage by this process's ended children and their descendants.

    When a parent waits for an ended child, the kernel adds the child's write_bytes (the
    I/O-accounting counter psutil's io_counters reads), and those of the descendants the child
    waited for, to the parent's ``ru_oublock``, in 512-byte blocks. Unlike sampling
    io_counters, this misses nothing a short-lived worker wrote after the last sample.
    """
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512


def run_stage(stage: str, params: Path, xml_mb: float, cores: int) -> StageRun:
    """Run one stage as DVC would and measure it."""
    folder = params.parent
    clear_output(folder, stage)
    before = written_bytes()
    command = [PYTHON, "-m", "components", stage, "--params", str(params)]
    # A failed validate has done all its work (the report is written): it is measured and
    # reported, and the stages after it still run, as they read clean's output.
    measured = measure(command, stage_environment(), check=stage != "validate")
    if measured.returncode:
        print(f"{stage} failed ({measured.returncode}): {measured.stderr.strip()[-600:]}")
    metrics_file = folder / "metrics" / f"{stage}.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return StageRun(
        stage=stage,
        xml_mb=xml_mb,
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss_mb=measured.peak_rss_mb,
        write_mb=(written_bytes() - before) / 1e6,
        output_mb=folder_mb(folder / OUTPUT[stage]),
        cores=cores,
        metrics=metrics,
        failed=bool(measured.returncode),
    )


def run_size(
    dump: generated_dump.Generated, folder: Path, stages: list[str]
) -> dict[str, StageRun]:
    """Run ``stages`` in order on ``dump`` with the local engine (one process per core)."""
    params = write_params(folder, Path(dump.path), {"engine": "local"})
    xml_mb = dump.xml_bytes / 1e6
    return {stage: run_stage(stage, params, xml_mb, CORES) for stage in stages}


def run_dask(
    dump: generated_dump.Generated, work: Path, counts: list[int], stages: list[str]
) -> dict[int, dict[str, StageRun]]:
    """Run ``stages`` (of ingest and clean) with data.engine dask, per worker count."""
    results = {}
    xml_mb = dump.xml_bytes / 1e6
    for workers in counts:
        with dask_cluster(workers, work / f"dask-{workers}-cluster") as (address, processes):
            data = {"engine": "dask", "scheduler": address}
            params = write_params(work / f"dask-{workers}", Path(dump.path), data)
            runs = {}
            for stage in stages:
                with peak_rss(processes) as workers_peak:
                    runs[stage] = run_stage(stage, params, xml_mb, workers)
                runs[stage].workers_peak_rss_mb = workers_peak()
            results[workers] = runs
    return results


def run_reference(dump: generated_dump.Generated, folder: Path, processes: int) -> StageRun:
    """WikiExtractor (JSON output, ``processes`` processes) on ``dump``, measured alike."""
    out = folder / "wikiextractor"
    shutil.rmtree(out, ignore_errors=True)
    before = written_bytes()
    measured = run_wikiextractor(Path(dump.path), out, processes)
    return StageRun(
        stage="wikiextractor",
        xml_mb=dump.xml_bytes / 1e6,
        seconds=measured.seconds,
        cpu_seconds=measured.cpu_seconds,
        peak_rss_mb=measured.peak_rss_mb,
        write_mb=(written_bytes() - before) / 1e6,
        output_mb=folder_mb(out),
        cores=CORES,
    )


def duplicates_line(metrics: dict) -> str:
    """What clean dropped as duplicates, and the share of its input that is."""
    rejected = metrics.get("rejected", {})
    exact = rejected.get("exact_duplicate", 0)
    near = rejected.get("near_duplicate", 0)
    documents = metrics.get("documents_in", 0)
    other = sum(rejected.values()) - exact - near
    share = (exact + near) / documents if documents else 0.0
    return (
        f"clean kept {metrics.get('documents_out', 0):,} of {documents:,} documents: "
        f"{exact} exact and {near} near duplicates ({share:.2%} of its input), "
        f"{other} dropped by the quality filters"
    )


TABLE = (
    "| stage | seconds | MB XML/s/core | busy cores | peak RSS MB | written MB | output MB |\n"
    "|---|---|---|---|---|---|---|"
)


def row(run: StageRun) -> str:
    """One row of :data:`TABLE`."""
    stage = f"{run.stage} (failed)" if run.failed else run.stage
    return (
        f"| {stage} | {run.seconds:.1f} | {run.mb_per_s_per_core:.2f} | "
        f"{run.cpu_seconds / run.seconds:.1f} | {run.peak_rss_mb:.0f} | {run.write_mb:.1f} | "
        f"{run.output_mb:.1f} |"
    )


def print_size(dump: generated_dump.Generated, runs: dict[str, StageRun]) -> None:
    """The table of one dump size."""
    print(
        f"\n### {dump.xml_bytes / 1e6:,.0f} MB of XML: {dump.pages:,} pages, "
        f"{dump.articles:,} generated articles ({Path(dump.path).name})\n"
    )
    print(TABLE)
    for run in runs.values():
        print(row(run))
    if "clean" in runs:
        print(duplicates_line(runs["clean"].metrics))


def summary(sizes: dict[float, dict[str, StageRun]]) -> dict:
    """Peak-RSS growth per stage from the smallest to the largest size; the path's speed."""
    small, large = sizes[min(sizes)], sizes[max(sizes)]
    growth = {s: large[s].peak_rss_mb / small[s].peak_rss_mb for s in large if s in small}
    xml_mb = next(iter(large.values())).xml_mb
    seconds = sum(run.seconds for run in large.values())
    return {
        "smallest_xml_mb": next(iter(small.values())).xml_mb,
        "largest_xml_mb": xml_mb,
        "peak_rss_ratio": growth,
        "path_seconds": seconds,
        "path_mb_per_s_per_core": xml_mb / seconds / CORES,
    }


def amdahl(dask: dict[int, dict[str, StageRun]]) -> tuple[float, float] | None:
    """Serial and parallel seconds of ingest+clean, fitted as T(n) = s + p / n to two runs.

    The fewest and the most workers measured are used; None with fewer than two counts.
    """
    if len(dask) < 2:
        return None
    a, b = min(dask), max(dask)
    ta, tb = (sum(run.seconds for run in dask[n].values()) for n in (a, b))
    parallel = max((ta - tb) / (1 / a - 1 / b), 0.0)
    return max(ta - parallel / a, 0.0), parallel


def marginal(sizes: dict[float, dict[str, StageRun]]) -> dict[str, float] | None:
    """Seconds per stage for a full dump from the growth between the smallest and largest size.

    Unlike the plain scaling, the stage's fixed start-up cost is counted once, not scaled up.
    None with a single size.
    """
    if len(sizes) < 2:
        return None
    small, large = sizes[min(sizes)], sizes[max(sizes)]
    found = {}
    for stage, run in large.items():
        if stage in small:
            slope = (run.seconds - small[stage].seconds) / (run.xml_mb - small[stage].xml_mb)
            found[stage] = run.seconds + max(slope, 0.0) * (FULL_DUMP_MB - run.xml_mb)
    return found


def projection(
    sizes: dict[float, dict[str, StageRun]],
    articles: int,
    dask: dict[int, dict[str, StageRun]],
    workers: list[int],
) -> dict:
    """Seconds for a full English dump here and on ``workers`` Dask workers.

    Here: the largest size's seconds scaled linearly in MB of XML (and, for comparison, in
    articles, and by the growth between sizes). On a cluster: ingest and clean divided among
    the workers (ideally, and by Amdahl's law fitted to the Dask runs), validate and tokenize
    as here.
    """
    largest = sizes[max(sizes)]
    xml_mb = next(iter(largest.values())).xml_mb
    here = {stage: run.seconds * FULL_DUMP_MB / xml_mb for stage, run in largest.items()}
    on_cluster = sum(seconds for stage, seconds in here.items() if stage in DASK_STAGES)
    on_machine = sum(here.values()) - on_cluster
    path_seconds = sum(run.seconds for run in largest.values())
    result = {
        "here_seconds": here,
        "here_total_seconds": sum(here.values()),
        "here_by_articles_seconds": path_seconds * FULL_DUMP_ARTICLES / max(articles, 1),
        "here_marginal_seconds": marginal(sizes),
        "ideal_seconds": {n: on_cluster * CORES / n + on_machine for n in workers},
    }
    fit = amdahl(dask)
    if fit:
        dask_mb = next(iter(next(iter(dask.values())).values())).xml_mb
        serial, parallel = (x * FULL_DUMP_MB / dask_mb for x in fit)
        result["fitted_seconds"] = {n: serial + parallel / n + on_machine for n in workers}
        result["fit_serial_share"] = fit[0] / (fit[0] + fit[1]) if sum(fit) else 1.0
    return result


def hours(seconds: float) -> str:
    """Seconds as hours, or minutes below one hour."""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def print_growth(found: dict, stages: list[str]) -> None:
    """Peak-RSS growth per stage (with two sizes or more) and the whole path's speed."""
    if found["largest_xml_mb"] > found["smallest_xml_mb"]:
        ratios = ", ".join(f"{s} {ratio:.2f}x" for s, ratio in found["peak_rss_ratio"].items())
        print(
            f"\npeak RSS at {found['largest_xml_mb']:,.0f} MB over "
            f"{found['smallest_xml_mb']:,.0f} MB of XML: {ratios}"
        )
    print(
        f"whole data path ({' + '.join(stages)}) at {found['largest_xml_mb']:,.0f} MB: "
        f"{found['path_mb_per_s_per_core']:.2f} MB of XML/s per core"
    )


def print_projection(plan: dict, articles_per_mb: float) -> None:
    """The projection to a full English dump, with what it assumes."""
    stages = ", ".join(f"{s} {hours(t)}" for s, t in plan["here_seconds"].items())
    print(
        f"\nprojection to a full English dump ({FULL_DUMP_MB / 1000:.0f} GB of XML, "
        f"{FULL_DUMP_ARTICLES / 1e6:.0f} M articles) from the largest size:\n"
        f"- this machine ({CORES} cores): {hours(plan['here_total_seconds'])} ({stages}), "
        f"linear in MB of XML; {hours(plan['here_by_articles_seconds'])} linear in articles "
        f"(the generated dump has {articles_per_mb:.0f} articles per MB of XML, the real one "
        f"about {FULL_DUMP_ARTICLES / FULL_DUMP_MB:.0f})"
    )
    if plan["here_marginal_seconds"]:
        total = sum(plan["here_marginal_seconds"].values())
        print(
            f"  {hours(total)} from each stage's growth between the smallest and the largest "
            "size (its start-up counted once)"
        )
    if not DASK_STAGES.intersection(plan["here_seconds"]):
        return  # no stage measured here runs on a cluster
    for n, seconds in plan["ideal_seconds"].items():
        fitted = plan.get("fitted_seconds", {}).get(n)
        extra = f"; {hours(fitted)} by Amdahl's law fitted to the Dask runs" if fitted else ""
        print(f"- {n} Dask workers: {hours(seconds)} if ingest and clean scale perfectly{extra}")
    print(
        "  assumes: each worker is a single-threaded process as fast as one core here; ingest "
        "and clean run on the cluster (data.engine: dask), validate and tokenize on one "
        "machine like this one, as fast as here; the dump is still read by one process."
    )
    if "fit_serial_share" in plan:
        print(
            f"  the fit (T = s + p/n) puts {plan['fit_serial_share']:.0%} of ingest+clean in s, "
            "the part no worker count shortens. It scales with the dump like the rest, start-up "
            "included, and where workers outnumber the free cores they also share them with the "
            "stage's own process and the scheduler: both inflate s at small sizes."
        )


def print_reference(wx: StageRun, ours: dict[str, StageRun], processes: int) -> float:
    """WikiExtractor's row beside ingest+clean on the same dump; returns the speed ratio."""
    ingest_clean = ours["ingest"].seconds + ours["clean"].seconds
    print(
        f"\nWikiExtractor 3.1.0 ({processes} processes, JSON output) on the "
        f"{wx.xml_mb:,.0f} MB dump:\n"
    )
    print(TABLE)
    print(row(wx))
    print(row(ours["ingest"]))
    print(row(ours["clean"]))
    ratio = wx.seconds / ingest_clean
    print(
        f"speed ratio (WikiExtractor seconds / wikilm ingest+clean seconds): {ratio:.2f}x "
        f"({ingest_clean:.1f} s against {wx.seconds:.1f} s)"
    )
    return ratio


def print_dask(dask: dict[int, dict[str, StageRun]], local: dict[str, StageRun] | None) -> dict:
    """Seconds per stage by worker count, and each count's speed-up over the fewest."""
    first = min(dask)
    print(
        f"\ndata.engine dask on the {next(iter(dask[first].values())).xml_mb:,.0f} MB dump "
        "(a `dask scheduler` and single-threaded `dask worker` processes; start-up not counted; "
        "peak RSS: the stage's process tree; workers': the cluster's workers):\n"
    )
    print("| workers | stage | seconds | MB XML/s/worker | peak RSS MB | workers' peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for workers, runs in dask.items():
        for run in runs.values():
            print(
                f"| {workers} | {run.stage} | {run.seconds:.1f} | {run.mb_per_s_per_core:.2f} | "
                f"{run.peak_rss_mb:.0f} | {run.workers_peak_rss_mb:.0f} |"
            )
    totals = {n: sum(run.seconds for run in runs.values()) for n, runs in dask.items()}
    speedup = {n: totals[first] / seconds for n, seconds in totals.items()}
    stages = "+".join(dask[first])
    for n in dask:
        print(
            f"{stages} on {n} worker{'s' * (n > 1)}: {totals[n]:.1f} s; speed-up over {first}: "
            f"{speedup[n]:.2f}x"
        )
    if local and all(stage in local for stage in dask[first]):
        seconds = sum(local[stage].seconds for stage in dask[first])
        print(f"local engine ({CORES} processes) on the same dump: {seconds:.1f} s")
    return speedup


def as_json(runs: dict) -> dict:
    """Stage runs (nested in dicts) as JSON-ready dicts, with their MB/s per core."""
    return {
        str(key): as_json(value)
        if isinstance(value, dict)
        else {**asdict(value), "mb_per_s_per_core": value.mb_per_s_per_core}
        for key, value in runs.items()
    }


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[100, 1000, 4000])
    parser.add_argument(
        "--reference-mb",
        type=float,
        default=None,
        help="dump size WikiExtractor runs on (default: 1000 if among the sizes, else the "
        "largest; 0: skip it)",
    )
    parser.add_argument("--wikiextractor-processes", type=int, default=CORES)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument(
        "--dask-workers", type=int, nargs="*", default=[], help="worker counts, e.g. 1 2"
    )
    parser.add_argument(
        "--dask-mb", type=float, default=None, help="dump size of the Dask runs (the smallest)"
    )
    parser.add_argument(
        "--project-workers", type=int, nargs="+", default=[8, 32], help="Dask workers projected"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated dumps")
    parser.add_argument("--work", type=Path, default=Path("/tmp/wikilm-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the stages' outputs")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    args.sizes_mb = sorted(set(args.sizes_mb))
    args.stages = [stage for stage in STAGES if stage in args.stages]  # pipeline order
    if args.reference_mb is None:
        args.reference_mb = 1000.0 if 1000 in args.sizes_mb else args.sizes_mb[-1]
    if args.dask_mb is None:
        args.dask_mb = args.sizes_mb[0]
    if min(args.sizes_mb) <= 0 or min(args.dask_workers, default=1) <= 0:
        parser.error("sizes and worker counts must be positive")
    return args


def generate_dumps(args: argparse.Namespace, work: Path) -> dict[float, generated_dump.Generated]:
    """Every dump the run needs, generated unless the work folder holds it already."""
    needed = {*args.sizes_mb, *([args.reference_mb] if compares(args) else [])}
    if args.dask_workers:
        needed.add(args.dask_mb)
    dumps = {}
    for mb in sorted(needed):
        dumps[mb] = dump = generated_dump.cached(work / "dumps", mb, args.seed)
        print(
            f"dump {dump.path}: {dump.xml_bytes / 1e6:,.0f} MB of XML, {dump.pages:,} pages "
            f"(generated in {dump.seconds:.0f} s with {dump.compressor})"
        )
    return dumps


def compares(args: argparse.Namespace) -> bool:
    """Whether WikiExtractor runs: a reference size is set and ingest and clean run."""
    return args.reference_mb > 0 and {"ingest", "clean"} <= set(args.stages)


def compare_with_wikiextractor(
    args: argparse.Namespace, dump: generated_dump.Generated, folder: Path, ours: dict
) -> dict:
    """Run WikiExtractor on ``dump`` and print it beside ``ours`` (ingest and clean)."""
    wx = run_reference(dump, folder, args.wikiextractor_processes)
    ratio = print_reference(wx, ours, args.wikiextractor_processes)
    return {"wikiextractor": as_json({"run": wx})["run"], "speed_ratio": ratio}


def run_sizes(
    args: argparse.Namespace, work: Path, dumps: dict
) -> tuple[dict[float, dict[str, StageRun]], dict | None]:
    """The stages on every size, and WikiExtractor on the reference size right after them."""
    compare = compares(args)
    if args.reference_mb > 0 and not compare:
        print("WikiExtractor not run: it is compared with ingest+clean, which --stages omits")
    sizes, reference = {}, None
    extra = [args.reference_mb] if compare and args.reference_mb not in args.sizes_mb else []
    for mb in [*args.sizes_mb, *extra]:
        folder = work / "runs" / f"{mb:g}mb"
        runs = run_size(
            dumps[mb], folder, args.stages if mb in args.sizes_mb else ["ingest", "clean"]
        )
        if mb in args.sizes_mb:
            sizes[mb] = runs
            print_size(dumps[mb], runs)
        if compare and mb == args.reference_mb:
            reference = compare_with_wikiextractor(args, dumps[mb], folder, runs)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return sizes, reference


def run_dask_engines(
    args: argparse.Namespace, work: Path, dumps: dict, sizes: dict
) -> tuple[dict, dict]:
    """Ingest and clean on Dask clusters of each worker count, and each count's speed-up.

    Both are empty without --dask-workers.
    """
    stages = [stage for stage in args.stages if stage in DASK_STAGES]
    if not args.dask_workers or not stages:
        return {}, {}
    counts = sorted(set(args.dask_workers))
    dask = run_dask(dumps[args.dask_mb], work / "runs", counts, stages)
    speedup = print_dask(dask, sizes.get(args.dask_mb))
    if not args.keep:
        for n in counts:
            for name in (f"dask-{n}", f"dask-{n}-cluster"):
                shutil.rmtree(work / "runs" / name, ignore_errors=True)
    return dask, speedup


def main() -> None:
    """Generate the dumps, run the stages on each, print the tables and the projection."""
    args = parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    host = machine()
    print(
        f"machine: {host['cpu']}, {host['cores']} cores ({host['physical_cores']} physical), "
        f"{host['ram_gib']:.0f} GiB RAM, Python {host['python']}, lbzip2 "
        f"{'installed' if host['lbzip2'] else 'missing'}; load average over the last 15 "
        f"minutes: {host['load_average_15min']}"
    )
    print(
        "written MB: the kernel's write_bytes of the stage's whole process tree; "
        "output MB: the output folder's size afterwards\n"
    )
    dumps = generate_dumps(args, work)
    sizes, reference = run_sizes(args, work, dumps)
    dask, speedup = run_dask_engines(args, work, dumps, sizes)
    largest = dumps[args.sizes_mb[-1]]
    found = summary(sizes)
    plan = projection(sizes, largest.articles, dask, args.project_workers)
    print_growth(found, args.stages)
    print_projection(plan, largest.articles / (largest.xml_bytes / 1e6))
    print(f"\nload average over the last 15 minutes: {psutil.getloadavg()[2]:.1f}")
    if args.json:
        results = {
            "machine": host,
            "dumps": {f"{mb:g}": asdict(dump) for mb, dump in dumps.items()},
            "sizes": as_json({f"{mb:g}": runs for mb, runs in sizes.items()}),
            "summary": found,
            "projection": plan,
            "reference": reference,
            "dask": as_json(dask),
            "dask_speedup": speedup,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
