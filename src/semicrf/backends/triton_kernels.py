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

Every sweep kernel runs one program per row ``n`` of a launch. Rows come in groups of ``NR``
(``NR = B`` for one direction, ``2·B`` for the forward and reversed sequences, stacked so the two
directions run at the same time); group ``n // NR`` is unconstrained when it is below ``first_con``,
else constrained to the labels (longest allowed segment ``lim``). Inputs shared by the groups
(``cum``, ``start``, ``end``, ``lim``) are indexed by ``n % NR``, outputs by ``n``: the
unconstrained and the constrained sweeps of ``log_likelihood`` run in one launch.

The file follows the computation (docs/engine.md, docs/engine_gpu.md), top to bottom:

- Preparation: :func:`split_exp_kernel`, :func:`label_runs_kernel`, :func:`weights_kernel`
  (mantissa and exponent split, label runs for the constrained sweeps, linear weights), each one
  launch instead of a dozen tensor operations.
- :func:`sweep_kernel`, the recurrence as written (the exact fallback for the rows the chunked
  sweep flags): the chain in float64 log space; each step reads the K-wide look-back window of
  ``g`` from global memory (written by earlier steps of the same program, hence the barrier per
  step). It writes ``alpha``, ``u`` and ``g`` at every position, so marginals need no
  recomputation: O(N·T·C) memory, never T·K.
- :func:`chunk_linear_sweep_kernel` (the default) and its steps: the same sweep with the
  look-back split at chunks of Q positions (far part per chunk as a block product, possibly by a
  helper program, near part per step, the log chain in linear space in registers; see its
  docstring).
- Marginals: :func:`duration_grad_kernel`, the duration marginal, a lagged correlation of the
  forward ``g`` and the reversed ``g_r`` (as mantissas and exponents: products, no
  exponentials), one program per (sequence, label, block of durations), summing over positions
  in a fixed order (no atomics, so gradients are bitwise reproducible); :func:`marginals_kernel`,
  the position and transition marginals from the two sweeps, one program per sequence.
- Viterbi: :func:`viterbi_argmax_kernel` (the arguments of the sweep's maxima, in parallel after
  it), :func:`viterbi_meet_kernel` (the best segment across the middle, where the two halves
  meet) and :func:`traceback_kernel` (one program per half sequence, writing the segments).
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
def _spread(x, lo, hi, axis: tl.constexpr):
    """Running (lo, hi) of the finite entries of ``x`` along ``axis``."""
    fin = (x > float("-inf")) & (x < float("inf"))
    lo = tl.minimum(lo, tl.min(tl.where(fin, x, float("inf")), axis=axis))
    hi = tl.maximum(hi, tl.max(tl.where(fin, x, float("-inf")), axis=axis))
    return lo, hi


@triton.jit
def _too_spread(dur_ptr, trans_ptr, init_ptr, direction, C, K, cc, cmask,
                SPREAD_D: tl.constexpr, BLOCK_C: tl.constexpr):
    """1 if the finite duration scores of a label, or the finite transition or initial scores of
    the direction, spread more than ``SPREAD_D`` nats (beyond what the linear chunked sweep holds)."""
    KB: tl.constexpr = 128
    lo = tl.full([BLOCK_C], float("inf"), tl.float64)
    hi = tl.full([BLOCK_C], float("-inf"), tl.float64)
    for k0 in range(0, K, KB):
        kk = k0 + tl.arange(0, KB)
        x = tl.load(dur_ptr + kk[:, None] * C + cc[None, :], mask=(kk < K)[:, None] & cmask[None, :],
                    other=float("-inf"))
        lo, hi = _spread(x, lo, hi, 0)
    bad = tl.max(tl.where(hi - lo > SPREAD_D, 1, 0), axis=0)
    x = tl.load(trans_ptr + direction * C * C + cc[:, None] * C + cc[None, :],
                mask=cmask[:, None] & cmask[None, :], other=float("-inf"))
    lo, hi = _spread(x, tl.full([BLOCK_C], float("inf"), tl.float64), tl.full([BLOCK_C], float("-inf"), tl.float64), 0)
    bad = tl.maximum(bad, tl.where(tl.max(hi, axis=0) - tl.min(lo, axis=0) > SPREAD_D, 1, 0))
    x = tl.load(init_ptr + direction * C + cc, mask=cmask, other=float("-inf"))
    lo1, hi1 = _spread(x, float("inf"), float("-inf"), 0)
    return tl.maximum(bad, tl.where(hi1 - lo1 > SPREAD_D, 1, 0))


