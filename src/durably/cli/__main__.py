"""``python -m durably.cli``: the same as the ``durably`` console script."""

import sys

from durably.cli import main

sys.exit(main())
