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
- :func:`chunk_linear_sweep_kernel` (the default) and :func:`chunk_sweep_kernel`:
  the same sweep with the look-back split at chunks of Q positions (far part per
  chunk as a block product, near part per step); the first runs the log chain in
  linear space in registers (see its docstring).
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


@triton.jit
def chunk_sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, w_ptr, dmax_ptr, len_ptr,
    alpha_ptr, u_ptr, g_ptr, glin_ptr, bref_ptr, flag_ptr, bestd_ptr, bestp_ptr,
    T, C, K, n_per_dir, NBLK,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    Q: tl.constexpr, BLOCK_C: tl.constexpr, NBP: tl.constexpr, SPREAD_G: tl.constexpr,
):
    """The sweep of :func:`sweep_kernel` with the look-back split at chunks of Q positions.

    For the Q ends ``e = t0 + 1 .. t0 + Q`` of chunk ``k`` (``t0 = k·Q``) the *far* part of the
    look-back (starts before ``t0``, all known when the chunk begins) is computed for all Q ends at
    once, source block by source block (a block is a finished chunk); the sequential steps then only
    look back over the *near* part, the starts inside the chunk (at most Q, in registers).

    Log semiring: the far part is linear: ``w[d - 1, c] = exp(dur[d - 1, c] - dmax[c])`` (host-checked
    to spread at most 300 nats where finite) against ``glin[s, c] = exp(g[s, c] - bref[block, c])``,
    the block reference being the block's largest finite g. A block whose finite g spread more than
    ``SPREAD_G`` nats below its reference is flagged (``flag[n] > 0``) and the caller reruns the exact
    kernel, so every product lies in [e^-700, 1] or is exactly 0 and no term is lost. Per end, blocks
    are combined at the largest overlapping reference (scales ``exp(bref - R) <= 1``); a block whose
    scale underflows while contributing, at an end where what remains is below e^-500, flags too.
    Max semiring (Viterbi): far maxima and their durations per block in log space, exact.

    Shapes as :func:`sweep_kernel`, plus w (K, C), dmax (C,), glin (N, T, C) float64, bref (N, NBLK, C)
    float64 and flag (N,) int32 (written). ``NBP`` is a power of two >= the blocks in one look-back.
    """
    n = tl.program_id(0)
    direction = n // n_per_dir
    L = tl.load(len_ptr + n).to(tl.int32)
    NEG_INF: tl.constexpr = float("-inf")

    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    rr = tl.arange(0, Q)
    trans = tl.load(trans_ptr + direction * C * C + cc[:, None] * C + cc[None, :],
                    mask=cmask[:, None] & cmask[None, :], other=NEG_INF)  # [c', c]
    init = tl.load(init_ptr + direction * C + cc, mask=cmask, other=NEG_INF)
    dmax = tl.load(dmax_ptr + cc, mask=cmask, other=0.0)

    seq = n.to(tl.int64) * T * C
    cum_base = cum_ptr + n.to(tl.int64) * (T + 1) * C
    alpha_base = alpha_ptr + n.to(tl.int64) * (T + 1) * C
    bestd_base = bestd_ptr + n.to(tl.int64) * (T + 1) * C
    bref_base = bref_ptr + n.to(tl.int64) * NBLK * C
    kfull = tl.zeros([Q, BLOCK_C], tl.int32) + K

    alpha_prev = tl.full([BLOCK_C], NEG_INF, tl.float64)
    n_bad = 0
    for k in range(0, tl.cdiv(L, Q)):
        t0 = k * Q
        # ------------------------------------------------ far part, all Q ends of the chunk at once
        e_q = t0 + rr + 1
        valid_q = e_q <= L
        vq2 = valid_q[:, None] & cmask[None, :]
        if CONSTRAINED:
            lmax = tl.minimum(tl.load(lim_ptr + seq + (e_q[:, None] - 1) * C + cc[None, :], mask=vq2, other=0), K)
        else:
            lmax = kfull
        lo = e_q[:, None] - lmax  # smallest allowed start per (end, label)
        lo_min = tl.min(tl.min(tl.where(vq2, lo, t0), axis=1), axis=0)
        j_lo = tl.maximum(lo_min, 0) // Q
        nb = k - j_lo
        if MAX:
            best = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
            best_d = tl.zeros([Q, BLOCK_C], tl.int32)
        else:
            jj = tl.arange(0, NBP)
            jb = k - 1 - jj
            inb = jj < nb
            brefs = tl.load(bref_base + jb[:, None] * C + cc[None, :], mask=inb[:, None] & cmask[None, :],
                            other=NEG_INF)
            ov = ((jb[None, :, None] * Q + Q - 1) >= lo[:, None, :]) & inb[None, :, None]
            R = tl.max(tl.where(ov, brefs[None, :, :], NEG_INF), axis=1)  # [Q, C]
            R = tl.where(R == NEG_INF, 0.0, R)
            acc = tl.zeros([Q, BLOCK_C], tl.float64)
            lost = tl.zeros([Q, BLOCK_C], tl.int32)
        for jn in range(0, nb):
            j = k - 1 - jn
            s = j * Q + rr
            d3 = (e_q[:, None] - s[None, :])[:, :, None]  # [Q(end), Q(start), 1], >= 1
            ok = (d3 <= lmax[:, None, :]) & vq2[:, None, :]
            if MAX:
                gs = tl.load(g_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=NEG_INF)
                dv = tl.load(dur_ptr + (d3 - 1) * C + cc[None, None, :], mask=ok, other=NEG_INF)
                x = tl.where(ok, gs[None, :, :] + dv, NEG_INF)
                m = tl.max(x, axis=1)
                r_best = tl.max(tl.where(x == m[:, None, :], rr[None, :, None], -1), axis=1)
                upd = m > best  # nearer blocks come first: ties keep the shorter segment
                best = tl.where(upd, m, best)
                best_d = tl.where(upd, (e_q[:, None] - (j * Q + r_best)).to(tl.int32), best_d)
            else:
                gl = tl.load(glin_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=0.0)
                w = tl.load(w_ptr + (d3 - 1) * C + cc[None, None, :], mask=ok, other=0.0)
                part = tl.sum(w * gl[None, :, :], axis=1)
                br = tl.load(bref_base + j * C + cc, mask=cmask, other=NEG_INF)
                scale = tl.exp(br[None, :] - R)
                acc += part * scale
                lost = lost | ((part > 0) & (scale == 0)).to(tl.int32)
        if MAX:
            far = best
            tl.store(bestd_base + e_q[:, None] * C + cc[None, :], best_d, mask=vq2)
        else:
            far = tl.where(acc > 0, tl.log(acc) + R + dmax[None, :], NEG_INF)
            n_bad += tl.sum(tl.sum(tl.where(vq2 & (lost != 0) & (acc < 1e-200), 1, 0), axis=1), axis=0)
        tl.store(alpha_base + e_q[:, None] * C + cc[None, :], far, mask=vq2)
        # The far values are read back below by other threads of the program.
        tl.debug_barrier()

        # ------------------------------------------------ near part, position by position
        gch = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
        for i in range(0, tl.minimum(Q, L - t0)):
            t = t0 + i
            if t == 0:
                u = init
                if MAX:
                    tl.store(bestp_ptr + seq + cc, tl.full([BLOCK_C], -1, tl.int32), mask=cmask)
            else:
                x = alpha_prev[:, None] + trans
                if MAX:
                    u = tl.max(x, axis=0)
                    tl.store(bestp_ptr + seq + t * C + cc, tl.argmax(x, axis=0).to(tl.int32), mask=cmask)
                else:
                    u = _lse_rows(x, 0)
            g_t = u - tl.load(cum_base + t * C + cc, mask=cmask, other=0.0)
            if HAS_START:
                g_t += tl.load(start_ptr + seq + t * C + cc, mask=cmask, other=0.0)
            tl.store(u_ptr + seq + t * C + cc, u, mask=cmask)
            tl.store(g_ptr + seq + t * C + cc, g_t, mask=cmask)
            gch = tl.where(rr[:, None] == i, g_t[None, :], gch)
            if CONSTRAINED:
                lim_t = tl.minimum(tl.load(lim_ptr + seq + t * C + cc, mask=cmask, other=0), K)
            else:
                lim_t = tl.zeros([BLOCK_C], tl.int32) + K
            dn = i - rr  # duration - 1
            okn = (dn[:, None] >= 0) & ((dn[:, None] + 1) <= lim_t[None, :]) & cmask[None, :]
            durrow = tl.load(dur_ptr + dn[:, None] * C + cc[None, :], mask=okn, other=NEG_INF)
            win = tl.where(okn, gch + durrow, NEG_INF)
            farv = tl.load(alpha_base + (t + 1) * C + cc, mask=cmask, other=NEG_INF)
            if MAX:
                mn = tl.max(win, axis=0)
                r_n = tl.max(tl.where(win == mn[None, :], rr[:, None], -1), axis=0)
                fard = tl.load(bestd_base + (t + 1) * C + cc, mask=cmask, other=1)
                near = mn >= farv
                bestv = tl.where(near, mn, farv)
                bd = tl.where(near, tl.maximum(i + 1 - r_n, 1).to(tl.int32), fard)
                tl.store(bestd_base + (t + 1) * C + cc, bd, mask=cmask)
            else:
                m = tl.maximum(tl.max(win, axis=0), farv)
                m = tl.where(m == NEG_INF, 0.0, m)
                ssum = tl.sum(tl.exp(win - m[None, :]), axis=0) + tl.exp(farv - m)
                bestv = m + tl.log(ssum)
            a = tl.load(cum_base + (t + 1) * C + cc, mask=cmask, other=0.0) + bestv
            if HAS_END:
                a += tl.load(end_ptr + seq + t * C + cc, mask=cmask, other=0.0)
            a = tl.where(cmask, a, NEG_INF)
            tl.store(alpha_base + (t + 1) * C + cc, a, mask=cmask)
            alpha_prev = a

        # ------------------------------------------------ close block k for the chunks after it
        if not MAX:
            fin = ((t0 + rr) < L)[:, None] & (gch > NEG_INF) & cmask[None, :]
            ref = tl.max(tl.where(fin, gch, NEG_INF), axis=0)
            ref0 = tl.where(ref == NEG_INF, 0.0, ref)
            gl_k = tl.where(fin, tl.exp(gch - ref0[None, :]), 0.0)
            n_bad += tl.sum(tl.sum(tl.where(fin & (gch < ref0[None, :] - SPREAD_G), 1, 0), axis=1), axis=0)
            tl.store(glin_ptr + seq + (t0 + rr)[:, None] * C + cc[None, :], gl_k,
                     mask=((t0 + rr) < L)[:, None] & cmask[None, :])
            tl.store(bref_base + k * C + cc, ref, mask=cmask)
        # Block k (glin, bref, g) is read by the next chunk's far part.
        tl.debug_barrier()
    tl.store(flag_ptr + n, n_bad)


