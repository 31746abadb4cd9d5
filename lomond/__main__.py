"""``python -m lomond``: the command line (see :mod:`lomond.cli`)."""

import sys

from .cli import main

sys.exit(main())
