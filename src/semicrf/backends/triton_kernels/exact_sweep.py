"""The exact sweep: the recurrence of the package docstring as written, one position per step.

The fallback for the rows the chunked sweep flags (docs/engine_gpu.md, "Exact sweep kernel"): the
chain in float64 log space; each step reads the K-wide look-back window of ``g`` from global memory
(written by earlier steps of the same program, hence the barrier per step). It writes ``alpha``,
``u`` and ``g`` at every position, so marginals need no recomputation: O(N·T·C) memory, never T·K.
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
def sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, len_ptr,
    alpha_ptr, u_ptr, g_ptr, bestv_ptr, flag_ptr,
    T, C, K, n_per_dir, NR, first_con,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Sweep of row ``n = program_id(0)`` (see the module docstring for rows and groups).

    Shapes (N rows, NR per group, T positions): cum (NR, T+1, C); start, end, lim (NR, T, C);
    trans (2, C, C) and init (2, C) indexed by direction ``(n % NR) // n_per_dir``; dur (K, C);
    len (NR,). Out: alpha (N, T+1, C), u and g (N, T, C), all float64; with ``MAX``, bestv
    (N, T+1, C) float64, the best look-back value ``max_d (dur[d - 1] + g[e - d])`` of each end
    (:func:`viterbi_argmax_kernel` finds its duration afterwards). Only the rows whose ``flag``
    the chunked sweep raised run (the others return at once), so the fallback is launched without
    waiting for the flags on the host.
    """
    n = tl.program_id(0)
    r = n % NR
    direction = r // n_per_dir
    con = (n // NR) >= first_con
    L = tl.load(len_ptr + r)
    L = tl.where(tl.load(flag_ptr + n) != 0, L, 0)
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
    seq_in = r.to(tl.int64) * T * C
    cum_base = cum_ptr + r.to(tl.int64) * (T + 1) * C
    alpha_base = alpha_ptr + n.to(tl.int64) * (T + 1) * C
    g_base = g_ptr + seq

    alpha_prev = tl.full([BLOCK_C], NEG_INF, tl.float64)
    for t in range(0, L):
        # Incoming score of a segment starting at t (transition mixing, C x C).
        if t == 0:
            u = init
        else:
            x = alpha_prev[:, None] + trans
            if MAX:
                u = tl.max(x, axis=0)
            else:
                u = _lse_rows(x, 0)
        cum_t = tl.load(cum_base + t * C + cc, mask=cmask, other=0.0)
        g_t = u - cum_t
        if HAS_START:
            g_t += tl.load(start_ptr + seq_in + t * C + cc, mask=cmask, other=0.0)
        tl.store(u_ptr + seq + t * C + cc, u, mask=cmask)
        tl.store(g_base + t * C + cc, g_t, mask=cmask)
        # g[t] must be visible to every thread of the program before the look-back reads it.
        tl.debug_barrier()

        # Segments ending at e = t + 1: look back over durations d = 1..K.
        pos = t - dd  # start position e - d
        ok = dmask & (pos >= 0)
        okc = ok[:, None] & cmask[None, :]
        if CONSTRAINED:
            lim = tl.where(con, tl.load(lim_ptr + seq_in + t * C + cc, mask=cmask, other=0), K)
            okc = okc & ((dd[:, None] + 1) <= lim[None, :])
        win = tl.load(g_base + pos[:, None] * C + cc[None, :], mask=okc, other=NEG_INF) + dur
        win = tl.where(okc, win, NEG_INF)
        if MAX:
            best = tl.max(win, axis=0)
            tl.store(bestv_ptr + n.to(tl.int64) * (T + 1) * C + (t + 1) * C + cc, best, mask=cmask)
        else:
            best = _lse_rows(win, 0)
        a = tl.load(cum_base + (t + 1) * C + cc, mask=cmask, other=0.0) + best
        if HAS_END:
            a += tl.load(end_ptr + seq_in + t * C + cc, mask=cmask, other=0.0)
        a = tl.where(cmask, a, NEG_INF)
        tl.store(alpha_base + (t + 1) * C + cc, a, mask=cmask)
        alpha_prev = a
