"""Allow ``python -m components <stage>`` (the command DVC runs for each stage)."""

import sys

from components.early import single_blas_thread, start_workers_early

# Guarded: spawned worker processes import this module under another name.
if __name__ == "__main__":
    single_blas_thread(sys.argv[1:])  # before numpy is imported, and the worker server started
    start_workers_early(sys.argv[1:])  # before the imports below, which it overlaps with
    from components.cli import exit_process, main

    exit_process(main())
