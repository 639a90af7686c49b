"""``python -m components <stage>``: run one stage, the command every dvc.yaml stage calls.

A stage run this way is a process of its own, set up here before the stage's own imports:
how it ends, how many threads OpenBLAS starts, whether freed memory is kept for reuse, and
when the stage's worker server starts.
"""

import atexit
import os
import sys

exit_code = 1  # what the process ends with if the stage never returns (an uncaught error)


def end_after_exit_handlers() -> None:
    """End the process now, with :data:`exit_code`, skipping the interpreter's teardown.

    Registered before any other exit handler, it runs after all of them (they run in the
    reverse order of registration): MLflow, multiprocessing and logging have closed up, and
    ``sys.exit`` has waited for non-daemon threads. What is skipped is freeing the stage's
    modules one by one (numpy, pyarrow, pydantic, scipy): 0.1 to 0.3 s of every stage.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


# Guarded: spawned worker processes import this module under another name.
if __name__ == "__main__":
    atexit.register(end_after_exit_handlers)
    from components.cli import build_parser, main, single_blas_thread
    from components.core.allocator import keep_freed_memory

    keep_freed_memory()  # and in each worker the stage starts (components.core.parallel)

    args = build_parser().parse_args()
    # Before anything imports numpy: one OpenBLAS thread in a stage that fans out.
    single_blas_thread(args.stage)
    # main reads and validates the params once, starts the worker server of a stage that
    # fans out before importing the stage's module (its import overlaps with the server's),
    # and runs the stage.
    exit_code = main(args)
    sys.exit(exit_code)
