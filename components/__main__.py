"""Allow ``python -m components <stage>`` (the command DVC runs for each stage)."""

from components.cli import exit_process, main

# Guarded: spawned worker processes import this module under another name.
if __name__ == "__main__":
    exit_process(main())
