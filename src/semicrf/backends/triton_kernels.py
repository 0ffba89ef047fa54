"""Triton kernels of the semi-CRF engine.

Notation as in :mod:`semicrf.backends.reference`: ``cum[t, c]`` is the sum of
emissions of label c over ``[0, t)``;

    u[s, c]     = initial[c]                                   (s = 0)
                = logsumexp_{c'} (alpha[s, c'] + trans[c', c])  (s >= 1)
    g[s, c]     = u[s, c] - cum[s, c] + start[s, c]
    alpha[e, c] = cum[e, c] + end[e - 1, c]
                  + logsumexp_{d = 1..min(K, e, lim[e - 1, c])} (dur[d - 1, c] + g[e - d, c])

``lim[t, c]`` is the longest allowed segment of label c ending at t (K when
unconstrained). The max-plus version of the same sweep is Viterbi.

Kernels:

- :func:`sweep_kernel`: one program per sequence (forward and reversed sequences
  are stacked in one launch, so the two directions run at the same time). The
  chain runs in float64 (with ``FAST_EXP`` the look-back's exponentials are
  float32, on float64 shifts); each step reads the K-wide look-back window of ``g``
  from global memory (written by earlier steps of the same program, hence the
  barrier per step). It writes ``alpha``, ``u`` and ``g`` at every position, so
  marginals need no recomputation: O(N·T·C) memory, never T·K.
- :func:`duration_grad_kernel`: the duration marginal, a lagged correlation of
  the forward ``g`` and the reversed ``g_r``; one program per (sequence, label,
  block of durations), summing over positions in a fixed order (no atomics, so
  gradients are bitwise reproducible).
- :func:`traceback_kernel`: Viterbi traceback on the device, one program per
  sequence, writing per-position labels and the segments (last first).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _lse_rows(x, axis: tl.constexpr):
    """logsumexp over ``axis``; all -inf gives -inf without NaN."""
    m = tl.max(x, axis=axis)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    if axis == 0:
        s = tl.sum(tl.exp(x - m_safe[None, :]), axis=0)
    else:
        s = tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
    return m_safe + tl.log(s)


@triton.jit
def _lse_window(x):
    """logsumexp over axis 0 of a float64 window: shifts in float64, exponentials in float32.

    The differences ``x - max`` are formed in float64 (the scores themselves can be ~1e5), so only
    the terms' relative rounding (~1e-7) reaches the sum, accumulated in float64; the chain stays
    float64.
    """
    m = tl.max(x, axis=0)
    m_safe = tl.where(m == float("-inf"), 0.0, m)
    s = tl.sum(tl.exp((x - m_safe[None, :]).to(tl.float32)).to(tl.float64), axis=0)
    return m_safe + tl.log(s)


@triton.jit
def sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, len_ptr,
    alpha_ptr, u_ptr, g_ptr, bestd_ptr, bestp_ptr,
    T, C, K, n_per_dir,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    FAST_EXP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Forward sweep of sequence ``n = program_id(0)``.

    Shapes (N sequences, T positions): cum (N, T+1, C); start, end, lim (N, T, C);
    trans (2, C, C) and init (2, C) indexed by direction ``n // n_per_dir``; dur (K, C);
    len (N,). Out: alpha (N, T+1, C), u and g (N, T, C), all float64; with ``MAX``,
    bestd (N, T+1, C) and bestp (N, T, C) int32 (argmax duration / previous label).
    """
    n = tl.program_id(0)
    direction = n // n_per_dir
    L = tl.load(len_ptr + n)
    NEG_INF: tl.constexpr = float("-inf")

    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    dd = tl.arange(0, BLOCK_K)  # lane j <-> duration j + 1
    dmask = dd < K
    # Parameters live in registers for the whole sweep.
    trans = tl.load(trans_ptr + direction * C * C + cc[:, None] * C + cc[None, :],
                    mask=cmask[:, None] & cmask[None, :], other=NEG_INF)  # [c', c]
    dur = tl.load(dur_ptr + dd[:, None] * C + cc[None, :], mask=dmask[:, None] & cmask[None, :], other=NEG_INF)
    init = tl.load(init_ptr + direction * C + cc, mask=cmask, other=NEG_INF)

    seq = n.to(tl.int64) * T * C
    cum_base = cum_ptr + n.to(tl.int64) * (T + 1) * C
    alpha_base = alpha_ptr + n.to(tl.int64) * (T + 1) * C
    g_base = g_ptr + seq

    alpha_prev = tl.full([BLOCK_C], NEG_INF, tl.float64)
    for t in range(0, L):
        # Incoming score of a segment starting at t (transition mixing, C x C).
        if t == 0:
            u = init
            if MAX:
                tl.store(bestp_ptr + seq + cc, tl.full([BLOCK_C], -1, tl.int32), mask=cmask)
        else:
            x = alpha_prev[:, None] + trans
            if MAX:
                u = tl.max(x, axis=0)
                arg = tl.argmax(x, axis=0)
                tl.store(bestp_ptr + seq + t * C + cc, arg.to(tl.int32), mask=cmask)
            else:
                u = _lse_rows(x, 0)
        cum_t = tl.load(cum_base + t * C + cc, mask=cmask, other=0.0)
        g_t = u - cum_t
        if HAS_START:
            g_t += tl.load(start_ptr + seq + t * C + cc, mask=cmask, other=0.0)
        tl.store(u_ptr + seq + t * C + cc, u, mask=cmask)
        tl.store(g_base + t * C + cc, g_t, mask=cmask)
        # g[t] must be visible to every thread of the program before the look-back reads it.
        tl.debug_barrier()

        # Segments ending at e = t + 1: look back over durations d = 1..K.
        pos = t - dd  # start position e - d
        ok = dmask & (pos >= 0)
        okc = ok[:, None] & cmask[None, :]
        if CONSTRAINED:
            lim = tl.load(lim_ptr + seq + t * C + cc, mask=cmask, other=0)
            okc = okc & ((dd[:, None] + 1) <= lim[None, :])
        win = tl.load(g_base + pos[:, None] * C + cc[None, :], mask=okc, other=NEG_INF) + dur
        win = tl.where(okc, win, NEG_INF)
        if MAX:
            best = tl.max(win, axis=0)
            bd = tl.argmax(win, axis=0) + 1  # first maximum: ties go to the shorter segment
            tl.store(bestd_ptr + n.to(tl.int64) * (T + 1) * C + (t + 1) * C + cc, bd.to(tl.int32), mask=cmask)
        elif FAST_EXP:
            best = _lse_window(win)
        else:
            best = _lse_rows(win, 0)
        a = tl.load(cum_base + (t + 1) * C + cc, mask=cmask, other=0.0) + best
        if HAS_END:
            a += tl.load(end_ptr + seq + t * C + cc, mask=cmask, other=0.0)
        a = tl.where(cmask, a, NEG_INF)
        tl.store(alpha_base + (t + 1) * C + cc, a, mask=cmask)
        alpha_prev = a


