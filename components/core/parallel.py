"""Order-preserving parallel map with a bounded number of tasks in flight.

``ProcessPoolExecutor.map`` and ``Pool.imap`` submit the whole input up front, so a producer
faster than the workers (an XML parser feeding slower converters) would hold the whole dump
in memory. Keeping at most ``window`` tasks in flight keeps memory constant.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


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
    fn: Callable[[T], R], items: Iterable[T], workers: int, window_per_worker: int = 3
) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, using ``workers`` processes.

    With one worker everything runs in this process (no pickling, easy to debug). ``fn`` must
    be a module-level function (or a partial of one) so that worker processes can import it.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    context = _context(getattr(fn, "func", fn).__module__)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers * window_per_worker:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
