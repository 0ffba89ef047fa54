#!/usr/bin/env python3
"""Synthetic genomics benchmark: ``generate``, ``run`` and ``compare`` (see README.md).

Equivalent to the installed ``semicrf-bench`` command; also works from a
source checkout where the package is not installed.
"""

import sys
from pathlib import Path

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from semicrf.genomics.cli import main

if __name__ == "__main__":
    sys.exit(main())
