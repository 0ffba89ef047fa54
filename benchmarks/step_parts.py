"""A ``semicrf_gene`` training step (the ``path`` objective) timed in its parts, for the benchmark scripts
(``gene_model_gpu.py``, ``real_genes/gene_step_gpu.py``): the state scores, the engine's ``log_partition``
forward, the forward over the gold pieces, and the backward of both, each synchronised on its own so that a
slow step says where it is slow.
"""

from __future__ import annotations

import contextlib
import time

PARTS = ("state_scores_s", "log_partition_fwd_s", "gold_pieces_fwd_s", "backward_s")


def path_step_parts(state_scores, crf, labels, lengths, sync, counting=None) -> tuple[dict, list]:
    """({part: seconds}, counts) of one step. ``state_scores()`` returns the (emissions, start, end) state
    scores (at the training stop penalty); ``crf`` is the model's ``GeneGrammar``; ``sync()`` waits for the
    device. ``counting``: a context manager factory around the ``log_partition`` forward whose value is
    returned as ``counts`` (``exact_rows.count_exact_rows`` on a GPU; default ``[None, None]``)."""
    from semicrf import log_partition

    seconds, t0 = {}, time.perf_counter()

    def mark(part):
        nonlocal t0
        sync()
        now = time.perf_counter()
        seconds[part], t0 = now - t0, now

    em, start, end = state_scores()
    tables = crf.state_tables()
    mark("state_scores_s")
    with (counting() if counting is not None else contextlib.nullcontext([None, None])) as counts:
        log_z = log_partition(em, lengths=lengths, start_scores=start, end_scores=end, backend=crf.backend,
                              **tables)
        mark("log_partition_fwd_s")
    gold = crf._pieces_log_score(em, start, end, labels, lengths, tables)
    mark("gold_pieces_fwd_s")
    (log_z - gold).sum().backward()
    mark("backward_s")
    return seconds, counts