@triton.jit
def _near_inputs(i, nq, t0, C, K, seq, cum_base, start_ptr, end_ptr, lim_ptr, dur_ptr, far_base, fard_base,
                 cc, cmask, rr,
                 HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    """What Viterbi step ``i`` of a chunk needs that does not depend on the chain (loaded a step ahead).

    Returns ``(cg, ca, drow, farv, fard)``: ``g = u + cg``, ``alpha = ca + best``; ``drow`` (Q, C) the
    duration scores for the starts of the chunk (-inf where not allowed); ``farv``/``fard`` the far
    maximum of the end t + 1 and its duration.
    """
    NEG_INF: tl.constexpr = float("-inf")
    t = t0 + i
    m = cmask & ((tl.zeros([BLOCK_C], tl.int32) + i) < nq)
    cg = -tl.load(cum_base + t * C + cc, mask=m, other=0.0)
    if HAS_START:
        cg += tl.load(start_ptr + seq + t * C + cc, mask=m, other=0.0)
    ca = tl.load(cum_base + (t + 1) * C + cc, mask=m, other=0.0)
    if HAS_END:
        ca += tl.load(end_ptr + seq + t * C + cc, mask=m, other=0.0)
    if CONSTRAINED:
        lim_t = tl.minimum(tl.load(lim_ptr + seq + t * C + cc, mask=m, other=0), K)
    else:
        lim_t = tl.zeros([BLOCK_C], tl.int32) + K
    dn = i - rr  # duration - 1 of the segment from chunk position r to t
    okn = (dn[:, None] >= 0) & ((dn[:, None] + 1) <= lim_t[None, :]) & m[None, :]
    drow = tl.load(dur_ptr + dn[:, None] * C + cc[None, :], mask=okn, other=NEG_INF)
    farv = tl.load(far_base + i * BLOCK_C + cc, mask=m, other=NEG_INF)
    fard = tl.load(fard_base + i * BLOCK_C + cc, mask=m, other=1)
    return cg, ca, drow, farv, fard


@triton.jit
def _linear_inputs(i, nq, t0, C, K, seq, lim_ptr, w_ptr, scr_base, cc, cmask, rr,
                   CONSTRAINED: tl.constexpr, Q: tl.constexpr, BLOCK_C: tl.constexpr):
    """The chain-independent factors of linear step ``i``: (fg, fa, fl, wrow), see the kernel."""
    t = t0 + i
    m = cmask & ((tl.zeros([BLOCK_C], tl.int32) + i) < nq)
    fg = tl.load(scr_base + i * BLOCK_C + cc, mask=m, other=0.0)
    fa = tl.load(scr_base + (Q + i) * BLOCK_C + cc, mask=m, other=0.0)
    fl = tl.load(scr_base + (2 * Q + i) * BLOCK_C + cc, mask=m, other=0.0)
    if CONSTRAINED:
        lim_t = tl.minimum(tl.load(lim_ptr + seq + t * C + cc, mask=m, other=0), K)
    else:
        lim_t = tl.zeros([BLOCK_C], tl.int32) + K
    dn = i - rr
    okn = (dn[:, None] >= 0) & ((dn[:, None] + 1) <= lim_t[None, :]) & m[None, :]
    wrow = tl.load(w_ptr + dn[:, None] * C + cc[None, :], mask=okn, other=0.0)
    return fg, fa, fl, wrow


@triton.jit
def chunk_linear_sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, w_ptr, wt_ptr, tlin_ptr, tmax_ptr,
    dmax_ptr, len_ptr, alpha_ptr, u_ptr, g_ptr, glin_ptr, bref_ptr, scr_ptr, fard_ptr, flag_ptr,
    bestd_ptr, bestp_ptr,
    T, C, K, n_per_dir, NBLK,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    Q: tl.constexpr, QS: tl.constexpr, BLOCK_C: tl.constexpr, NBP: tl.constexpr, SPREAD_G: tl.constexpr,
):
    """The chunked sweep with the dependent chain in registers: linear space for the log semiring.

    Far part as in :func:`chunk_sweep_kernel`, source blocks cut into sub-blocks of ``QS`` starts
    (so that few warps can hold a tile); in the log semiring the weights come from ``wt`` (NBW, Q,
    Q, BLOCK_C), ``wt[δ - 1, a, b, c] = w[δ·Q + a - b, c]`` (0 past K): the Toeplitz tile between
    a chunk and the block δ chunks before it, read contiguously.

    Log semiring, chunk of positions t0 .. t0 + Q - 1, reference ``S`` (the largest alpha at t0):

        a[c]  = exp(alpha[t, c] - S)                 u_lin[c] = sum_c' a[c'] tlin[c', c]
        h[t, c] = exp(g[t, c] - G0[c]) = u_lin[c] fg[t, c]
        a'[c] = (sum_{r <= i} w[i - r, c] h[t0 + r, c] + fl[t + 1, c]) fa[t + 1, c]

    with ``tlin = exp(trans - tmax)``, ``G0 = S + tmax - cum[t0]``, ``fg = exp(start[t] - (cum[t] -
    cum[t0]))``, ``fa = exp(cum[t + 1] - cum[t0] + end[t] + dmax + tmax)`` and ``fl`` the far part
    over ``exp(G0 + dmax)``, all computed per chunk before its steps. Each step is multiply-adds only;
    the logarithms of alpha, u and g are taken for the whole chunk after it. Values of a label more
    than ~700 nats below the reference flush to 0 (their paths weigh < e^-700 of the position's
    mass); a chunk whose values leave [1e-290, 1e290] as a whole, or overflow, raises the flag and
    the caller reruns the exact kernel. Max semiring (Viterbi): the near max and its duration in log
    space, the chain's inputs loaded one step ahead.

    Shapes as :func:`chunk_sweep_kernel`, plus wt, tlin (2, C, C) and tmax (2,) float64 (per
    direction), scr (N, 3, Q, BLOCK_C) float64 and fard (N, Q, BLOCK_C) int32 scratch.
    """
    n = tl.program_id(0)
    direction = n // n_per_dir
    L = tl.load(len_ptr + n).to(tl.int32)
    NEG_INF: tl.constexpr = float("-inf")
    BIG: tl.constexpr = 1e290
    SMALL: tl.constexpr = 1e-290

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
    cum_base = cum_ptr + n.to(tl.int64) * (T + 1) * C
    alpha_base = alpha_ptr + n.to(tl.int64) * (T + 1) * C
    bestd_base = bestd_ptr + n.to(tl.int64) * (T + 1) * C
    bref_base = bref_ptr + n.to(tl.int64) * NBLK * C
    scr_base = scr_ptr + n.to(tl.int64) * 3 * Q * BLOCK_C
    fard_base = fard_ptr + n.to(tl.int64) * Q * BLOCK_C
    kfull = tl.zeros([Q, BLOCK_C], tl.int32) + K
    tile = rr[:, None, None] * (Q * BLOCK_C) + cc[None, None, :]

    alpha_prev = tl.full([BLOCK_C], NEG_INF, tl.float64)
    n_bad = 0
    for k in range(0, tl.cdiv(L, Q)):
        t0 = k * Q
        # ------------------------------------------------ far part, all Q ends of the chunk at once
        e_q = t0 + rr + 1
        valid_q = e_q <= L
        vq2 = valid_q[:, None] & cmask[None, :]
        if CONSTRAINED:
            lmax = tl.minimum(tl.load(lim_ptr + seq + (e_q[:, None] - 1) * C + cc[None, :], mask=vq2, other=0), K)
        else:
            lmax = kfull
        lo = e_q[:, None] - lmax  # smallest allowed start per (end, label)
        lo_min = tl.min(tl.min(tl.where(vq2, lo, t0), axis=1), axis=0)
        j_lo = tl.maximum(lo_min, 0) // Q
        nb = k - j_lo
        if MAX:
            best = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
            best_d = tl.zeros([Q, BLOCK_C], tl.int32)
        else:
            jj = tl.arange(0, NBP)
            jb = k - 1 - jj
            inb = jj < nb
            brefs = tl.load(bref_base + jb[:, None] * C + cc[None, :], mask=inb[:, None] & cmask[None, :],
                            other=NEG_INF)
            ov = ((jb[None, :, None] * Q + Q - 1) >= lo[:, None, :]) & inb[None, :, None]
            R = tl.max(tl.where(ov, brefs[None, :, :], NEG_INF), axis=1)  # [Q, C]
            R = tl.where(R == NEG_INF, 0.0, R)
            acc = tl.zeros([Q, BLOCK_C], tl.float64)
            lost = tl.zeros([Q, BLOCK_C], tl.int32)
        for jn in range(0, nb):
            j = k - 1 - jn
            if MAX:
                # Sub-blocks from the nearest starts to the farthest: ties keep the shorter segment.
                for sb in tl.static_range(0, Q // QS):
                    rs = (Q - QS - sb * QS) + tl.arange(0, QS)
                    s = j * Q + rs
                    d3 = (e_q[:, None] - s[None, :])[:, :, None]  # [Q(end), QS(start), 1], >= 1
                    ok = (d3 <= lmax[:, None, :]) & vq2[:, None, :]
                    gs = tl.load(g_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=NEG_INF)
                    dv = tl.load(dur_ptr + (d3 - 1) * C + cc[None, None, :], mask=ok, other=NEG_INF)
                    x = tl.where(ok, gs[None, :, :] + dv, NEG_INF)
                    m = tl.max(x, axis=1)
                    r_best = tl.max(tl.where(x == m[:, None, :], rs[None, :, None], -1), axis=1)
                    upd = m > best
                    best = tl.where(upd, m, best)
                    best_d = tl.where(upd, (e_q[:, None] - (j * Q + r_best)).to(tl.int32), best_d)
            else:
                part = tl.zeros([Q, BLOCK_C], tl.float64)
                wt_j = wt_ptr + jn * (Q * Q * BLOCK_C)
                for sb in tl.static_range(0, Q // QS):
                    rs = sb * QS + tl.arange(0, QS)
                    s = j * Q + rs
                    gl = tl.load(glin_ptr + seq + s[:, None] * C + cc[None, :], mask=cmask[None, :], other=0.0)
                    wt = tl.load(wt_j + tile + rs[None, :, None] * BLOCK_C)
                    if CONSTRAINED:
                        d3 = (e_q[:, None] - s[None, :])[:, :, None]
                        wt = tl.where(d3 <= lmax[:, None, :], wt, 0.0)
                    part += tl.sum(wt * gl[None, :, :], axis=1)
                br = tl.load(bref_base + j * C + cc, mask=cmask, other=NEG_INF)
                scale = tl.exp(br[None, :] - R)
                acc += part * scale
                lost = lost | ((part > 0) & (scale == 0)).to(tl.int32)

        nq = tl.minimum(Q, L - t0)
        pos = t0 + rr
        pv2 = (pos < L)[:, None] & cmask[None, :]
        if MAX:
            tl.store(scr_base + (2 * Q + rr[:, None]) * BLOCK_C + cc[None, :], best)
            tl.store(fard_base + rr[:, None] * BLOCK_C + cc[None, :], best_d)
            # The far values are read by other threads of the program in the steps below.
            tl.debug_barrier()
            # -------------------------------------------- near part (max-plus), position by position
            gch = tl.full([Q, BLOCK_C], NEG_INF, tl.float64)
            cg, ca, drow, farv, fard = _near_inputs(
                0, nq, t0, C, K, seq, cum_base, start_ptr, end_ptr, lim_ptr, dur_ptr, scr_base + 2 * Q * BLOCK_C,
                fard_base, cc, cmask, rr, HAS_START, HAS_END, CONSTRAINED, BLOCK_C)
            for i in range(0, nq):
                t = t0 + i
                cg_n, ca_n, drow_n, farv_n, fard_n = _near_inputs(
                    i + 1, nq, t0, C, K, seq, cum_base, start_ptr, end_ptr, lim_ptr, dur_ptr,
                    scr_base + 2 * Q * BLOCK_C, fard_base, cc, cmask, rr, HAS_START, HAS_END, CONSTRAINED, BLOCK_C)
                if t == 0:
                    u = init
                    tl.store(bestp_ptr + seq + cc, tl.full([BLOCK_C], -1, tl.int32), mask=cmask)
                else:
                    x = alpha_prev[:, None] + trans
                    u = tl.max(x, axis=0)
                    tl.store(bestp_ptr + seq + t * C + cc, tl.argmax(x, axis=0).to(tl.int32), mask=cmask)
                g_t = u + cg
                tl.store(u_ptr + seq + t * C + cc, u, mask=cmask)
                tl.store(g_ptr + seq + t * C + cc, g_t, mask=cmask)
                gch = tl.where(rr[:, None] == i, g_t[None, :], gch)
                win = gch + drow
                mn = tl.max(win, axis=0)
                r_n = tl.max(tl.where(win == mn[None, :], rr[:, None], -1), axis=0)
                near = mn >= farv  # ties go to the shorter segment
                bestv = tl.where(near, mn, farv)
                bd = tl.where(near, tl.maximum(i + 1 - r_n, 1).to(tl.int32), fard)
                tl.store(bestd_base + (t + 1) * C + cc, bd, mask=cmask)
                a = tl.where(cmask, ca + bestv, NEG_INF)
                tl.store(alpha_base + (t + 1) * C + cc, a, mask=cmask)
                alpha_prev = a
                cg, ca, drow, farv, fard = cg_n, ca_n, drow_n, farv_n, fard_n
        else:
            far = tl.where(acc > 0, tl.log(acc) + R + dmax[None, :], NEG_INF)
            n_bad += tl.sum(tl.sum(tl.where(vq2 & (lost != 0) & (acc < 1e-200), 1, 0), axis=1), axis=0)
            # -------------------------------------------- chunk factors (see the docstring)
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
                xg += tl.load(start_ptr + seq + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
            xa = cum_t1 - c0[None, :] + dmax[None, :] + tmax
            if HAS_END:
                xa += tl.load(end_ptr + seq + pos[:, None] * C + cc[None, :], mask=pv2, other=0.0)
            fgs = tl.where(pv2, tl.exp(xg), 0.0)
            fas = tl.where(pv2, tl.exp(xa), 0.0)
            fls = tl.where(pv2, tl.exp(far - dmax[None, :] - G0[None, :]), 0.0)
            srow = (rr[:, None]) * BLOCK_C + cc[None, :]
            tl.store(scr_base + srow, fgs)
            tl.store(scr_base + Q * BLOCK_C + srow, fas)
            tl.store(scr_base + 2 * Q * BLOCK_C + srow, fls)
            tl.debug_barrier()
            u0 = tl.exp(init - S - tmax)  # only used at t = 0, where S = max(init) - tmax
            # -------------------------------------------- near part (linear), position by position
            hl = tl.zeros([Q, BLOCK_C], tl.float64)
            ul = tl.zeros([Q, BLOCK_C], tl.float64)
            al = tl.zeros([Q, BLOCK_C], tl.float64)
            nf = tl.zeros([Q, BLOCK_C], tl.float64)
            fg, fa, fl, wrow = _linear_inputs(0, nq, t0, C, K, seq, lim_ptr, w_ptr, scr_base, cc, cmask, rr,
                                              CONSTRAINED, Q, BLOCK_C)
            for i in range(0, nq):
                fg_n, fa_n, fl_n, wrow_n = _linear_inputs(i + 1, nq, t0, C, K, seq, lim_ptr, w_ptr, scr_base, cc,
                                                          cmask, rr, CONSTRAINED, Q, BLOCK_C)
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
            # -------------------------------------------- logs of the chunk, checks
            u_log = S + tmax + tl.log(ul)
            gch = tl.where(pv2, G0[None, :] + tl.log(hl), NEG_INF)
            a_log = S + tl.log(al)
            tl.store(u_ptr + seq + pos[:, None] * C + cc[None, :], u_log, mask=pv2)
            tl.store(g_ptr + seq + pos[:, None] * C + cc[None, :], gch, mask=pv2)
            tl.store(alpha_base + (pos[:, None] + 1) * C + cc[None, :], a_log, mask=pv2)
            alpha_prev = tl.max(tl.where((rr[:, None] == nq - 1) & cmask[None, :], a_log, NEG_INF), axis=0)
            amax_r = tl.max(tl.where(pv2, al, 0.0), axis=1)
            nmax_r = tl.max(tl.where(pv2, nf, 0.0), axis=1)
            bad_r = (amax_r > BIG) | ((amax_r < SMALL) & (nmax_r > 0)) | (amax_r != amax_r)
            bad_h = pv2 & ((hl > BIG) | (hl != hl))
            n_bad += tl.sum(tl.where(bad_r & (pos < L), 1, 0), axis=0) + \
                tl.sum(tl.sum(tl.where(bad_h, 1, 0), axis=1), axis=0)
            # -------------------------------------------- close block k for the chunks after it
            fin = pv2 & (gch > NEG_INF)
            bref_k = tl.max(tl.where(fin, gch, NEG_INF), axis=0)
            bref0 = tl.where(bref_k == NEG_INF, 0.0, bref_k)
            gl_k = tl.where(fin, tl.exp(gch - bref0[None, :]), 0.0)
            n_bad += tl.sum(tl.sum(tl.where(fin & (gch < bref0[None, :] - SPREAD_G), 1, 0), axis=1), axis=0)
            tl.store(glin_ptr + seq + pos[:, None] * C + cc[None, :], gl_k, mask=pv2)
            tl.store(bref_base + k * C + cc, bref_k, mask=cmask)
        # Block k (glin, bref, g) is read by the next chunk's far part.
        tl.debug_barrier()
    tl.store(flag_ptr + n, n_bad)
