"""Preparation kernels: what the sweeps read, each in one launch instead of a dozen tensor operations.

:func:`split_exp_kernel` splits ``exp(x) = m · 2^k`` for the duration marginal (no overflow, products
without exponentials); :func:`label_runs_kernel` turns the labels into the limits of the constrained
sweeps (``lim``, ``rem``) from prefix maxima and suffix minima of run boundaries;
:func:`weights_kernel` writes the linear weights of the chunked sweep (``w``, ``tlin`` and their
references ``dmax``, ``tmax``).
"""

from __future__ import annotations

import triton
import triton.language as tl


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
def weights_kernel(dur_ptr, trans_ptr, w_ptr, dp_ptr, dmax_ptr, gsp_ptr, tlin_ptr, tmax_ptr, C, K, KP,
                   PADDED: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr,
                   SPREAD_G: tl.constexpr, PRODUCT_SPREAD: tl.constexpr):
    """Weights of the chunked sweep (one program): ``dmax[c]`` the largest finite duration score of
    label c (0 if none), ``w = exp(dur - dmax)`` (K, C); ``gsp[c]`` how far below a block's reference
    the label's finite g may fall, ``PRODUCT_SPREAD`` less the spread of its finite duration scores (0
    if none), at least ``SPREAD_G``, so that ``exp(g - bref) · w`` stays at least e^-PRODUCT_SPREAD;
    with ``PADDED`` the (KP, BLOCK_C) table ``dp = dur`` (-inf past K and for padding labels), so that
    the max-plus far part's look-backs need no mask; per direction ``tmax`` the largest finite
    transition score (0 if none), ``tlin = exp(trans - tmax)`` (2, C, C)."""
    NEG_INF: tl.constexpr = float("-inf")
    INF: tl.constexpr = float("inf")
    cc = tl.arange(0, BLOCK_C)
    cmask = cc < C
    hi = tl.full([BLOCK_C], NEG_INF, tl.float64)
    lo = tl.full([BLOCK_C], INF, tl.float64)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(dur_ptr + kk[:, None] * C + cc[None, :], mask=(kk < K)[:, None] & cmask[None, :], other=NEG_INF)
        fin = (x < INF) & (x > NEG_INF)
        hi = tl.maximum(hi, tl.max(tl.where(fin, x, NEG_INF), axis=0))
        lo = tl.minimum(lo, tl.min(tl.where(fin, x, INF), axis=0))
    dmax = tl.where(hi == NEG_INF, 0.0, hi)
    tl.store(dmax_ptr + cc, dmax, mask=cmask)
    spread = tl.where(hi == NEG_INF, 0.0, hi - lo)
    tl.store(gsp_ptr + cc, tl.maximum(PRODUCT_SPREAD - spread, SPREAD_G), mask=cmask)
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
