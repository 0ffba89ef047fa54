#!/usr/bin/env python3
"""Gradient agreement of the Triton kernels with the PyTorch reference (``semicrf-gradcheck``).

    python gradient_check.py --seq-length 1000 --checkpoint-interval 100
    python gradient_check.py --seq-length 10000
    python gradient_check.py --seq-length 50000 --batch-size 1

See :mod:`semicrf.gradcheck`. Exits non-zero on any failure.
"""

import sys
from pathlib import Path

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from semicrf.gradcheck import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
