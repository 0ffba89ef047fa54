"""The chunked sweep, step 3: the near part, the starts inside the chunk, step by step.

Log semiring: :func:`_stage_log_chunk` (the chunk's reference S and per-position factors into
scratch), :func:`_near_log` (the steps in linear space, multiply-adds only), :func:`_store_log_chunk`
(logarithms of u, g, alpha once per chunk; range checks) and :func:`_close_log_block` (block k's
reference and ``glin`` for the chunks after it). Max-plus: :func:`_stage_max_chunk` and
:func:`_near_max` (values only). Both read step i's inputs a step ahead (:func:`_step_inputs`).
"""

from __future__ import annotations

import triton
import triton.language as tl


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
def _close_log_block(k, gch, pos, pv2, C, cc, cmask, seq, glin_ptr, bref_base, gsp):
    """Block k, finished, for the far parts of the chunks after it: its reference ``bref`` (largest
    finite g per label) and ``glin = exp(g - bref)``; returns the count of finite g more than
    ``gsp`` (C,) nats below the reference (each flags the row)."""
    NEG_INF: tl.constexpr = float("-inf")
    fin = pv2 & (gch > NEG_INF)
    bref_k = tl.max(tl.where(fin, gch, NEG_INF), axis=0)
    bref0 = tl.where(bref_k == NEG_INF, 0.0, bref_k)
    gl_k = tl.where(fin, tl.exp(gch - bref0[None, :]), 0.0)
    n_bad = tl.sum(tl.sum(tl.where(fin & (gch < bref0[None, :] - gsp[None, :]), 1, 0), axis=1), axis=0)
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
