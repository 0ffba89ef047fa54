"""Viterbi after the value-only max-plus sweeps: arguments, the meeting point, the segments.

:func:`viterbi_argmax_kernel` finds the arguments of the sweep's maxima (duration and previous
label) in parallel after it; :func:`viterbi_meet_kernel` the best segment across the middle, where
the forward and the reversed halves meet; :func:`traceback_kernel` follows the links, one program per
half sequence, and writes the segments.
"""

from __future__ import annotations

import triton
import triton.language as tl


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
