import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# numba's on-disk cache checks only the file of each compiled function: a function of cpu_blocks.py
# that calls one of cpu.py keeps its stale machine code after cpu.py alone changes (seen 2026-12-03).
# The tests therefore use a cache keyed by the content of every compiled backend file, unless the
# caller chose a cache folder.
if "NUMBA_CACHE_DIR" not in os.environ:
    _backends = Path(__file__).resolve().parents[1] / "src" / "semicrf" / "backends"
    _key = hashlib.sha1(b"".join(f.read_bytes() for f in sorted(_backends.glob("cpu*.py")))).hexdigest()[:16]
    os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"semicrf-numba-{_key}")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module with one torch thread, restoring the count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
