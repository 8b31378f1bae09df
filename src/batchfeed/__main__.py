"""``python -m batchfeed``: the same as the ``batchfeed`` command."""

import sys

from .cli import main

sys.exit(main())
