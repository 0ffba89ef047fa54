"""How many rows of the Triton log-semiring sweeps the chunked sweep's exactness guard sends to the exact
kernel, counted while a ``with count_exact_rows() as counts:`` block runs (``counts``: [flagged, rows]).

A diagnostic for the benchmark scripts (``gene_model_gpu.py``, ``synthetic_genomics/steady_steps.py``): it
wraps :class:`semicrf.backends.triton.Sweep` for the block's duration and reads each sweep's flags, a
host sync per sweep, so time nothing inside it.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def count_exact_rows():
    from semicrf.backends import triton as tb

    sweep, counts = tb.Sweep, [0, 0]

    def counted(*args, **kwargs):
        sw = sweep(*args, **kwargs)
        if sw._flag is not None:
            counts[0] += int((sw._flag != 0).sum())
            counts[1] += sw._flag.numel()
        return sw
    tb.Sweep = counted
    try:
        yield counts
    finally:
        tb.Sweep = sweep
