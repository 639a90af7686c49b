"""Order-preserving parallel map with a bounded number of tasks in flight.

``ProcessPoolExecutor.map`` and ``Pool.imap`` submit the whole input up front, so a producer
faster than the workers (an XML parser feeding slower converters) would hold the whole dump
in memory. Keeping at most ``window`` tasks in flight keeps memory constant.

The tasks run in a local process pool, or on a Dask cluster when ``data.engine`` is
``dask`` (:mod:`components.core.dask_engine`): the same functions, the same order, the
same results.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from itertools import chain, islice
from typing import Protocol, TypeVar

from components.core.allocator import keep_freed_memory

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    """Where the tasks run (the ``data`` section of params.yaml has these)."""

    @property
    def engine(self) -> str: ...  # noqa: D102 - "local" or "dask"

    @property
    def scheduler(self) -> str | None: ...  # noqa: D102 - the Dask scheduler's address


def worker_count(requested: int) -> int:
    """``requested`` workers, or one per usable CPU core when it is 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _context(module: str) -> multiprocessing.context.BaseContext:
    """The forkserver context, preloading ``module`` in the server.

    Workers fork from a clean single-threaded server (safe whatever threads this process
    runs) that imported the worker module once, so each worker starts without re-importing.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])
    return context


def prestart(module: str) -> None:
    """Start the fork server now, so its import of ``module`` overlaps with the caller's."""
    from multiprocessing import forkserver

    _context(module)
    forkserver.ensure_running()


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    window_per_worker: int = 3,
    engine: Engine | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, using ``workers`` processes.

    With one worker, or a single item, everything runs in this process (no pickling, easy
    to debug). With ``engine.engine == "dask"`` the items go to the threads of that Dask
    cluster instead, ``workers`` notwithstanding. ``fn`` must be a module-level function (or
    a partial of one) so that worker processes can import it.
    """
    module = getattr(fn, "func", fn).__module__
    if engine is not None and engine.engine == "dask":
        yield from _on_cluster(fn, items, engine.scheduler, module, window_per_worker)
        return
    items = iter(items)
    head = list(islice(items, 2))
    if workers <= 1 or len(head) < 2:  # a single task gains nothing from a pool's start-up
        yield from map(fn, chain(head, items))
        return
    context = _context(module)
    with ProcessPoolExecutor(workers, context, initializer=start_worker) as pool:
        yield from _windowed(pool, fn, chain(head, items), workers * window_per_worker)


def start_worker() -> None:
    """In a new worker: watch the stage's process, and keep freed memory for reuse."""
    exit_with_the_stage()
    keep_freed_memory()


def exit_with_the_stage() -> None:
    """In a worker: end this process as soon as the process that started it is gone.

    A stage killed with SIGKILL runs no clean-up, and its pool's workers would wait for work
    forever (they hold both ends of the task queue), keeping the fork server alive with them.
    The parent's sentinel becomes readable when it dies, whatever killed it.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)  # no clean-up to run: the stage that wanted the results is gone

    threading.Thread(target=watch, name="exit-with-the-stage", daemon=True).start()


def _on_cluster(
    fn: Callable[[T], R], items: Iterable[T], scheduler: str | None, module: str, per_thread: int
) -> Iterator[R]:
    """:func:`ordered_map` on the Dask cluster at ``scheduler``, ``per_thread`` tasks a thread."""
    # Imported here: dask is an optional extra, and the local pool never needs it.
    from components.core.dask_engine import cluster_executor

    with cluster_executor(scheduler, module) as (executor, threads):
        yield from _windowed(executor, fn, items, threads * per_thread)


def _windowed(
    executor: Executor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """Submit ``fn(item)`` for each item, with at most ``window`` in flight; results in order."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