@triton.jit
def split_exp_kernel(x_ptr, m_ptr, k_ptr, n, LN2_HI: tl.constexpr, LN2_LO: tl.constexpr, BLOCK: tl.constexpr):
    """exp(x) = m · 2^k for any float64 x without overflow: m in [1, 2] float64, k int32 (m = 0 and
    k = -2^20 where x = -inf); ln 2 in two parts so that k · LN2_HI is exact."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + i, mask=i < n, other=float("-inf"))
    fin = (x > float("-inf")) & (x < float("inf"))
    xs = tl.where(fin, x, 0.0)
    k = tl.floor(xs * 1.4426950408889634)
    m = tl.exp((xs - k * LN2_HI) - k * LN2_LO)
    tl.store(m_ptr + i, tl.where(fin, m, 0.0), mask=i < n)
    tl.store(k_ptr + i, tl.where(fin, k, -1048576.0).to(tl.int32), mask=i < n)


@triton.jit
def _max_i32(a, b):
    return tl.maximum(a, b)


@triton.jit
def _min_i32(a, b):
    return tl.minimum(a, b)


@triton.jit
def label_runs_kernel(labels_ptr, len_ptr, lim_ptr, rem_ptr, T, C, K, B,
                      REVERSE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """What the constrained sweeps need from the labels of sequence b (labels (B, T) int64).

    ``lim`` (B or 2B, T, C) int32: row b, the longest allowed segment of label c ending at t,
    ``min(run length ending at t, K)`` where the label at t is c, else 0; with ``REVERSE`` row
    B + b, the same for the reversed sequence (positions ``L - 1 - t``). ``rem`` (B, C, T) int32:
    the length from t to the end of its run where the label at t is c, else 0. Positions past the
    length get 0. Runs come from prefix maxima of run starts and suffix minima of run ends.
    """
    b = tl.program_id(0)
    L = tl.load(len_ptr + b).to(tl.int32)
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    lab_base = labels_ptr + b.to(tl.int64) * T
    lim_f = lim_ptr + b.to(tl.int64) * T * C
    lim_r = lim_ptr + (B + b).to(tl.int64) * T * C
    rem_b = rem_ptr + b.to(tl.int64) * C * T
    carry = tl.zeros([], tl.int32)
    for t0 in range(0, T, BLOCK_T):
        tt = t0 + tl.arange(0, BLOCK_T)
        lab = tl.load(lab_base + tt, mask=tt < T, other=-1)
        prev = tl.load(lab_base + tt - 1, mask=(tt >= 1) & (tt < T), other=-1)
        first = tl.where((tt == 0) | (lab != prev), tt, -1)
        start = tl.maximum(tl.associative_scan(first, 0, _max_i32), carry)
        carry = tl.max(start, axis=0)
        own = (lab[:, None] == cc[None, :]) & (tt < L)[:, None]
        tl.store(lim_f + tt[:, None] * C + cc[None, :], tl.where(own, tl.minimum(tt - start + 1, K)[:, None], 0),
                 mask=(tt < T)[:, None] & cmask[None, :])
        if REVERSE:  # reversed positions past the length
            tl.store(lim_r + tt[:, None] * C + cc[None, :], tl.zeros([BLOCK_T, BLOCK_C], tl.int32),
                     mask=((tt >= L) & (tt < T))[:, None] & cmask[None, :])
    carry = tl.zeros([], tl.int32) + T
    for j0 in range(0, T, BLOCK_T):
        tt = (T - 1 - j0) - tl.arange(0, BLOCK_T)  # descending positions: the scan gives suffix minima
        inside = (tt >= 0) & (tt < L)
        lab = tl.load(lab_base + tt, mask=tt >= 0, other=-1)
        nxt = tl.load(lab_base + tt + 1, mask=(tt >= 0) & (tt + 1 < L), other=-1)
        last = tl.where(inside & ((tt == L - 1) | (lab != nxt)), tt, T)
        end = tl.minimum(tl.associative_scan(last, 0, _min_i32), carry)
        carry = tl.min(end, axis=0)
        rem = end - tt + 1
        own = (lab[:, None] == cc[None, :]) & inside[:, None]
        tl.store(rem_b + cc[None, :] * T + tt[:, None], tl.where(own, rem[:, None], 0),
                 mask=(tt >= 0)[:, None] & cmask[None, :])
        if REVERSE:
            tl.store(lim_r + (L - 1 - tt)[:, None] * C + cc[None, :], tl.where(own, tl.minimum(rem, K)[:, None], 0),
                     mask=inside[:, None] & cmask[None, :])


@triton.jit
def weights_kernel(dur_ptr, trans_ptr, w_ptr, dp_ptr, dmax_ptr, tlin_ptr, tmax_ptr, C, K, KP,
                   PADDED: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """Weights of the chunked sweep (one program): ``dmax[c]`` the largest finite duration score of
    label c (0 if none), ``w = exp(dur - dmax)`` (K, C); with ``PADDED`` the (KP, BLOCK_C) table
    ``dp = dur`` (-inf past K and for padding labels), so that the max-plus far part's look-backs
    need no mask; per direction ``tmax`` the largest finite transition score (0 if none), ``tlin =
    exp(trans - tmax)`` (2, C, C)."""
    NEG_INF: tl.constexpr = float("-inf")
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    hi = tl.full([BLOCK_C], NEG_INF, tl.float64)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(dur_ptr + kk[:, None] * C + cc[None, :], mask=(kk < K)[:, None] & cmask[None, :], other=NEG_INF)
        hi = tl.maximum(hi, tl.max(tl.where(x < float("inf"), x, NEG_INF), axis=0))
    dmax = tl.where(hi == NEG_INF, 0.0, hi)
    tl.store(dmax_ptr + cc, dmax, mask=cmask)
    for k0 in range(0, KP, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        m = (kk < K)[:, None] & cmask[None, :]
        x = tl.load(dur_ptr + kk[:, None] * C + cc[None, :], mask=m, other=NEG_INF)
        tl.store(w_ptr + kk[:, None] * C + cc[None, :], tl.exp(x - dmax[None, :]), mask=m)
        if PADDED:
            tl.store(dp_ptr + kk[:, None] * BLOCK_C + cc[None, :], x, mask=(kk < KP)[:, None] & (cc < BLOCK_C)[None, :])
    m2 = cmask[:, None] & cmask[None, :]
    for d in tl.static_range(0, 2):
        x = tl.load(trans_ptr + d * C * C + cc[:, None] * C + cc[None, :], mask=m2, other=NEG_INF)
        tm = tl.max(tl.max(tl.where(x < float("inf"), x, NEG_INF), axis=1), axis=0)
        tm = tl.where(tm == NEG_INF, 0.0, tm)
        tl.store(tmax_ptr + d, tm)
        tl.store(tlin_ptr + d * C * C + cc[:, None] * C + cc[None, :], tl.exp(x - tm), mask=m2)


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


@triton.jit
def _chunk_ends(k, L, C, K, seq_in, con, lim_ptr, cc, cmask, kfull, rr,
                CONSTRAINED: tl.constexpr, Q: tl.constexpr):
    """The Q ends ``e = k·Q + 1 ..`` of chunk k: (e [Q], valid (e, label) [Q, C], longest allowed
    segment [Q, C], smallest allowed start [Q, C], first source block of the far part)."""
    t0 = k * Q
    e_q = t0 + rr + 1
    vq2 = (e_q <= L)[:, None] & cmask[None, :]
    if CONSTRAINED:
        lmax = tl.minimum(tl.load(lim_ptr + seq_in + (e_q[:, None] - 1) * C + cc[None, :], mask=vq2, other=0), K)
        lmax = tl.where(con, lmax, K)
    else:
        lmax = kfull
    lo = e_q[:, None] - lmax
    lo_min = tl.min(tl.min(tl.where(vq2, lo, t0), axis=1), axis=0)
    return e_q, vq2, lmax, lo, tl.maximum(lo_min, 0) // Q


@triton.jit
def _far_log(j_lo, j_hi, e_q, lo, lmax, glin_ptr, bref_base, w_ptr, seq, C, cc, cmask,
             Q: tl.constexpr, QS: tl.constexpr, NBP: tl.constexpr, BLOCK_C: tl.constexpr, CG: tl.constexpr):
    """The linear far part of the log semiring for the ends ``e_q`` over source blocks j_hi down to
    j_lo (none when j_hi < j_lo): (acc [Q, C], R [Q, C], lost [Q, C] int32), the sum being
    ``acc · exp(R)`` with R the largest reference of the blocks that reach each (end, label), -inf
    where none does (acc then 0); ``lost`` marks a contributing block whose scale underflowed.
    ``CG``: load g and the references past the L1 cache (they were written by another program)."""
    NEG_INF: tl.constexpr = float("-inf")
    jb = j_hi - tl.arange(0, NBP)
    inb = jb >= j_lo
    bm = inb[:, None] & cmask[None, :]
    if CG:
        brefs = tl.load(bref_base + jb[:, None] * C + cc[None, :], mask=bm, other=NEG_INF, cache_modifier=".cg")
    else:
        brefs = tl.load(bref_base + jb[:, None] * C + cc[None, :], mask=bm, other=NEG_INF)
    ov = ((jb[None, :, None] * Q + Q - 1) >= lo[:, None, :]) & inb[None, :, None]
    R = tl.max(tl.where(ov, brefs[None, :, :], NEG_INF), axis=1)  # [Q, C]
    R0 = tl.where(R == NEG_INF, 0.0, R)
    acc = tl.zeros([Q, BLOCK_C], tl.float64)
    lost = tl.zeros([Q, BLOCK_C], tl.int32)
    for jn in range(0, j_hi - j_lo + 1):
        j = j_hi - jn
        part = tl.zeros([Q, BLOCK_C], tl.float64)
        for sb in tl.static_range(0, Q // QS):
            rs = sb * QS + tl.arange(0, QS)
            s = j * Q + rs
            if CG:
                gl = tl.load(glin_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=0.0,
                             cache_modifier=".cg")
            else:
                gl = tl.load(glin_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=0.0)
            d3 = (e_q[:, None] - s[None, :])[:, :, None]  # [Q(end), QS(start), 1], >= 1
            okw = (d3 <= lmax[:, None, :]) & cmask[None, None, :]
            wv = tl.load(w_ptr + (d3 - 1) * C + cc[None, None, :], mask=okw, other=0.0)
            part += tl.sum(wv * gl[None, :, :], axis=1)
        if CG:
            br = tl.load(bref_base + j * C + cc, mask=cmask, other=NEG_INF, cache_modifier=".cg")
        else:
            br = tl.load(bref_base + j * C + cc, mask=cmask, other=NEG_INF)
        # Only blocks that reach the (end, label) count: another's scale may overflow (0 · inf).
        scale = tl.where((j * Q + Q - 1) >= lo, tl.exp(br[None, :] - R0), 0.0)
        acc += part * scale
        lost = lost | ((part > 0) & (scale == 0)).to(tl.int32)
    return acc, R, lost


@triton.jit
def _far_max(j_lo, j_hi, t0, g_ptr, seq, dp_ptr, C, cc, cmask, rr,
             Q: tl.constexpr, QS: tl.constexpr, BLOCK_C: tl.constexpr, CG: tl.constexpr):
    """The max-plus far part of the Q ends of the chunk at ``t0`` over source blocks j_hi down to j_lo
    (none when j_hi < j_lo): [Q, C], the best ``dur[d - 1] + g[e - d]``, -inf where there is none.
    Maxima kept elementwise over (end, start, label) tiles and reduced over the starts once; the
    scores come from ``dp``, padded with -inf, so the tiles load without masks (max-plus rows are
    never constrained). ``CG`` as :func:`_far_log`."""
    NEG_INF: tl.constexpr = float("-inf")
    rs3 = tl.arange(0, QS)[None, :, None]
    cc3 = cc[None, None, :]
    cm3 = cmask[None, None, :] & (rs3 >= 0)
    woff3 = (rr[:, None, None] - rs3) * BLOCK_C + cc3
    best3 = tl.full([Q, QS, BLOCK_C], NEG_INF, tl.float64)
    for jn in range(0, j_hi - j_lo + 1):
        for sb in tl.static_range(0, Q // QS):
            s0 = (j_hi - jn) * Q + sb * QS
            if CG:
                gv = tl.load(g_ptr + seq + (s0 + rs3) * C + cc3, mask=cm3, other=NEG_INF, cache_modifier=".cg")
            else:
                gv = tl.load(g_ptr + seq + (s0 + rs3) * C + cc3, mask=cm3, other=NEG_INF)
            best3 = tl.maximum(best3, tl.load(dp_ptr + (t0 - s0) * BLOCK_C + woff3) + gv)
    return tl.max(best3, axis=1)


@triton.jit
def _wait_at_least(ptr, target, SPIN):
    """Spin until the counter at ``ptr`` reaches ``target`` (acquire: what its writer stored before
    raising it is visible after), a negative value shows up, or SPIN polls pass. Returns the value."""
    v = tl.atomic_add(ptr, 0, sem="acquire", scope="gpu")
    spins = 0
    while (v >= 0) & (v < target) & (spins < SPIN):
        v = tl.atomic_add(ptr, 0, sem="acquire", scope="gpu")
        spins += 1
    return v


@triton.jit
def _publish(ptr, value, FENCE: tl.constexpr):
    """Raise the hand-over counter at ``ptr`` to ``value`` once every thread's stores before it are
    visible GPU-wide: a barrier, then (``FENCE``, compiled code) ``fence.acq_rel.gpu``, which also
    releases what the other threads of the program wrote before the barrier, then a release store."""
    tl.debug_barrier()
    if FENCE:
        tl.inline_asm_elementwise("fence.acq_rel.gpu; mov.b32 $0, $1;", "=r,r", [value], dtype=tl.int32,
                                  is_pure=False, pack=1)
    tl.atomic_xchg(ptr, value, sem="release", scope="gpu")


@triton.jit
def _await(ptr, target, dead, SPIN):
    """A row waiting for its helper's chunk (``ready >= target``), unless it already gave up
    (``dead``). Returns ``dead``, now 1 if the helper gave up or never came; then a barrier, so the
    whole program reads the helper's sums after the wait."""
    if dead == 0:
        v = _wait_at_least(ptr, target, SPIN)
        if v < target:
            dead = 1
    tl.debug_barrier()
    return dead


