"""``python -m flows.cli``: the ``wikilm`` command without its console script."""

import sys

from flows.cli import main

sys.exit(main())
