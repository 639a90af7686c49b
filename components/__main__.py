"""Allow ``python -m components <stage>``."""

import sys

from components.cli import main

# Guarded: spawned worker processes import this module under another name.
if __name__ == "__main__":
    sys.exit(main())
