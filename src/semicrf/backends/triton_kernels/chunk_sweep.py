"""The chunked sweep (the default): the steps of :mod:`.chunk_far`, :mod:`.chunk_handover` and
:mod:`.chunk_near` in one kernel, and the guard on the scores it takes.

:func:`_too_spread` (with :func:`_spread`) is the first check of the exactness guard: scores that
spread beyond what the linear far part holds send the row to the exact kernel
(:mod:`.exact_sweep`). :func:`chunk_linear_sweep_kernel` then walks the chunks: ends, far part
(own or the helper's), near part, publish (its docstring has the steps and shapes).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .chunk_far import _chunk_ends, _far_log, _far_max
from .chunk_handover import _await_far_part, _far_helper, _join_far_log, _publish
from .chunk_near import (_close_log_block, _near_log, _near_max, _stage_log_chunk, _stage_max_chunk,
                         _store_log_chunk)


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
def chunk_linear_sweep_kernel(
    cum_ptr, start_ptr, end_ptr, lim_ptr, trans_ptr, init_ptr, dur_ptr, w_ptr, tlin_ptr, tmax_ptr,
    dmax_ptr, gsp_ptr, len_ptr, alpha_ptr, u_ptr, g_ptr, glin_ptr, bref_ptr, scr_ptr, flag_ptr, bestv_ptr,
    prog_ptr, ready_ptr, ring_ptr,
    T, C, K, n_per_dir, NR, first_con, NBLK, NT, NEARB, DEPTH, SPIN, pid_off,
    HAS_START: tl.constexpr, HAS_END: tl.constexpr, CONSTRAINED: tl.constexpr, MAX: tl.constexpr,
    Q: tl.constexpr, QS: tl.constexpr, BLOCK_C: tl.constexpr, NBP: tl.constexpr,
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
    of a label spread more than ``gsp[c]`` nats below its reference (700 less the spread of the
    label's finite duration scores, at least 400: ``glin · w`` stays at least e^-700), a block whose
    scale ``exp(bref - R)``
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
    gsp = tl.load(gsp_ptr + cc, mask=cmask, other=0.0)

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
            n_bad += _close_log_block(k, gch, pos, pv2, C, cc, cmask, seq, glin_ptr, bref_base, gsp)
        # Block k (glin, bref, g) is read by the next chunk's far part (and the helper).
        tl.debug_barrier()
        if HELP:
            _publish(prog_ptr + n, k + 1, FENCE)
    tl.store(flag_ptr + n, n_bad, mask=is_near)
    if HELP:
        if is_near:
            tl.atomic_xchg(prog_ptr + n, DONE, sem="release", scope="gpu")
