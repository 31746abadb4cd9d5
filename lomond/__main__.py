"""``python -m lomond``: the command line (see :mod:`lomond.cli`)."""

import sys

from .cli.main import main

sys.exit(main())
