"""``python -m evserve module:app``: see ``evserve.cli``."""

from __future__ import annotations

import sys

from evserve.cli import main

if __name__ == "__main__":
    sys.exit(main())
