"""The chunked sweep, step 1 and 2: a chunk's ends and the far part of their look-back.

A chunk is Q consecutive ends; its *far* part is every start before the chunk (all known when it
begins), summed block by block of finished chunks, for all Q ends at once
(:func:`.chunk_sweep.chunk_linear_sweep_kernel`, docs/engine_gpu.md "Chunked sweep kernel").
:func:`_chunk_ends` gives the ends, their longest allowed segments and the first source block;
:func:`_far_log` the log semiring's part in linear space (``acc · exp(R)``), :func:`_far_max` the
max-plus part. The row calls them for its last blocks, its helper program
(:mod:`.chunk_handover`) for the blocks before.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
