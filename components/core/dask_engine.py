"""The ``dask`` data engine: the data stages' per-document work on a Dask cluster.

:func:`components.core.parallel.ordered_map` submits its tasks through the executor that
:func:`cluster_executor` yields (``distributed.Client.get_executor``), in place of its local
process pool. Tasks name module-level functions of ``components`` by reference, so the
cluster's workers must run in this project's environment: the same packages and the same
``components`` code (an editable install of this checkout, or the same image).

Imported only when ``data.engine`` is ``dask``: dask is an optional extra (``wikilm[dask]``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

import dask.config
from distributed import Client

from components.core.errors import ClusterError, Unreachable

log = logging.getLogger(__name__)

# Where Dask itself looks for a scheduler when none is configured (its scheduler-address key).
SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"


def default_address() -> str | None:
    """The scheduler address that Dask's environment variable or configuration sets, if any."""
    return os.environ.get(SCHEDULER_VARIABLE) or dask.config.get("scheduler-address", None)


@contextmanager
def cluster_executor(scheduler: str | None, module: str) -> Iterator[tuple[Executor, int]]:
    """An executor on the cluster at ``scheduler`` (or Dask's default), and its thread count.

    The workers are checked to import ``module`` (the one the tasks run) first. The client
    is closed on leaving, which also cancels any task still pending.

    Raises:
        Unreachable: the scheduler does not answer, or has no workers, within Dask's connect
            timeout (``distributed.comm.timeouts.connect``, 30 s by default).
        ClusterError: the address is malformed, or the workers cannot import ``module``.
    """
    address = scheduler or default_address()
    assert address, "data.engine dask without an address is refused with the params"
    client = _connect(address)
    try:
        threads = _threads(client, address)
        _check_import(client, address, module)
        # pure=False: every batch is new work; hashing its pages for a task key would cost
        # time and could merge two identical batches into one task.
        yield client.get_executor(pure=False), threads
    finally:
        client.close()


def _connect(address: str) -> Client:
    """A client of the scheduler at ``address``."""
    try:
        return Client(address, set_as_default=False)
    except ValueError as error:  # an unknown scheme, a port that is not a number
        raise ClusterError(f"{address!r} is not a dask scheduler address: {error}") from None
    except OSError as error:  # refused, unknown host, or no answer within the timeout
        raise Unreachable(
            f"cannot reach the dask scheduler {address} ({error}): start it (`dask "
            f"scheduler`) or set data.scheduler or {SCHEDULER_VARIABLE} to a running one"
        ) from None


def _threads(client: Client, address: str) -> int:
    """Worker threads in the cluster, after waiting for its first worker if it has none."""
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        raise Unreachable(
            f"the dask scheduler {address} has no workers (waited {timeout}): "
            f"start some with `dask worker {address}`"
        ) from None
    threads = client.nthreads()
    log.info(
        "data engine dask: scheduler %s, %d workers, %d threads",
        address,
        len(threads),
        sum(threads.values()),
    )
    return sum(threads.values())


def _check_import(client: Client, address: str, module: str) -> None:
    """Fail with one line when some worker cannot import ``module``.

    Without this, each task would fail on its worker with a traceback about unpickling. The
    import also warms the workers up, as the local pool's fork server does.
    """

    # A nested function travels by value (cloudpickle): the check needs no project code.
    def import_module(name: str) -> None:
        importlib.import_module(name)

    outcomes = client.run(import_module, module, on_error="return")
    failed = {worker: error for worker, error in outcomes.items() if error is not None}
    if failed:
        worker, error = next(iter(failed.items()))
        raise ClusterError(
            f"{len(failed)} of {len(outcomes)} workers of the dask scheduler {address} cannot "
            f"import {module} ({worker}: {error!r}): start them in this project's environment"
        )
