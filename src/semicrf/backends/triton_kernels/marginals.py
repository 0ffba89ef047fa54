"""Marginals from the forward and the reversed sweep.

:func:`duration_grad_kernel`: the duration marginal, a lagged correlation of the forward ``g`` and
the reversed ``g_r`` (as mantissas and exponents from :func:`.prepare.split_exp_kernel`: products,
no exponentials), one program per (sequence, label, block of durations), summing over positions in a
fixed order (no atomics, so gradients are bitwise reproducible). :func:`marginals_kernel`: the
position and transition marginals, one program per sequence.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