@triton.jit
def _await_far_part(ready_ptr, k, dead, n_bad, SPIN):
    """The row's side of the hand-over for chunk k: wait for the helper's far part of the chunk (see
    :func:`_await`). Returns (dead, n_bad): a helper that gave up or never came counts once in
    ``n_bad``, so the exact kernel redoes the row."""
    dead_now = _await(ready_ptr, k + 1, dead, SPIN)
    n_bad += dead_now - dead
    return dead_now, n_bad


@triton.jit
def _join_far_log(acc, R, lost, slot, srow, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """The row's far part ``acc · exp(R)`` (its last NEARB blocks) joined with the helper's (the blocks
    before), read from its ring slot past the L1 cache (another program wrote it): both rescaled to
    the larger reference. ``lost`` also marks a part that held mass but whose scale underflowed."""
    NEG_INF: tl.constexpr = float("-inf")
    acc_h = tl.load(slot + srow, cache_modifier=".cg")
    R_h = tl.load(slot + Q * BLOCK_C + srow, cache_modifier=".cg")
    lost_h = tl.load(slot + 2 * Q * BLOCK_C + srow, cache_modifier=".cg")
    Rc = tl.maximum(R, R_h)
    Rc = tl.where(Rc == NEG_INF, 0.0, Rc)
    sc_n = tl.where(R == NEG_INF, 0.0, tl.exp(R - Rc))
    sc_h = tl.where(R_h == NEG_INF, 0.0, tl.exp(R_h - Rc))
    lost = lost | (lost_h != 0).to(tl.int32) | ((acc > 0) & (sc_n == 0)).to(tl.int32) | \
        ((acc_h > 0) & (sc_h == 0)).to(tl.int32)
    acc = acc * sc_n + acc_h * sc_h
    return acc, Rc, lost


@triton.jit
def _far_helper(n, NT, len_ptr, lim_ptr, w_ptr, glin_ptr, bref_ptr, prog_ptr, ready_ptr, ring_ptr,
                T, C, K, NR, first_con, NBLK, NEARB, DEPTH, SPIN,
                CONSTRAINED: tl.constexpr, MAX: tl.constexpr, Q: tl.constexpr, QS: tl.constexpr,
                BLOCK_C: tl.constexpr, NBP: tl.constexpr, FENCE: tl.constexpr):
    """Helper program of row ``n`` (see :func:`chunk_linear_sweep_kernel`, ``HELP``): for each chunk
    k > NEARB, once the row has finished block k - NEARB - 1, the far part over the blocks up to it,
    into ring slot k % DEPTH (log semiring: acc, R, lost; max-plus: the best), then
    ``ready[n] = k + 1``. For max-plus ``glin_ptr`` is g."""
    DONE: tl.constexpr = 1 << 30
    r = n % NR
    con = (n // NR) >= first_con
    L = tl.load(len_ptr + r).to(tl.int32)
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    rr = tl.arange(0, Q)
    kfull = tl.zeros([Q, BLOCK_C], tl.int32) + K
    seq = n.to(tl.int64) * T * C
    seq_in = r.to(tl.int64) * T * C
    bref_base = bref_ptr + n.to(tl.int64) * NBLK * C
    ring_base = ring_ptr + n.to(tl.int64) * DEPTH * 3 * Q * BLOCK_C
    srow = rr[:, None] * BLOCK_C + cc[None, :]
    live = 1
    for k in range(NEARB + 1, tl.cdiv(L, Q)):
        if live != 0:
            v = _wait_at_least(prog_ptr + n, k - NEARB, SPIN)
            if v < k - NEARB:
                # The row's program never got this far (not resident?): tell it, and stop.
                tl.atomic_xchg(ready_ptr + n, -1, sem="release", scope="gpu")
                live = 0
            elif v == DONE:
                live = 0  # the row stopped early (its scores went to the exact kernel)
            else:
                tl.debug_barrier()
                e_q, vq2, lmax, lo, j_lo = _chunk_ends(k, L, C, K, seq_in, con, lim_ptr, cc, cmask, kfull, rr,
                                                       CONSTRAINED, Q)
                slot = ring_base + (k % DEPTH) * 3 * Q * BLOCK_C
                if MAX:
                    best = _far_max(j_lo, k - NEARB - 1, k * Q, glin_ptr, seq, w_ptr, C, cc, cmask, rr, Q, QS,
                                    BLOCK_C, True)
                    tl.store(slot + srow, best)
                else:
                    acc, R, lost = _far_log(j_lo, k - NEARB - 1, e_q, lo, lmax, glin_ptr, bref_base, w_ptr, seq, C,
                                            cc, cmask, Q, QS, NBP, BLOCK_C, True)
                    tl.store(slot + srow, acc)
                    tl.store(slot + Q * BLOCK_C + srow, R)
                    tl.store(slot + 2 * Q * BLOCK_C + srow, lost.to(tl.float64))
                _publish(ready_ptr + n, k + 1, FENCE)


@triton.jit
def _step_inputs(i, nq, t0, C, K, seq, con, lim_ptr, w_ptr, scr_base, cc, cmask, rr,
                 CONSTRAINED: tl.constexpr, MAX: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """What step ``i`` of a chunk needs that does not depend on the chain (loaded a step ahead):
    rows i of the chunk's three scratch rows and ``wrow`` (Q, C), the duration weights (log
    semiring: linear ``w``, 0 where not allowed; max: scores, -inf) of the segments from each
    position of the chunk to t0 + i. See the kernel for what the rows hold."""
    t = t0 + i
    m = cmask & ((tl.zeros([BLOCK_C], tl.int32) + i) < nq)
    fg = tl.load(scr_base + i * BLOCK_C + cc, mask=m, other=0.0)
    fa = tl.load(scr_base + (Q + i) * BLOCK_C + cc, mask=m, other=0.0)
    fl = tl.load(scr_base + (2 * Q + i) * BLOCK_C + cc, mask=m, other=0.0)
    if CONSTRAINED:
        lim_t = tl.where(con, tl.minimum(tl.load(lim_ptr + seq + t * C + cc, mask=m, other=0), K), K)
    else:
        lim_t = tl.zeros([BLOCK_C], tl.int32) + K
    dn = i - rr
    okn = (dn[:, None] >= 0) & ((dn[:, None] + 1) <= lim_t[None, :]) & m[None, :]
    if MAX:
        wrow = tl.load(w_ptr + dn[:, None] * C + cc[None, :], mask=okn, other=float("-inf"))
    else:
        wrow = tl.load(w_ptr + dn[:, None] * C + cc[None, :], mask=okn, other=0.0)
    return fg, fa, fl, wrow


@triton.jit
def _stage_log_chunk(k, t0, alpha_prev, init, tmax, dmax, far, cum_base, start_ptr, end_ptr, seq_in, scr_base,
                     pos, pv2, C, cc, cmask, rr,
                     HAS_START: tl.constexpr, HAS_END: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """Log semiring, before the steps of chunk k: the chunk's reference ``S`` (the largest alpha at
    t0; at t = 0 the largest initial score less tmax), ``a = exp(alpha[t0] - S)``, ``G0 = S + tmax -
    cum[t0]``, and the factors of each position, ``fg``, ``fa`` and ``fl`` (the far part over
    ``exp(G0 + dmax)``), written to the scratch rows that the steps read (see the kernel)."""
    NEG_INF: tl.constexpr = float("-inf")
    amx = tl.max(alpha_prev, axis=0)
    if k == 0:
        imx = tl.max(init, axis=0)
        S = tl.where(imx == NEG_INF, 0.0, imx) - tmax
    else:
        S = tl.where(amx == NEG_INF, 0.0, amx)
    a_lin = tl.exp(alpha_prev - S)
    c0 = tl.load(cum_base + t0 * C + cc, mask=cmask, other=0.0)
    G0 = S + tmax - c0
    cum_t = tl.load(cum_base + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    cum_t1 = tl.load(cum_base + (pos[:, None] + 1) * C + cc[None, :], mask=pv2, other=0.0)
    xg = c0[None, :] - cum_t
    if HAS_START:
        xg += tl.load(start_ptr + seq_in + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    xa = cum_t1 - c0[None, :] + dmax[None, :] + tmax
    if HAS_END:
        xa += tl.load(end_ptr + seq_in + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    fgs = tl.where(pv2, tl.exp(xg), 0.0)
    fas = tl.where(pv2, tl.exp(xa), 0.0)
    fls = tl.where(pv2, tl.exp(far - dmax[None, :] - G0[None, :]), 0.0)
    srow = (rr[:, None]) * BLOCK_C + cc[None, :]
    tl.store(scr_base + srow, fgs)
    tl.store(scr_base + Q * BLOCK_C + srow, fas)
    tl.store(scr_base + 2 * Q * BLOCK_C + srow, fls)
    # The factors are read by other threads of the program in the steps.
    tl.debug_barrier()
    return S, a_lin, G0


@triton.jit
def _near_log(nq, t0, S, tmax, init, a_lin, tlin, K, C, seq_in, con, lim_ptr, w_ptr, scr_base, cc, cmask, rr,
              CONSTRAINED: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """Log semiring, the steps of a chunk in linear space (multiply-adds only):

        u_lin = sum_c' a[c'] tlin[c', c]      h[t] = u_lin fg[t]
        tot   = sum_{r <= i} w[i - r] h[t0 + r] + fl[t + 1]      a' = tot fa[t + 1]

    Returns the chunk's (Q, C) rows of h, u_lin, a' and tot (for the logs and checks after it)."""
    u0 = tl.exp(init - S - tmax)  # only used at t = 0, where S = max(init) - tmax
    hl = tl.zeros([Q, BLOCK_C], tl.float64)
    ul = tl.zeros([Q, BLOCK_C], tl.float64)
    al = tl.zeros([Q, BLOCK_C], tl.float64)
    nf = tl.zeros([Q, BLOCK_C], tl.float64)
    fg, fa, fl, wrow = _step_inputs(0, nq, t0, C, K, seq_in, con, lim_ptr, w_ptr, scr_base, cc, cmask, rr,
                                    CONSTRAINED, False, Q, BLOCK_C)
    for i in range(0, nq):
        fg_n, fa_n, fl_n, wrow_n = _step_inputs(i + 1, nq, t0, C, K, seq_in, con, lim_ptr, w_ptr, scr_base, cc,
                                                cmask, rr, CONSTRAINED, False, Q, BLOCK_C)
        if t0 + i == 0:
            ulin = u0
        else:
            ulin = tl.sum(a_lin[:, None] * tlin, axis=0)
        here = rr[:, None] == i
        hl = tl.where(here, (ulin * fg)[None, :], hl)
        tot = tl.sum(wrow * hl, axis=0) + fl
        a_lin = tot * fa
        ul = tl.where(here, ulin[None, :], ul)
        nf = tl.where(here, tot[None, :], nf)
        al = tl.where(here, a_lin[None, :], al)
        fg, fa, fl, wrow = fg_n, fa_n, fl_n, wrow_n
    return hl, ul, al, nf


@triton.jit
def _store_log_chunk(S, tmax, G0, hl, ul, al, nf, nq, L, pos, pv2, rr, C, cc, cmask, seq, u_ptr, g_ptr, alpha_base):
    """Log semiring, after the steps of a chunk: the logarithms of u, g and alpha, stored; returns
    (alpha at the chunk's last position, the chunk's g, the count of rows or values that left
    [1e-290, 1e290] or overflowed: each flags the row for the exact kernel)."""
    NEG_INF: tl.constexpr = float("-inf")
    BIG: tl.constexpr = 1e290
    SMALL: tl.constexpr = 1e-290
    u_log = S + tmax + tl.log(ul)
    gch = tl.where(pv2, G0[None, :] + tl.log(hl), NEG_INF)
    a_log = S + tl.log(al)
    tl.store(u_ptr + seq + pos[:, None] * C + cc[None, :], u_log, mask=pv2)
    tl.store(g_ptr + seq + pos[:, None] * C + cc[None, :], gch, mask=pv2)
    tl.store(alpha_base + (pos[:, None] + 1) * C + cc[None, :], a_log, mask=pv2)
    alpha_last = tl.max(tl.where((rr[:, None] == nq - 1) & cmask[None, :], a_log, NEG_INF), axis=0)
    amax_r = tl.max(tl.where(pv2, al, 0.0), axis=1)
    nmax_r = tl.max(tl.where(pv2, nf, 0.0), axis=1)
    bad_r = (amax_r > BIG) | ((amax_r < SMALL) & (nmax_r > 0)) | (amax_r != amax_r)
    bad_h = pv2 & ((hl > BIG) | (hl != hl))
    n_bad = tl.sum(tl.where(bad_r & (pos < L), 1, 0), axis=0) + \
        tl.sum(tl.sum(tl.where(bad_h, 1, 0), axis=1), axis=0)
    return alpha_last, gch, n_bad


@triton.jit
def _close_log_block(k, gch, pos, pv2, C, cc, cmask, seq, glin_ptr, bref_base, SPREAD_G: tl.constexpr):
    """Block k, finished, for the far parts of the chunks after it: its reference ``bref`` (largest
    finite g per label) and ``glin = exp(g - bref)``; returns the count of finite g more than
    ``SPREAD_G`` nats below the reference (each flags the row)."""
    NEG_INF: tl.constexpr = float("-inf")
    fin = pv2 & (gch > NEG_INF)
    bref_k = tl.max(tl.where(fin, gch, NEG_INF), axis=0)
    bref0 = tl.where(bref_k == NEG_INF, 0.0, bref_k)
    gl_k = tl.where(fin, tl.exp(gch - bref0[None, :]), 0.0)
    n_bad = tl.sum(tl.sum(tl.where(fin & (gch < bref0[None, :] - SPREAD_G), 1, 0), axis=1), axis=0)
    tl.store(glin_ptr + seq + pos[:, None] * C + cc[None, :], gl_k, mask=pv2)
    tl.store(bref_base + k * C + cc, bref_k, mask=cmask)
    return n_bad


@triton.jit
def _stage_max_chunk(best, cum_base, start_ptr, end_ptr, seq_in, scr_base, pos, pv2, C, cc, rr,
                     HAS_START: tl.constexpr, HAS_END: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """Max-plus, before the steps of a chunk: ``g = u + cg`` and ``alpha = ca + best look-back`` with
    ``cg = start - cum[t]``, ``ca = cum[t + 1] + end[t]``; the chunk's cg, ca and far maxima go to
    the scratch rows that the steps read."""
    cgs = -tl.load(cum_base + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    if HAS_START:
        cgs += tl.load(start_ptr + seq_in + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    cas = tl.load(cum_base + (pos[:, None] + 1) * C + cc[None, :], mask=pv2, other=0.0)
    if HAS_END:
        cas += tl.load(end_ptr + seq_in + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
    srow = (rr[:, None]) * BLOCK_C + cc[None, :]
    tl.store(scr_base + srow, cgs)
    tl.store(scr_base + Q * BLOCK_C + srow, cas)
    tl.store(scr_base + 2 * Q * BLOCK_C + srow, best)
    # The chunk inputs are read by other threads of the program in the steps.
    tl.debug_barrier()


@triton.jit
def _near_max(nq, t0, alpha_prev, init, trans, K, C, seq_in, con, lim_ptr, dur_ptr, scr_base, cc, cmask, rr,
              seq, pos, pv2, u_ptr, g_ptr, bestv_base, alpha_base,
              CONSTRAINED: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """Max-plus, the steps of a chunk in log space (values only), the chain's inputs loaded one step
    ahead: ``u = max_c' (alpha[c'] + trans[c', c])``, ``g = u + cg``, best look-back = max(near
    maxima, far maximum), ``alpha = ca + best``. Stores u, g, the best look-back values and alpha of
    the chunk; returns alpha at its last position."""
    NEG_INF: tl.constexpr = float("-inf")
    gch = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
    ul = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
    bv = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
    al = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
    cg, ca, farv, drow = _step_inputs(0, nq, t0, C, K, seq_in, con, lim_ptr, dur_ptr, scr_base, cc, cmask,
                                      rr, CONSTRAINED, True, Q, BLOCK_C)
    for i in range(0, nq):
        cg_n, ca_n, farv_n, drow_n = _step_inputs(i + 1, nq, t0, C, K, seq_in, con, lim_ptr, dur_ptr,
                                                  scr_base, cc, cmask, rr, CONSTRAINED, True, Q, BLOCK_C)
        if t0 + i == 0:
            u = init
        else:
            u = tl.max(alpha_prev[:, None] + trans, axis=0)
        here = rr[:, None] == i
        gch = tl.where(here, (u + cg)[None, :], gch)
        bestv = tl.maximum(tl.max(gch + drow, axis=0), farv)
        a = tl.where(cmask, ca + bestv, NEG_INF)
        ul = tl.where(here, u[None, :], ul)
        bv = tl.where(here, bestv[None, :], bv)
        al = tl.where(here, a[None, :], al)
        alpha_prev = a
        cg, ca, farv, drow = cg_n, ca_n, farv_n, drow_n
    tl.store(u_ptr + seq + pos[:, None] * C + cc[None, :], ul, mask=pv2)
    tl.store(g_ptr + seq + pos[:, None] * C + cc[None, :], gch, mask=pv2)
    tl.store(bestv_base + (pos[:, None] + 1) * C + cc[None, :], bv, mask=pv2)
    tl.store(alpha_base + (pos[:, None] + 1) * C + cc[None, :], al, mask=pv2)
    return alpha_prev


@triton.jit
def chunk_linear_sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, w_ptr, tlin_ptr, tmax_ptr,
    dmax_ptr, len_ptr, alpha_ptr, u_ptr, g_ptr, glin_ptr, bref_ptr, scr_ptr, flag_ptr, bestv_ptr,
    prog_ptr, ready_ptr, ring_ptr,
    T, C, K, n_per_dir, NR, first_con, NBLK, NT, NEARB, DEPTH, SPIN, pid_off,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    Q: tl.constexpr, QS: tl.constexpr, BLOCK_C: tl.constexpr, NBP: tl.constexpr, SPREAD_G: tl.constexpr,
    SPREAD_D: tl.constexpr, HELP: tl.constexpr, FENCE: tl.constexpr,
):
    """The chunked sweep with the dependent chain in registers: linear space for the log semiring.

    For the Q ends ``e = t0 + 1 .. t0 + Q`` of chunk ``k`` (``t0 = k·Q``):

    1. :func:`_chunk_ends`: the ends, their longest allowed segments, the first source block.
    2. The *far* part of the look-back (starts before ``t0``, all known when the chunk begins), for
       all Q ends at once, source block by source block (a block is a finished chunk), each cut into
       sub-blocks of ``QS`` starts so that a tile fits the registers: :func:`_far_log` (linear,
       ``w = exp(dur - dmax)`` against ``glin = exp(g - bref)``, the weights gathered from the small
       ``w`` table, which stays in the L1 cache; the faster choice by measurement, see
       docs/engine_gpu.md) or :func:`_far_max` (max-plus, exact). With ``HELP``, a helper program
       computes the blocks before the row's last NEARB (:func:`_far_helper`); the row waits for them
       (:func:`_await_far_part`) and joins them to its own (:func:`_join_far_log`, or a maximum).
    3. The *near* part, the starts inside the chunk, step by step. Log semiring:
       :func:`_stage_log_chunk` (the chunk's reference and per-position factors), :func:`_near_log`
       (the steps, multiply-adds only), :func:`_store_log_chunk` (logarithms of u, g, alpha, once
       per chunk) and :func:`_close_log_block` (block k's reference and glin for the chunks after
       it). Max-plus: :func:`_stage_max_chunk` and :func:`_near_max` (values only; the arguments of
       the maxima are found afterwards by :func:`viterbi_argmax_kernel`).
    4. :func:`_publish`: block k is done, for the helper.

    Exactness guard (log semiring), all in the kernel, no host sync: duration, transition or initial
    scores that spread more than ``SPREAD_D`` nats (:func:`_too_spread`), a block whose finite g
    spread more than ``SPREAD_G`` nats below its reference, a block whose scale ``exp(bref - R)``
    underflows while contributing where the rest of the far sum is tiny, or a chunk whose values
    leave [1e-290, 1e290] or overflow raise ``flag[n]``, and the caller reruns the row in the exact
    kernel; so every product lies in [e^-700, 1] or is exactly 0 and no term that matters is lost.
    Values of a label more than ~700 nats below the chunk's reference flush to 0 (their paths weigh
    < e^-700 of the position's mass).

    Shapes as :func:`sweep_kernel`, plus w (K, C) (max-plus: ``dp``, the duration scores padded to
    (cdiv(K, Q) + 2)·Q rows of BLOCK_C with -inf, so that the far tiles load without masks), dmax
    (C,), glin (N, T, C) float64, bref (N, NBLK, C) float64, flag (N,) int32 (written), tlin (2, C,
    C) and tmax (2,) float64 (per direction), scr (N, 3, Q, BLOCK_C) float64 scratch. ``NBP`` is a
    power of two >= the blocks in one look-back.

    ``HELP`` (GPU; both semirings): programs ``NT + n`` are the helpers of rows n. They hand over
    through global memory: ``prog[n]`` (int32, the blocks the row has finished; 2^30 once it stops)
    and ``ready[n]`` (the chunks the helper has done; -1 if it gave up), with release stores and
    acquire loads, and ``ring`` (N, DEPTH, 3, Q, BLOCK_C) float64 (DEPTH > NEARB) for the sums.
    Every program must be resident at once (the launcher checks the grid against the SMs); a wait
    longer than SPIN polls flags the row for the exact kernel instead of hanging. ``pid_off`` shifts
    the program ids (the two roles launched one after the other, for tests under the interpreter).
    """
    n = tl.program_id(0) + pid_off
    DONE: tl.constexpr = 1 << 30
    if HELP:
        is_help = n >= NT
        is_near = n < NT
        if is_help:
            _far_helper(n - NT, NT, len_ptr, lim_ptr, w_ptr, glin_ptr, bref_ptr, prog_ptr, ready_ptr, ring_ptr,
                        T, C, K, NR, first_con, NBLK, NEARB, DEPTH, SPIN, CONSTRAINED, MAX, Q, QS, BLOCK_C, NBP,
                        FENCE)
        n = tl.where(is_help, n - NT, n)  # the rest of a helper program does nothing (L = 0 below)
    else:
        is_help = n < 0
        is_near = n >= 0
    r = n % NR
    direction = r // n_per_dir
    con = (n // NR) >= first_con
    L = tl.load(len_ptr + r).to(tl.int32)
    L = tl.where(is_help, 0, L)
    NEG_INF: tl.constexpr = float("-inf")

    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    rr = tl.arange(0, Q)
    m2 = cmask[:, None] & cmask[None, :]
    if MAX:
        trans = tl.load(trans_ptr + direction * C * C + cc[:, None] * C + cc[None, :], mask=m2, other=NEG_INF)
    else:
        tlin = tl.load(tlin_ptr + direction * C * C + cc[:, None] * C + cc[None, :], mask=m2, other=0.0)
        tmax = tl.load(tmax_ptr + direction)
    init = tl.load(init_ptr + direction * C + cc, mask=cmask, other=NEG_INF)
    dmax = tl.load(dmax_ptr + cc, mask=cmask, other=0.0)

    seq = n.to(tl.int64) * T * C
    seq_in = r.to(tl.int64) * T * C
    cum_base = cum_ptr + r.to(tl.int64) * (T + 1) * C
    alpha_base = alpha_ptr + n.to(tl.int64) * (T + 1) * C
    bestv_base = bestv_ptr + n.to(tl.int64) * (T + 1) * C
    bref_base = bref_ptr + n.to(tl.int64) * NBLK * C
    ring_base = ring_ptr + n.to(tl.int64) * DEPTH * 3 * Q * BLOCK_C
    scr_base = scr_ptr + n.to(tl.int64) * 3 * Q * BLOCK_C
    kfull = tl.zeros([Q, BLOCK_C], tl.int32) + K

    alpha_prev = tl.full([BLOCK_C], NEG_INF, tl.float64)
    n_bad = 0
    if not MAX:
        # Scores too spread for the linear parts: flag the row for the exact kernel, do nothing here.
        n_bad = _too_spread(dur_ptr, trans_ptr, init_ptr, direction, C, K, cc, cmask, SPREAD_D, BLOCK_C)
        L = tl.where(n_bad != 0, 0, L)
    dead = 0
    for k in range(0, tl.cdiv(L, Q)):
        t0 = k * Q
        # ------------------------------------------------ far part, all Q ends of the chunk at once
        e_q, vq2, lmax, lo, j_lo = _chunk_ends(k, L, C, K, seq_in, con, lim_ptr, cc, cmask, kfull, rr,
                                               CONSTRAINED, Q)
        if HELP:
            use_help = k > NEARB
        else:
            use_help = k < 0
        # With a helper: the last NEARB blocks here, the ones before from the helper (its ring slot,
        # waited for after this program's own part; if it gave up, the exact kernel redoes the row).
        j_me = tl.where(use_help, tl.maximum(j_lo, k - NEARB), j_lo)
        slot = ring_base + (k % DEPTH) * 3 * Q * BLOCK_C
        srow = rr[:, None] * BLOCK_C + cc[None, :]
        if MAX:
            best = _far_max(j_me, k - 1, t0, g_ptr, seq, w_ptr, C, cc, cmask, rr, Q, QS, BLOCK_C, False)
            if HELP:
                if use_help:
                    dead, n_bad = _await_far_part(ready_ptr + n, k, dead, n_bad, SPIN)
                    best = tl.maximum(best, tl.load(slot + srow, cache_modifier=".cg"))
        else:
            acc, R, lost = _far_log(j_me, k - 1, e_q, lo, lmax, glin_ptr, bref_base, w_ptr, seq, C, cc, cmask,
                                    Q, QS, NBP, BLOCK_C, False)
            if HELP:
                if use_help:
                    dead, n_bad = _await_far_part(ready_ptr + n, k, dead, n_bad, SPIN)
                    acc, R, lost = _join_far_log(acc, R, lost, slot, srow, Q, BLOCK_C)
            R = tl.where(R == NEG_INF, 0.0, R)
        nq = tl.minimum(Q, L - t0)
        pos = t0 + rr
        pv2 = (pos < L)[:, None] & cmask[None, :]
        if MAX:
            # -------------------------------------------- near part (max-plus), position by position
            _stage_max_chunk(best, cum_base, start_ptr, end_ptr, seq_in, scr_base, pos, pv2, C, cc, rr,
                             HAS_START, HAS_END, Q, BLOCK_C)
            alpha_prev = _near_max(nq, t0, alpha_prev, init, trans, K, C, seq_in, con, lim_ptr, dur_ptr, scr_base,
                                   cc, cmask, rr, seq, pos, pv2, u_ptr, g_ptr, bestv_base, alpha_base,
                                   CONSTRAINED, Q, BLOCK_C)
        else:
            far = tl.where(acc > 0, tl.log(acc) + R + dmax[None, :], NEG_INF)
            # A block lost to underflow can matter only where the rest of its far sum is tiny.
            n_bad += tl.sum(tl.sum(tl.where(vq2 & (lost != 0) & (acc < 1e-200), 1, 0), axis=1), axis=0)
            # -------------------------------------------- near part (linear), position by position
            S, a_lin, G0 = _stage_log_chunk(k, t0, alpha_prev, init, tmax, dmax, far, cum_base, start_ptr, end_ptr,
                                            seq_in, scr_base, pos, pv2, C, cc, cmask, rr, HAS_START, HAS_END, Q,
                                            BLOCK_C)
            hl, ul, al, nf = _near_log(nq, t0, S, tmax, init, a_lin, tlin, K, C, seq_in, con, lim_ptr, w_ptr,
                                       scr_base, cc, cmask, rr, CONSTRAINED, Q, BLOCK_C)
            alpha_prev, gch, bad = _store_log_chunk(S, tmax, G0, hl, ul, al, nf, nq, L, pos, pv2, rr, C, cc, cmask,
                                                    seq, u_ptr, g_ptr, alpha_base)
            n_bad += bad
            # -------------------------------------------- close block k for the chunks after it
            n_bad += _close_log_block(k, gch, pos, pv2, C, cc, cmask, seq, glin_ptr, bref_base, SPREAD_G)
        # Block k (glin, bref, g) is read by the next chunk's far part (and the helper).
        tl.debug_barrier()
        if HELP:
            _publish(prog_ptr + n, k + 1, FENCE)
    tl.store(flag_ptr + n, n_bad, mask=is_near)
    if HELP:
        if is_near:
            tl.atomic_xchg(prog_ptr + n, DONE, sem="release", scope="gpu")


@triton.jit
def duration_grad_kernel(
    fm_ptr, fk_ptr, hm_ptr, hk_ptr, wm_ptr, wk_ptr, rem_ptr, len_ptr, out_ptr,
    T, C, K, B, first_con,
    CONSTRAINED: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """out[i, d - 1, c] = sum_s exp(f[i, s, c] + w[d - 1, c] + h[i, s + d, c]): the duration marginal.

    ``f[s]`` is the forward score of a segment starting at s, ``w`` the duration score and ``h[e]``
    the score of everything from segment end e on, less log Z; each is given split as
    ``exp(x) = m · 2^k`` (float64 mantissa ``*m``, int32 exponent ``*k``; k very negative for
    -inf), so a term is two products and an exponent sum, with no exponential. A term under
    2^-1022 counts as 0. Row ``i = grp·B + b`` is sequence b of group ``grp``; groups from
    ``first_con`` on are constrained: a segment of label c may start at s only for
    ``d <= rem[b, c, s]``, the length from s to the end of its run of c in the labels (0 where the
    label is not c), and a tile of positions whose ``rem`` are all below its durations is skipped.
    Shapes, positions innermost (the tiles read along e = s + d): fm, fk (G·B, C, T); hm, hk
    (G·B, C, T + 1); wm, wk (K, C); rem (B, C, T) int32. Grid: (G·B, C, cdiv(K, BLOCK_D)). Positions are summed in
    tiles of ``BLOCK_S`` in a fixed order (bitwise reproducible).
    """
    i = tl.program_id(0)
    b = i % B
    con = (i // B) >= first_con
    c = tl.program_id(1)
    d0 = tl.program_id(2) * BLOCK_D
    L = tl.load(len_ptr + b)
    dd = d0 + tl.arange(0, BLOCK_D) + 1  # durations
    dmask = dd <= K
    wm = tl.load(wm_ptr + (dd - 1) * C + c, mask=dmask, other=0.0)
    wk = tl.load(wk_ptr + (dd - 1) * C + c, mask=dmask, other=0)
    f_base = (i.to(tl.int64) * C + c) * T
    h_base = (i.to(tl.int64) * C + c) * (T + 1)
    rem_base = (b.to(tl.int64) * C + c) * T
    acc = tl.zeros([BLOCK_D], tl.float64)
    ss0 = tl.arange(0, BLOCK_S)
    for s0 in range(0, L, BLOCK_S):
        ss = s0 + ss0
        if CONSTRAINED:
            rem = tl.where(con, tl.load(rem_ptr + rem_base + ss, mask=ss < L, other=0), K)
            todo = tl.max(rem, axis=0) > d0
        else:
            todo = True
        if todo:
            fm = tl.load(fm_ptr + f_base + ss, mask=ss < L, other=0.0)
            fk = tl.load(fk_ptr + f_base + ss, mask=ss < L, other=0)
            e = ss[:, None] + dd[None, :]  # segment end (exclusive)
            ok = (ss[:, None] < L) & dmask[None, :] & (e <= L)
            if CONSTRAINED:
                ok = ok & (dd[None, :] <= rem[:, None])
            hm = tl.load(hm_ptr + h_base + e, mask=ok, other=0.0)
            hk = tl.load(hk_ptr + h_base + e, mask=ok, other=0)
            kk = tl.minimum(tl.maximum(fk[:, None] + wk[None, :] + hk, -1023), 1023)
            scale = ((kk + 1023).to(tl.int64) << 52).to(tl.float64, bitcast=True)  # 2^kk, 0 at kk = -1023
            p = fm[:, None] * wm[None, :] * hm * scale
            acc += tl.sum(tl.where(ok, p, 0.0), axis=0)
    tl.store(out_ptr + i.to(tl.int64) * K * C + (dd - 1) * C + c, acc, mask=dmask)


@triton.jit
def _exp_finite(x):
    """exp(x) where x is finite, else 0 (an impossible or undefined term)."""
    return tl.where((x > float("-inf")) & (x < float("inf")), tl.exp(x), 0.0)


@triton.jit
def marginals_kernel(alpha_ptr, u_ptr, trans_ptr, logz_ptr, len_ptr, occ_ptr, smass_ptr, emass_ptr, tgrad_ptr,
                     T, C, B,
                     BLOCK_T: tl.constexpr, BLOCK_T2: tl.constexpr, BLOCK_C: tl.constexpr):
    """The position and transition marginals of row ``i = grp·B + b`` from its two sweeps.

    The forward sweep is row ``2·B·grp + b`` of alpha (N, T+1, C) and u (N, T, C), the reversed
    one row ``2·B·grp + B + b``; ``beta[t] = alpha_r[L - t]`` is everything from t on, a segment
    starting at t. Out, (G·B, T, C) float64, 0 past the length: ``smass[t] = exp(u[t] + beta[t] -
    log Z)`` (a segment starts at t), ``emass[t] = exp(alpha[t + 1] + u_r[L - t - 1] - log Z)`` (one
    ends at t), ``occ[t] = sum_{s <= t} smass[s] - sum_{s < t} emass[s]`` (label at t); and tgrad
    (G·B, C, C), ``sum_{1 <= t < L} exp(alpha[t, c'] + trans[c', c] + beta[t, c] - log Z)``. Positions
    are walked in blocks in a fixed order (bitwise reproducible). Grid: (G·B,).
    """
    NEG_INF: tl.constexpr = float("-inf")
    i = tl.program_id(0)
    grp = i // B
    b = i % B
    L = tl.load(len_ptr + b).to(tl.int32)
    lz = tl.load(logz_ptr + i)
    fwd = (2 * B * grp + b).to(tl.int64)
    rev = fwd + B
    a_f = alpha_ptr + fwd * (T + 1) * C
    a_r = alpha_ptr + rev * (T + 1) * C
    u_f = u_ptr + fwd * T * C
    u_r = u_ptr + rev * T * C
    out = i.to(tl.int64) * T * C
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    run_s = tl.zeros([BLOCK_C], tl.float64)
    run_e = tl.zeros([BLOCK_C], tl.float64)
    for t0 in range(0, T, BLOCK_T):
        tt = t0 + tl.arange(0, BLOCK_T)
        ins = (tt < L)[:, None] & cmask[None, :]
        beta = tl.load(a_r + (L - tt)[:, None] * C + cc[None, :], mask=ins, other=NEG_INF)
        uu = tl.load(u_f + tt[:, None] * C + cc[None, :], mask=ins, other=NEG_INF)
        sm = tl.where(ins, _exp_finite(uu + beta - lz), 0.0)
        ao = tl.load(a_f + (tt[:, None] + 1) * C + cc[None, :], mask=ins, other=NEG_INF)
        osc = tl.load(u_r + (L - tt - 1)[:, None] * C + cc[None, :], mask=ins, other=NEG_INF)
        em = tl.where(ins, _exp_finite(ao + osc - lz), 0.0)
        occ = (tl.cumsum(sm, axis=0) + run_s[None, :]) - (tl.cumsum(em, axis=0) + run_e[None, :] - em)
        keep = (tt < T)[:, None] & cmask[None, :]
        tl.store(occ_ptr + out + tt[:, None] * C + cc[None, :], tl.where(ins, occ, 0.0), mask=keep)
        tl.store(smass_ptr + out + tt[:, None] * C + cc[None, :], sm, mask=keep)
        tl.store(emass_ptr + out + tt[:, None] * C + cc[None, :], em, mask=keep)
        run_s += tl.sum(sm, axis=0)
        run_e += tl.sum(em, axis=0)
    # Transitions at the inner boundaries t = 1 .. L - 1.
    tr = tl.load(trans_ptr + cc[:, None] * C + cc[None, :], mask=cmask[:, None] & cmask[None, :], other=NEG_INF)
    acc = tl.zeros([BLOCK_C, BLOCK_C], tl.float64)
    for t0 in range(0, L, BLOCK_T2):
        tt = t0 + tl.arange(0, BLOCK_T2)
        inner = (tt >= 1) & (tt < L)
        m2 = inner[:, None] & cmask[None, :]
        at = tl.load(a_f + tt[:, None] * C + cc[None, :], mask=m2, other=NEG_INF)
        beta = tl.load(a_r + (L - tt)[:, None] * C + cc[None, :], mask=m2, other=NEG_INF)
        z = at[:, :, None] + tr[None, :, :] + beta[:, None, :] - lz
        acc += tl.sum(_exp_finite(z), axis=0)
    tl.store(tgrad_ptr + i.to(tl.int64) * C * C + cc[:, None] * C + cc[None, :], acc,
             mask=cmask[:, None] & cmask[None, :])


@triton.jit
def viterbi_argmax_kernel(g_ptr, alpha_ptr, bestv_ptr, dur_ptr, trans_ptr, len_ptr, link_ptr,
                          T, C, K, n_per_dir,
                          BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr):
    """The arguments of the Viterbi sweep's maxima, for a block of ends of sequence b, in parallel.

    For the best segment of label c ending at e: its duration d, the shortest with
    ``dur[d - 1, c] + g[b, e - d, c] == bestv[b, e, c]``, the sweep's maximum (the same float64 sum,
    so the match is exact; ties go to the shorter segment), and the label before it, the first c'
    maximising ``alpha[b, e - d, c'] + trans[c', c]`` (-1 when e - d = 0). Durations are searched in
    blocks of ``BLOCK_D`` from d = 1 and the search stops once every end of the block has its match,
    so short best segments cost little. Written packed, ``link[b, e, c] = d << 32 | (c' + 1)``, so
    the traceback makes one dependent load per segment. Shapes: g (N, T, C), alpha and bestv
    (N, T+1, C) float64; trans (2, C, C) indexed by direction ``b // n_per_dir``; len (N,); link
    (N, T+1, C) int64. Grid: (cdiv(max len, BLOCK_E), N): the blocks of ends go on the grid's first
    axis, the only one that may exceed 65 535 programs (a chromosome arm has ~10^6 blocks).
    """
    NEG_INF: tl.constexpr = float("-inf")
    b = tl.program_id(1)
    t0 = tl.program_id(0) * BLOCK_E
    L = tl.load(len_ptr + b).to(tl.int32)
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    ee = t0 + tl.arange(0, BLOCK_E) + 1  # ends
    ev2 = (ee <= L)[:, None] & cmask[None, :]
    seq = b.to(tl.int64) * T * C
    seq1 = b.to(tl.int64) * (T + 1) * C
    v = tl.load(bestv_ptr + seq1 + ee[:, None] * C + cc[None, :], mask=ev2, other=NEG_INF)
    found = (v == NEG_INF)
    bd = tl.zeros([BLOCK_E, BLOCK_C], tl.int32) + 1
    todo = tl.sum(tl.sum(tl.where(found, 0, 1), axis=1), axis=0)
    d0 = 0
    while (todo > 0) & (d0 < K):
        dd = d0 + tl.arange(0, BLOCK_D) + 1
        s = ee[:, None] - dd[None, :]  # [E, D]
        ok = ((s >= 0) & (dd[None, :] <= K))[:, :, None] & ev2[:, None, :]
        x = tl.load(g_ptr + seq + s[:, :, None] * C + cc[None, None, :], mask=ok, other=NEG_INF) + \
            tl.load(dur_ptr + (dd[None, :, None] - 1) * C + cc[None, None, :], mask=ok, other=NEG_INF)
        hit = ok & (x == v[:, None, :])
        first = tl.min(tl.where(hit, dd[None, :, None], K + 1), axis=1)
        new = (first <= K) & (found == 0)
        bd = tl.where(new, first, bd)
        found = found | new
        todo = tl.sum(tl.sum(tl.where(found, 0, 1), axis=1), axis=0)
        d0 += BLOCK_D
    # The label before the segment [e - d, e): alpha[e - d, c'] + trans[c', c], [E, c', c].
    sp = ee[:, None] - bd  # [E, C]
    a = tl.load(alpha_ptr + seq1 + sp[:, None, :] * C + cc[None, :, None],
                mask=ev2[:, None, :] & cmask[None, :, None] & (sp[:, None, :] >= 0), other=NEG_INF)
    tr = tl.load(trans_ptr + (b // n_per_dir) * C * C + cc[:, None] * C + cc[None, :],
                 mask=cmask[:, None] & cmask[None, :], other=NEG_INF)
    prev = tl.where(sp == 0, -1, tl.argmax(a + tr[None, :, :], axis=1))
    link = (bd.to(tl.int64) << 32) | (prev + 1).to(tl.int64)
    tl.store(link_ptr + seq1 + ee[:, None] * C + cc[None, :], link, mask=ev2)


@triton.jit
def viterbi_meet_kernel(g_ptr, u_ptr, cum_ptr, end_ptr, dur_ptr, len_ptr, mid_ptr, val_ptr, key_ptr,
                        T, C, K, B, HAS_END: tl.constexpr,
                        BLOCK_S: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_C: tl.constexpr):
    """The best segment across the middle ``M`` of sequence b, from the forward sweep over
    ``[0, M)`` (row b) and the sweep of the reversed sequence over ``[0, L - M]`` (row B + b).

    A path whose segment ``[s, e)`` of label c holds ``s < M <= e`` scores

        g[b, s, c] + dur[e - s - 1, c] + cum[b, e, c] + end[b, e - 1, c] + u[B + b, L - e, c],

    the reversed row's ``u`` being the best of everything after e given that label c precedes it.
    Program (b, j) takes the starts ``s = M - 1 - j·BLOCK_S - i`` and every end, and writes its
    largest score and, among equal ones, the smallest key ``((M - 1 - s)(K + 1) + e - M) C + c``
    (the latest start, then the earliest end, then the first label). Shapes: g, u (2B, T, C); cum
    (2B, T+1, C); end (2B, T, C); dur (K, C); len, mid (B,); val (B, P) float64, key (B, P) int64.
    Grid: (B, P = cdiv(K, BLOCK_S)).
    """
    NEG_INF: tl.constexpr = float("-inf")
    b = tl.program_id(0)
    j = tl.program_id(1)
    L = tl.load(len_ptr + b).to(tl.int32)
    M = tl.load(mid_ptr + b).to(tl.int32)
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    i_s = j * BLOCK_S + tl.arange(0, BLOCK_S)
    s = M - 1 - i_s
    sok = (s >= 0) & (i_s < K)
    fwd = b.to(tl.int64) * T * C
    rev = (B + b).to(tl.int64) * T * C
    gs = tl.load(g_ptr + fwd + s[:, None] * C + cc[None, :], mask=sok[:, None] & cmask[None, :], other=NEG_INF)
    best = tl.full([BLOCK_S, BLOCK_E, BLOCK_C], NEG_INF, tl.float64)
    bkey = tl.full([BLOCK_S, BLOCK_E, BLOCK_C], 2 ** 62, tl.int64)
    # Ends reachable from the latest start of the block: e - s <= K.
    e_hi = tl.minimum(L, M - 1 - j * BLOCK_S + K)
    for e0 in range(M, e_hi + 1, BLOCK_E):
        e = e0 + tl.arange(0, BLOCK_E)
        eok = e <= e_hi
        ev = eok[:, None] & cmask[None, :]
        right = tl.load(cum_ptr + b.to(tl.int64) * (T + 1) * C + e[:, None] * C + cc[None, :], mask=ev, other=0.0)
        right += tl.load(u_ptr + rev + (L - e)[:, None] * C + cc[None, :], mask=ev, other=NEG_INF)
        if HAS_END:
            right += tl.load(end_ptr + fwd + (e - 1)[:, None] * C + cc[None, :], mask=ev, other=0.0)
        d = e[None, :] - s[:, None]  # [S, E]
        ok = ((d <= K) & sok[:, None] & eok[None, :])[:, :, None] & cmask[None, None, :]
        dv = tl.load(dur_ptr + (d[:, :, None] - 1) * C + cc[None, None, :], mask=ok, other=NEG_INF)
        x = tl.where(ok, gs[:, None, :] + dv + right[None, :, :], NEG_INF)
        key = ((i_s.to(tl.int64)[:, None, None] * (K + 1) + (e - M)[None, :, None]) * C + cc[None, None, :])
        better = x > best
        best = tl.where(better, x, best)
        bkey = tl.where(better, key, bkey)  # ends ascend, so an equal later end keeps the earlier key
    top = tl.max(tl.max(tl.max(best, axis=2), axis=1), axis=0)
    k = tl.min(tl.min(tl.min(tl.where(best == top, bkey, 2 ** 62), axis=2), axis=1), axis=0)
    tl.store(val_ptr + b * tl.num_programs(1) + j, top)
    tl.store(key_ptr + b * tl.num_programs(1) + j, k)


@triton.jit
def traceback_kernel(link_ptr, last_ptr, len_ptr, ok_ptr, segs_ptr, nseg_ptr, T, C):
    """Follow the links of sequence b (see :func:`viterbi_argmax_kernel`) back from its last label.

    link (B, T+1, C) int64; last, ok (B,) (ok = a path exists). Out: segs (B, T, 3) int32 as
    (start, end, label) from the last segment to the first, nseg (B,) int32.
    """
    b = tl.program_id(0)
    L = tl.load(len_ptr + b).to(tl.int32)
    ok = tl.load(ok_ptr + b)
    c = tl.load(last_ptr + b).to(tl.int32)
    e = tl.where(ok != 0, L, 0)
    count = 0
    while e > 0:
        lk = tl.load(link_ptr + b.to(tl.int64) * (T + 1) * C + e * C + c)
        s = e - (lk >> 32).to(tl.int32)
        seg = segs_ptr + (b.to(tl.int64) * T + count) * 3
        tl.store(seg, s)
        tl.store(seg + 1, e)
        tl.store(seg + 2, c)
        c = (lk & 0xFFFFFFFF).to(tl.int32) - 1
        e = s
        count += 1
    tl.store(nseg_ptr + b, count)
