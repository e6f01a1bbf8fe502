"""``python -m zoo.cli``: the ``zoo`` command line (the same as ``python -m zoo`` and the ``zoo`` script)."""

import sys

from . import run

if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