@triton.jit
def duration_grad_kernel(
    g_ptr, lim_ptr, dur_ptr, cum_ptr, logz_ptr, len_ptr, out_ptr,
    T, C, K, B,
    CONSTRAINED: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """out[b, d - 1, c] = sum_s exp(g[b, s, c] + dur[d - 1, c] + g[B + b, L - s - d, c] + cum[b, L, c] - logZ[b]).

    ``g`` holds the forward sweeps (rows 0..B-1) and the reversed ones (rows B..2B-1);
    ``g_r[L - e] + cum[L]`` is the score of everything from segment end e onwards.
    Grid: (B, C, cdiv(K, BLOCK_D)). Positions are summed in tiles of ``BLOCK_S`` in a
    fixed order.
    """
    b = tl.program_id(0)
    c = tl.program_id(1)
    d0 = tl.program_id(2) * BLOCK_D
    L = tl.load(len_ptr + b)
    NEG_INF: tl.constexpr = float("-inf")
    dd = d0 + tl.arange(0, BLOCK_D) + 1  # durations
    dmask = dd <= K
    durv = tl.load(dur_ptr + (dd - 1) * C + c, mask=dmask, other=NEG_INF)
    shift = tl.load(cum_ptr + b.to(tl.int64) * (T + 1) * C + L * C + c) - tl.load(logz_ptr + b)
    g_f = g_ptr + b.to(tl.int64) * T * C
    g_r = g_ptr + (B + b).to(tl.int64) * T * C
    acc = tl.zeros([BLOCK_D], tl.float64)
    ss0 = tl.arange(0, BLOCK_S)
    for s0 in range(0, L, BLOCK_S):
        ss = s0 + ss0
        gs = tl.load(g_f + ss * C + c, mask=ss < L, other=NEG_INF)
        e = ss[:, None] + dd[None, :]  # segment end (exclusive)
        ok = (ss[:, None] < L) & dmask[None, :] & (e <= L)
        if CONSTRAINED:
            lim = tl.load(lim_ptr + b.to(tl.int64) * T * C + (e - 1) * C + c, mask=ok, other=0)
            ok = ok & (dd[None, :] <= lim)
        hr = tl.load(g_r + (L - e) * C + c, mask=ok, other=NEG_INF)
        x = gs[:, None] + durv[None, :] + hr + shift
        p = tl.where(ok & (x > NEG_INF), tl.exp(tl.where(ok, x, 0.0)), 0.0)
        acc += tl.sum(p, axis=0)
    tl.store(out_ptr + b.to(tl.int64) * K * C + (dd - 1) * C + c, acc, mask=dmask)


@triton.jit
def traceback_kernel(bestd_ptr, bestp_ptr, last_ptr, len_ptr, ok_ptr, labels_ptr, segs_ptr, nseg_ptr,
                     T, C, BLOCK_K: tl.constexpr):
    """Follow the argmax pointers of sequence b back from its last label.

    bestd (B, T+1, C), bestp (B, T, C) int32; last, ok (B,) (ok = a path exists).
    Out: labels (B, T) int64 (pre-filled with -1), segs (B, T, 3) int32 as
    (start, end, label) from the last segment to the first, nseg (B,) int32.
    """
    b = tl.program_id(0)
    L = tl.load(len_ptr + b).to(tl.int32)
    ok = tl.load(ok_ptr + b)
    c = tl.load(last_ptr + b).to(tl.int32)
    kk = tl.arange(0, BLOCK_K)
    e = tl.where(ok != 0, L, 0)
    count = 0
    while e > 0:
        d = tl.load(bestd_ptr + b.to(tl.int64) * (T + 1) * C + e * C + c)
        s = e - d
        seg = segs_ptr + (b.to(tl.int64) * T + count) * 3
        tl.store(seg, s)
        tl.store(seg + 1, e)
        tl.store(seg + 2, c)
        tl.store(labels_ptr + b.to(tl.int64) * T + s + kk, tl.full([BLOCK_K], 0, tl.int64) + c, mask=kk < d)
        if s > 0:
            c = tl.load(bestp_ptr + b.to(tl.int64) * T * C + s * C + c)
        e = s
        count += 1
    tl.store(nseg_ptr + b, count)
