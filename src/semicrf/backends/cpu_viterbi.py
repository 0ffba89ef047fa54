"""The CPU backend's Viterbi: the max-plus sweep of :mod:`semicrf.backends.cpu`, compiled with numba.

At each position every label is entered from the labels with a finite transition into it
(:func:`semicrf.backends.cpu.entry_lists`), the first of equal sums winning; each end's look-back
over its starts (:func:`best_start`) keeps the largest sum and, among equal ones, the larger start
(the shorter segment). The traceback follows the stored best durations and previous labels.
:mod:`semicrf.backends.cpu_blocks` runs the same sweep over scores that arrive in blocks.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import torch

from ..problem import Problem
from ..types import ViterbiResult
from .cpu import (NEG_INF, _jit, _np, _parallel, _prefix, _seq_or_zeros, duration_span, entry_lists,
                  first_start)


@nb.njit(**_jit)
def _best_entry(t, c, alpha_t, init, sources, source_scores, source_ptr):
    """(score, previous label) of the best way into a segment of label c starting at t: the initial
    score at t = 0 (previous label -1), else the best alpha_t[c'] + trans[c', c] (the first of ties).
    The sources c' of finite trans[c', c] come in ascending order from :func:`entry_lists`; the others
    cannot win (their sums are -inf), so the result is that of the loop over every c'."""
    if t == 0:
        return init[c], -1
    uv = NEG_INF
    arg = 0
    for k in range(source_ptr[c], source_ptr[c + 1]):
        x = alpha_t[sources[k]] + source_scores[k]
        if x > uv:
            uv = x
            arg = sources[k]
    return uv, arg


#: Look-back terms per chunk of :func:`best_start`'s first pass.
LOOK_CHUNK = 64


