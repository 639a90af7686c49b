"""``python -m components <stage>``: run one stage, the command every DVC stage calls.

Loads and validates params.yaml (all problems at once, exit code 2), runs the stage, and
writes its typed result to ``metrics/<stage>.json``. User errors end with one line on stderr
and a non-zero exit code; nothing else is printed on failure.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import ModuleType

from components.core.artifacts import META_FILE, write_json
from components.core.checkout_lock import checkout_lock
from components.core.disk import space_for
from components.core.distributed import is_global_zero
from components.core.errors import WikilmError
from components.core.parallel import prestart, worker_count
from components.core.paths import Paths
from components.core.tracking import flatten, numeric, stage_run
from components.params import Params, load_params
from components.stages import STAGES

log = logging.getLogger("components")

NOISY_LOGGERS = (
    "great_expectations",
    "urllib3",
    "filelock",
    "fsspec",
    "mlflow",
    "alembic",
    "pytorch_lightning",
    "lightning_fabric",
    "onnx_ir",
    "onnxscript",
    "httpx",  # one line per Prefect API call
)
# Advice MLflow gives on import and on logging that does not apply: our pyfunc signatures
# come from input examples, and our models are logged as objects on purpose.
QUIET_WARNINGS = (
    r".*Add type hints to the `predict` method.*",
    r".*Any type hint is inferred as AnyType.*",
    r".*Hint: Inferred schema contains integer column.*",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m components",
        description="Run one wikilm pipeline stage (what each dvc.yaml stage calls).",
        epilog="example: python -m components ingest --params params.yaml",
    )
    add_stage_arguments(parser)
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder that the paths: section is relative to (default: the params file's folder)",
    )
    return parser


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """The stage to run, its params file and verbosity (shared with ``wikilm stage``)."""
    parser.add_argument("stage", choices=list(STAGES), help="the stage to run")
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr with timestamps; quiet the chattiest third-party loggers."""
    # Only the first process of a distributed run narrates; the others report problems.
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(
        level=level if is_global_zero() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    quiet_libraries()


def quiet_libraries() -> None:
    """Keep third-party chatter (banners, store migrations, tips) out of the stage's log.

    Called again once a stage module is imported: some libraries set their own levels then.
    """
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for advice in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=advice)


def stage_params(params: Params, stage: str) -> dict:
    """The params a stage reads: its section's keys, then other sections' under their name."""
    recorded = params.section(stage).model_dump(mode="json", by_alias=True)
    for name in STAGES[stage].reads:
        recorded[name] = params.section(name).model_dump(mode="json", by_alias=True)
    return recorded


def single_blas_thread(stage: str) -> bool:
    """Give OpenBLAS one thread in a stage that fans out, unless the environment sets a count.

    These stages do element-wise numpy work only, never linear algebra. OpenBLAS starts a
    thread per core when numpy (or scipy, which has its own copy) is imported, and they spin
    for a while: 0.1 CPU seconds in each such process, taken from the stage's workers. It
    works only before anything imports numpy; the worker server inherits it.
    """
    if not STAGES[stage].workers:
        return False
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return True


def start_local_workers(stage: str, params: Params) -> bool:
    """Start the worker server of a stage that fans out to more than one local process.

    A stage that reads ``data`` sends its work to the Dask cluster instead when
    ``data.engine`` is ``dask``; a stage with one worker works in its own process.
    """
    entry = STAGES[stage]
    local = "data" not in entry.reads or params.data.engine == "local"
    if not (entry.workers and local and worker_count(params.section(stage).workers) > 1):
        return False
    prestart(entry.workers)
    return True


def run_stage_in_process(stage: str, params_file: Path, root: Path | None = None) -> dict:
    """Validate params, run ``stage`` and write its metrics; returns the metrics dict.

    Raises:
        CheckoutBusy: another run holds the checkout (before the stage records anything).
        DiskFull: a disk filled up while the stage wrote (what it finished is kept).
    """
    params = load_params(params_file)
    paths = Paths.resolve(params.paths, root or params_file.resolve().parent)
    with space_for(paths.output(stage)):
        return _run_stage(stage, params, paths)


def _run_stage(stage: str, params: Params, paths: Paths) -> dict:
    """Check the stage's settings, then run it holding the checkout."""
    started = time.perf_counter()
    entry = STAGES[stage]
    # The worker server imports its module while this process imports the stage's.
    start_local_workers(stage, params)
    module = entry.load()
    quiet_libraries()
    # Settings this machine or its launcher cannot run (trainer: devices, nodes, strategy)
    # fail here, before the stage takes the checkout, records a run or does any work.
    if hasattr(module, "preflight"):
        module.preflight(params)
    with _checkout(stage, paths):
        return _record(stage, params, paths, module, started)


def _checkout(stage: str, paths: Paths) -> AbstractContextManager:
    """The checkout, held for the stage; in a distributed job, rank 0 holds it for all."""
    if not is_global_zero():
        return nullcontext()
    return checkout_lock(paths.root, f"python -m components {stage}")


def _record(stage: str, params: Params, paths: Paths, module: ModuleType, started: float) -> dict:
    """Run the stage's module under its MLflow run; write and log its metrics."""
    # A resumable stage continues the MLflow run of its interrupted execution.
    resume = module.resume_run_id(params, paths) if hasattr(module, "resume_run_id") else None
    recorded = stage_params(params, stage)
    with stage_run(stage, paths, recorded, resume) as tracker:
        tracker.log_params(flatten(recorded))
        metrics = module.run(params, paths).model_dump(mode="json")
        if not is_global_zero():
            return metrics  # the first process writes and records for the whole job
        write_json(paths.metrics_file(stage), metrics)
        tracker.log_metrics(numeric(flatten(metrics)))
        tracker.log_artifact(paths.metrics_file(stage))
        tracker.log_artifact(paths.output(stage) / META_FILE)
        for plot in sorted(paths.plots_dir(stage).glob("*.csv")):
            tracker.log_artifact(plot, "plots")
    run = f" (MLflow run {tracker.run_id})" if tracker.run_id else ""
    log.info("%s finished in %.1f s%s", stage, time.perf_counter() - started, run)
    return metrics


def execute(stage: str, params_file: Path, root: Path | None = None, verbose: bool = False) -> int:
    """Run a stage as a command: user errors become one stderr line and an exit code."""
    configure_logging(verbose)
    try:
        run_stage_in_process(stage, params_file, root)
    except WikilmError as error:
        print(f"error: {stage}: {error}", file=sys.stderr)  # noqa: T201 - the CLI's one line
        return error.exit_code
    except KeyboardInterrupt:
        print(f"error: {stage}: interrupted; no output was written", file=sys.stderr)  # noqa: T201
        return 130
    return 0


def main(args: argparse.Namespace) -> int:
    """Run the stage that ``python -m components`` names (see components/__main__.py)."""
    return execute(args.stage, args.params, args.root, args.verbose)
