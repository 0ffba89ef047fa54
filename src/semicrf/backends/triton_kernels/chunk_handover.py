"""The chunked sweep with helpers (``HELP``): the hand-over between a row and its helper program.

The counters (:func:`_wait_at_least`, acquire polls with a give-up; :func:`_publish`, barrier,
fence, release store; :func:`_await`), the row's side (:func:`_await_far_part`, then
:func:`_join_far_log` of the helper's far part with its own) and the helper program itself
(:func:`_far_helper`, the far part of each chunk into a ring slot once the row has finished the
blocks it needs). A wait longer than SPIN polls flags the row for the exact kernel instead of
hanging (docs/engine_gpu.md, "Chunked sweep kernel").
"""

from __future__ import annotations

import triton
import triton.language as tl

from .chunk_far import _chunk_ends, _far_log, _far_max


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
