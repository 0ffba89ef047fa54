"""The CPU Viterbi over scores that arrive in blocks of positions: one sequence of any length whose
(T, C) score tables never exist at once.

The max-plus sweep is the CPU backend's (:func:`semicrf.backends.cpu_viterbi._viterbi_one`): the same sums, the
same maxima (:func:`semicrf.backends.cpu_viterbi.best_start`) and the same tie rules, so both return the same path
and score bit for bit; only its storage differs:

- the prefix sums of the emissions are one running float64 row (the same additions as ``np.cumsum``);
- the look-back values ``g[s, c] = u[s, c] - cum[s, c] + start[s, c]`` of the last K starts sit in a
  ring of 2K entries per label (each written twice, so any window of at most K starts is contiguous);
- what the traceback needs is kept for every position: the length of the best segment ending there
  (int16 when K < 2^15) and the best label before a segment starting there (int8 when C < 2^7),
  3 bytes per position and label against the 40 or more of the whole-sequence sweep's float64 and
  int64 tables;
- the look-back of the ends of each step of SUB_BLOCK positions over the starts before that step
  runs first, spread over threads by label; the starts inside the step follow, position by position
  (one sequence is otherwise one chain, on one core).

So a sequence of T positions and C labels needs about 3·T·C bytes beside one block's scores: 21 Mbp at
62 states is 3.9 GB. :func:`semicrf.viterbi_blocks` is the public entry point; it validates each block.
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

from .cpu import NEG_INF, _jit, duration_span, entry_lists, first_start
from .cpu_viterbi import LOOK_CHUNK, _best_entry, best_start


#: Positions per step of the parallel far part (see :func:`_advance`).
SUB_BLOCK = 32


def _far_body(t0, Q, K, span, dur_rev, ring, end, q0, far_best, far_start, chunk_max):
    """For the ends t0 + 1 .. t0 + Q and every label, the best look-back over the starts before t0
    (all in the ring when t0's step begins), labels spread over the threads: the same best and start
    as the CPU backend's loop over those starts (:func:`semicrf.backends.cpu_viterbi.best_start`, ties to the
    larger start). Ends whose end score (row q0 + i of the block's ``end``) is -inf are skipped, as the
    sweep skips them. ``chunk_max``: (C, K // LOOK_CHUNK + 2) scratch, a row per label."""
    C = ring.shape[0]
    for c in nb.prange(C):
        for i in range(Q):
            if end[q0 + i, c] == NEG_INF:
                continue
            e = t0 + i + 1
            n = min(span[c, 1], e)
            s0 = e - n
            # starts s0 .. min(t0 - 1, e - span[c, 0]), those of a finite duration's residue (span[c, 2])
            a = first_start(s0, e, span[c, 0], span[c, 2])
            b = min(t0 - 1, e - span[c, 0])
            if a > b:
                far_best[i, c] = NEG_INF
                far_start[i, c] = e - 1
                continue
            far_best[i, c], far_start[i, c] = best_start(dur_rev[c], ring[c], K - e, s0 % K - s0, a,
                                                         (b - a) // span[c, 2] + 1, span[c, 2], chunk_max[c])


# Compiled twice: serial (one thread: no parallel runtime, safe from any Python thread) and parallel.
_far_serial = nb.njit(**_jit)(_far_body)
_far_parallel = nb.njit(parallel=True, **_jit)(_far_body)
# numba's default thread pool must not be entered by two Python threads at once.
_PARALLEL_LOCK = threading.Lock()


@nb.njit(**_jit)
def _advance(t0, K, C, em, start, end, entries, init, dur_rev, span, alpha, cum, ring, best_d, best_prev, parallel):
    """The sweep over positions t0 .. t0 + W - 1 of one block (em, start, end: (W, C) float64).
    State carried from block to block: alpha (C,) at position t0, cum (C,) the prefix sums at t0,
    ring (C, 2K) the look-back values. Writes best_d[t0 + 1 .. t0 + W] and best_prev[t0 .. t0 + W - 1].

    By steps of SUB_BLOCK positions: the look-back over the starts before the step (the far part) runs
    first, over the labels (:func:`_far_body`, in parallel when ``parallel``); then each position in
    order takes its entries, and its ends look back over the starts inside the step, continuing the far
    part's maximum. Each
    candidate is the same sum as in the one-pass loop, and the loop's tie rule (the larger start) is
    kept across the split, so the result is the same bit for bit with any number of threads."""
    W = em.shape[0]
    sources, source_scores, source_ptr = entries
    chunk_max = np.empty((C, K // LOOK_CHUNK + 2))
    nxt = np.empty(C)
    far_best = np.empty((SUB_BLOCK, C))
    far_start = np.empty((SUB_BLOCK, C), dtype=np.int64)
    for q0 in range(0, W, SUB_BLOCK):
        tq = t0 + q0
        Q = min(SUB_BLOCK, W - q0)
        if parallel:
            _far_parallel(tq, Q, K, span, dur_rev, ring, end, q0, far_best, far_start, chunk_max)
        else:
            _far_serial(tq, Q, K, span, dur_rev, ring, end, q0, far_best, far_start, chunk_max)
        for i in range(q0, q0 + Q):
            t = t0 + i
            r = t % K
            for c in range(C):
                uv, arg = _best_entry(t, c, alpha, init, sources, source_scores, source_ptr)
                best_prev[t, c] = arg
                gv = uv - cum[c] + start[i, c]
                ring[c, r] = gv
                ring[c, r + K] = gv
            e = t + 1
            base = K - e
            for c in range(C):
                cum[c] = cum[c] + em[i, c]
                n = min(span[c, 1], e)
                if n < span[c, 0] or end[i, c] == NEG_INF:
                    nxt[c] = NEG_INF
                    best_d[e, c] = 1
                    continue
                best = far_best[i - q0, c]
                bs = far_start[i - q0, c]
                s0 = max(e - n, tq)
                j0 = s0 % K
                # starts max(e - n, tq) .. e - span[c, 0], by the label's step
                for s in range(first_start(s0, e, span[c, 0], span[c, 2]), e - span[c, 0] + 1, span[c, 2]):
                    x = dur_rev[c, base + s] + ring[c, j0 + s - s0]
                    if x >= best:  # ties go to the larger start, i.e. the shorter segment
                        best = x
                        bs = s
                nxt[c] = cum[c] + end[i, c] + best
                best_d[e, c] = e - bs
            for c in range(C):
                alpha[c] = nxt[c]


@nb.njit(**_jit)
def _count_segments(L, last, best_d, best_prev):
    n = 0
    e = L
    c = last
    while e > 0:
        s = e - best_d[e, c]
        n += 1
        if s > 0:
            c = best_prev[s, c]
        e = s
    return n


@nb.njit(**_jit)
def _traceback(L, last, best_d, best_prev, labels, table):
    """Fill labels (L,) and table (n, 3) (start, end, label), in sequence order."""
    i = table.shape[0]
    e = L
    c = last
    while e > 0:
        s = e - best_d[e, c]
        i -= 1
        table[i, 0] = s
        table[i, 1] = e
        table[i, 2] = c
        for q in range(s, e):
            labels[q] = c
        if s > 0:
            c = best_prev[s, c]
        e = s


class BlockViterbi:
    """The sweep's state for one sequence of ``length`` positions; :meth:`add` each block in order,
    then :meth:`finish`. Parameters as float64 numpy arrays: transitions (C, C), durations (K, C),
    initial (C,), final (C,); threads: how many threads share the far part of the look-back (capped at
    numba's ``NUMBA_NUM_THREADS``)."""

    def __init__(self, length: int, transitions: np.ndarray, durations: np.ndarray, initial: np.ndarray,
                 final: np.ndarray, threads: int = 1):
        K, C = durations.shape
        self.length, self.K, self.C = length, K, C
        self.threads = max(1, min(int(threads), nb.config.NUMBA_NUM_THREADS))
        self.entries, self.init, self.final = entry_lists(transitions), initial, final
        self.dur_rev = np.ascontiguousarray(durations[::-1].T)
        self.span = duration_span(durations)
        self.alpha = np.full(C, NEG_INF)
        self.cum = np.zeros(C)
        self.ring = np.full((C, 2 * K), NEG_INF)
        self.best_d = np.ones((length + 1, C), dtype=np.int16 if K < 2**15 else np.int32)
        self.best_prev = np.zeros((length, C), dtype=np.int8 if C < 2**7 else np.int16 if C < 2**15 else np.int32)
        self.done = 0

    def add(self, emissions: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        """The next block's scores, each (W, C) float64 C-contiguous."""
        args = (self.done, self.K, self.C, emissions, start, end, self.entries, self.init, self.dur_rev, self.span,
                self.alpha, self.cum, self.ring, self.best_d, self.best_prev)
        if self.threads == 1:
            _advance(*args, False)
        else:
            with _PARALLEL_LOCK:
                nb.set_num_threads(self.threads)
                _advance(*args, True)
        self.done += emissions.shape[0]

    def finish(self):
        """(score, labels (length,) int64, table (n, 3) int64) of the best path; with no path: -inf,
        labels -1, no segment."""
        scores = self.alpha + self.final
        last = int(np.argmax(scores))  # the first of equal maxima, as the whole-sequence sweep
        score = float(scores[last])
        labels = np.full(self.length, -1, dtype=np.int64)
        if score == NEG_INF:
            return score, labels, np.zeros((0, 3), dtype=np.int64)
        table = np.empty((_count_segments(self.length, last, self.best_d, self.best_prev), 3), dtype=np.int64)
        _traceback(self.length, last, self.best_d, self.best_prev, labels, table)
        return score, labels, table