@nb.njit(**_jit)
def _chunk_max(w, g, wi, gi, n, step):
    """max over k < n of w[wi + k step] + g[gi + k step], in eight running maxima (no chain of
    dependent comparisons; a maximum is exact in any order)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = NEG_INF
    k = 0
    while k + 8 <= n:
        i = wi + k * step
        j = gi + k * step
        x0 = w[i] + g[j]
        x1 = w[i + step] + g[j + step]
        x2 = w[i + 2 * step] + g[j + 2 * step]
        x3 = w[i + 3 * step] + g[j + 3 * step]
        x4 = w[i + 4 * step] + g[j + 4 * step]
        x5 = w[i + 5 * step] + g[j + 5 * step]
        x6 = w[i + 6 * step] + g[j + 6 * step]
        x7 = w[i + 7 * step] + g[j + 7 * step]
        m0 = x0 if x0 > m0 else m0
        m1 = x1 if x1 > m1 else m1
        m2 = x2 if x2 > m2 else m2
        m3 = x3 if x3 > m3 else m3
        m4 = x4 if x4 > m4 else m4
        m5 = x5 if x5 > m5 else m5
        m6 = x6 if x6 > m6 else m6
        m7 = x7 if x7 > m7 else m7
        k += 8
    while k < n:
        x0 = w[wi + k * step] + g[gi + k * step]
        m0 = x0 if x0 > m0 else m0
        k += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


@nb.njit(**_jit)
def best_start(w, g, wo, go, a, n, step, chunk_max):
    """(best, s): the largest of w[wo + s] + g[go + s] over the n >= 1 starts s = a, a + step, ...,
    a + (n - 1) step, and the largest start that attains it: what the ascending loop with ``x >= best``
    returns (ties to the larger start), the same bit for bit, in two passes. The first takes the
    maxima of chunks of LOOK_CHUNK terms; the second finds the last chunk holding the best and walks
    it down from its end. ``chunk_max``: scratch of at least ceil(n / LOOK_CHUNK) entries. The sums
    are never NaN (the engine's scores are finite or -inf), so the best is attained."""
    best = NEG_INF
    k = 0
    for v0 in range(0, n, LOOK_CHUNK):
        v = _chunk_max(w, g, wo + a + v0 * step, go + a + v0 * step, min(LOOK_CHUNK, n - v0), step)
        chunk_max[k] = v
        if v > best:
            best = v
        k += 1
    k -= 1
    while chunk_max[k] != best:
        k -= 1
    s = a + (min(n, (k + 1) * LOOK_CHUNK) - 1) * step
    while w[wo + s] + g[go + s] != best:
        s -= step
    return best, s


@nb.njit(**_jit)
def _viterbi_one(L, K, C, cum, start, end, entries, init, final, dur_rev, span, alpha, gv, best_d, best_prev,
                 labels, segs):
    """Max-plus sweep and traceback for one sequence. Returns (score, number of segments).
    ``entries``: :func:`entry_lists` of the transitions."""
    sources, source_scores, source_ptr = entries
    chunk_max = np.empty(K // LOOK_CHUNK + 2)
    for c in range(C):
        alpha[0, c] = NEG_INF
    for t in range(L):
        for c in range(C):
            uv, arg = _best_entry(t, c, alpha[t], init, sources, source_scores, source_ptr)
            best_prev[t, c] = arg
            gv[c, t] = uv - cum[t, c] + start[t, c]
        e = t + 1
        base = K - e
        for c in range(C):
            best = NEG_INF
            bs = e - 1
            n = min(span[c, 1], e)
            if n < span[c, 0] or end[t, c] == NEG_INF:  # see _sweep
                alpha[e, c] = NEG_INF
                best_d[e, c] = 1
                continue
            a = first_start(e - n, e, span[c, 0], span[c, 2])
            if a <= e - span[c, 0]:  # ties go to the larger start, i.e. the shorter segment
                best, bs = best_start(dur_rev[c], gv[c], base, 0, a, (e - span[c, 0] - a) // span[c, 2] + 1,
                                      span[c, 2], chunk_max)
            alpha[e, c] = cum[e, c] + end[t, c] + best
            best_d[e, c] = e - bs
    score = NEG_INF
    last = 0
    for c in range(C):
        x = alpha[L, c] + final[c]
        if x > score:
            score = x
            last = c
    n_seg = 0
    if score == NEG_INF:
        return score, 0
    e = L
    c = last
    while e > 0:
        d = best_d[e, c]
        s = e - d
        segs[n_seg, 0] = s
        segs[n_seg, 1] = e
        segs[n_seg, 2] = c
        n_seg += 1
        for q in range(s, e):
            labels[q] = c
        if s > 0:
            c = best_prev[s, c]
        e = s
    return score, n_seg


@nb.njit(**_jit)
def _viterbi_task(b, lengths, K, C, cum, start, end, entries, init, final, dur_rev, span, scores, labels, segs, nseg):
    T = labels.shape[1]
    L = lengths[b]
    alpha = np.empty((L + 1, C))
    gv = np.empty((C, L))
    best_d = np.zeros((L + 1, C), dtype=np.int64)
    best_prev = np.zeros((L, C), dtype=np.int64)
    sc, n = _viterbi_one(L, K, C, cum[b], start[b], end[b], entries, init, final, dur_rev, span, alpha, gv, best_d,
                         best_prev, labels[b], segs[b])
    scores[b] = sc
    nseg[b] = n
    for q in range(L, T):
        labels[b, q] = -1


def viterbi(p: Problem) -> ViterbiResult:
    """The best segmentation of each sequence (max-plus sweep, traceback compiled)."""
    B, T, C = p.emissions.shape
    K = p.max_duration
    dur = _np(p.durations)
    dur_rev = np.ascontiguousarray(dur[::-1].T)
    lengths = p.lengths.cpu().numpy().astype(np.int64)
    scores = np.empty(B)
    labels = np.full((B, T), -1, dtype=np.int64)
    segs = np.zeros((B, T, 3), dtype=np.int64)
    nseg = np.zeros(B, dtype=np.int64)
    args = (lengths, K, C, _prefix(p.emissions), _seq_or_zeros(p.start_scores, (B, T, C)),
            _seq_or_zeros(p.end_scores, (B, T, C)), entry_lists(_np(p.transitions)), _np(p.initial), _np(p.final),
            dur_rev, duration_span(dur), scores, labels, segs, nseg)
    _parallel(lambda b: _viterbi_task(b, *args), B, int(lengths.sum()) * K * C)
    segments = [[tuple(int(v) for v in row) for row in segs[b, :nseg[b]][::-1]] for b in range(B)]
    return ViterbiResult(score=torch.from_numpy(scores), labels=torch.from_numpy(labels), segments=segments)
