"""The CPU backend: the reference recurrences compiled with numba, in O(T·K·C) multiply-adds.

The forward sweep needs, at every end position e and label c, the duration look-back

    logsumexp_{d=1..K} (durations[d - 1, c] + g[e - d, c]).

Done in log space this costs T·K·C exponentials. Here it is a dot product in
linear space instead: ``W[d, c] = exp(durations[d - 1, c] - Dmax[c])`` is
computed once, and the values ``G[s, c] = exp(g[s, c] - ref)`` are kept in
*blocks* of consecutive positions that share one float64 reference ``ref``. A
block closes after ``BLOCK`` positions, or as soon as a value strays more than
``SPREAD`` nats from its reference, so every stored value lies in
``[e^-SPREAD, e^SPREAD]``; with the duration spread capped at ``SPREAD`` too, every
product of the dot lies in ``[e^-2·SPREAD, e^SPREAD]`` and nothing under- or
overflows in float64. The look-back is then a sum over at most ``K / BLOCK + 1``
blocks of ``log(dot) + ref``, combined in log space: a handful of exponentials per
(e, c) instead of K. The sequential chain itself (transitions, references) stays in
float64 log space.

The look-back of label c is bounded by the span of its finite durations
(:func:`duration_span`): durations outside it score -inf, so a label whose
segments are at most 500 long costs 500 terms per position even when K is
20 000, and one that cannot be shorter than 100 skips the 99 nearest starts; a
label whose finite durations lie on a progression (every third length, say)
visits only those. An
end position whose end score is -inf skips the look-back altogether (such a
segment cannot end there). Both are exact: they only leave out terms that are
-inf.

When the finite duration scores of a label spread over more than ``SPREAD`` nats
the linear form could lose terms, so such inputs take an exact log-space path
(slower, same results).

The backward quantities are the forward sweep run on the reversed problem (the
same compiled function), and the duration gradient — a lagged correlation of the
forward and backward blocks — is done block pair by block pair in the same way.
Sequences (and the two directions) are spread over a pool of Python threads: the
compiled functions release the GIL, so no numba threading layer is involved (its
OpenMP layer contends with PyTorch's own OpenMP threads).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch

from ..problem import Problem, reverse_problem
from ..types import ForwardBackward, Marginals, ViterbiResult

BLOCK = 128
SPREAD = 300.0
NEG_INF = -np.inf

_jit = dict(cache=True, nogil=True, fastmath=False)


# --------------------------------------------------------------------------- forward sweep
@nb.njit(**_jit)
def _lse_update(mx, acc, term):
    """Online log-sum-exp: (mx, acc) represents mx + log(acc)."""
    if term == NEG_INF:
        return mx, acc
    if term > mx:
        return term, acc * math.exp(mx - term) + 1.0
    return mx, acc + math.exp(term - mx)


@nb.njit(**_jit)
def _sweep(L, K, C, linear, cum, start, end, lim, entries, init, dur, w_rev, dur_max, span,
           alpha, u, gl, blk, bstart, bref, nblk):
    """Forward sweep of one sequence of length L.

    In: cum (L+1, C) prefix sums; start, end (L, C); lim (L, C) longest allowed segment ending at t;
    entries: :func:`entry_lists` of the transitions; init (C,); dur (K, C) log scores; w_rev (C, K)
    with w_rev[c, K - d] = exp(dur[d - 1, c] - dur_max[c]); span (C, 2) shortest and longest finite
    duration of each label.
    Out: alpha (L+1, C); u (L, C) incoming log-scores; gl (C, L) block-scaled exp(g); blk (C, L) block
    of each position; bstart (C, L+1), bref (C, L) block starts and references; nblk (C,).
    """
    sources, source_scores, source_ptr = entries
    for c in range(C):
        nblk[c] = 0
        alpha[0, c] = NEG_INF
    for t in range(L):
        # Incoming score of a segment that starts at t (a -inf transition adds nothing, so only the
        # finite ones are visited, in the same ascending order).
        for c in range(C):
            if t == 0:
                u[t, c] = init[c]
            else:
                mx = NEG_INF
                acc = 0.0
                for k in range(source_ptr[c], source_ptr[c + 1]):
                    mx, acc = _lse_update(mx, acc, alpha[t, sources[k]] + source_scores[k])
                u[t, c] = mx + math.log(acc) if acc > 0.0 else NEG_INF
            gv = u[t, c] - cum[t, c] + start[t, c]
            if linear:
                cur = nblk[c] - 1
                if gv == NEG_INF:
                    if cur < 0:
                        bstart[c, 0] = t
                        bref[c, 0] = NEG_INF
                        nblk[c] = 1
                        cur = 0
                    gl[c, t] = 0.0
                else:
                    if cur < 0 or t - bstart[c, cur] >= BLOCK or (
                            bref[c, cur] != NEG_INF and abs(gv - bref[c, cur]) > SPREAD):
                        cur += 1
                        bstart[c, cur] = t
                        bref[c, cur] = gv
                        nblk[c] = cur + 1
                    elif bref[c, cur] == NEG_INF:
                        bref[c, cur] = gv
                    gl[c, t] = math.exp(gv - bref[c, cur])
                blk[c, t] = cur
                bstart[c, nblk[c]] = t + 1  # provisional end of the open block
            else:
                gl[c, t] = gv  # log space
        # Segments that end at e = t + 1.
        e = t + 1
        for c in range(C):
            # Only durations span[c, 0]..span[c, 1] can score, and a segment whose end score
            # forbids it needs no look-back at all.
            n = min(lim[t, c], span[c, 1], e)
            if n < span[c, 0] or end[t, c] == NEG_INF:
                alpha[e, c] = NEG_INF
                continue
            lo = e - n
            hi = e - span[c, 0] + 1
            mx = NEG_INF
            acc = 0.0
            if linear:
                s = lo
                base = K - e
                while s < hi:
                    k = blk[c, s]
                    stop = min(hi, bstart[c, k + 1])
                    part = 0.0
                    for q in range(first_start(s, e, span[c, 0], span[c, 2]), stop, span[c, 2]):
                        part += w_rev[c, base + q] * gl[c, q]
                    if part > 0.0:
                        mx, acc = _lse_update(mx, acc, math.log(part) + bref[c, k])
                    s = stop
                best = mx + math.log(acc) + dur_max[c] if acc > 0.0 else NEG_INF
            else:
                for q in range(first_start(lo, e, span[c, 0], span[c, 2]), hi, span[c, 2]):
                    mx, acc = _lse_update(mx, acc, dur[e - q - 1, c] + gl[c, q])
                best = mx + math.log(acc) if acc > 0.0 else NEG_INF
            alpha[e, c] = cum[e, c] + end[t, c] + best


# --------------------------------------------------------------------------- marginals
@nb.njit(**_jit)
def _safe_exp(x):
    return math.exp(x) if x != NEG_INF else 0.0


@nb.njit(**_jit)
def _assemble(L, K, C, linear, constrained, log_z, cum, start, trans, dur, dur_max, span, lim,
              alpha, u, gl, blk, bstart, bref, nblk,
              alpha_r, u_r, gl_r, blk_r, bstart_r, bref_r, nblk_r,
              occ, smass, emass, tgrad, dgrad, h_lin):
    """Marginals of one sequence from its forward sweep and the sweep of its reversal.

    A sequence with no possible path (log Z = -inf) has all marginals zero. The steps are called
    once per sequence or per label, never inside a loop over positions, so the split costs no calls
    in the hot loops.
    """
    if log_z == NEG_INF:
        occ[:, :] = 0.0
        smass[:, :] = 0.0
        emass[:, :] = 0.0
        tgrad[:, :] = 0.0
        dgrad[:, :] = 0.0
        return
    _segment_marginals(L, C, log_z, alpha, u, alpha_r, u_r, occ, smass, emass)
    _transition_marginals(L, C, log_z, trans, alpha, alpha_r, tgrad)
    # Durations: sum_s P(segment [s, s + d) of label c)
    #   = sum_s exp(g[s] + dur[d - 1] + g_r[L - s - d] + cum[L] - log Z).
    for c in range(C):
        for d in range(K):
            dgrad[d, c] = 0.0
        if not linear:
            _duration_marginal_log(c, L, constrained, log_z, cum, dur, span, lim, gl, gl_r, dgrad)
        else:
            _duration_marginal_blocks(c, L, constrained, log_z, cum, dur, span, lim, gl, bstart, bref, nblk,
                                      gl_r, blk_r, bstart_r, bref_r, nblk_r, dgrad, h_lin)


@nb.njit(**_jit)
def _segment_marginals(L, C, log_z, alpha, u, alpha_r, u_r, occ, smass, emass):
    """smass, emass (T, C): a segment of label c starts at s, ends at e - 1; occ (T, C): label c covers t."""
    # Segment starts: P(label-c segment starts at s) = exp(u[s] + beta[s] - log Z), beta[s] = alpha_r[L - s].
    for s in range(L):
        for c in range(C):
            smass[s, c] = _safe_exp(u[s, c] + alpha_r[L - s, c] - log_z)
    # Segment ends at e (inclusive e - 1): exp(alpha[e] + v[e] - log Z), v[e] = u_r[L - e] (outgoing score).
    for e in range(1, L + 1):
        for c in range(C):
            emass[e - 1, c] = _safe_exp(alpha[e, c] + u_r[L - e, c] - log_z)
    for c in range(C):
        started = 0.0
        ended = 0.0
        for t in range(L):
            started += smass[t, c]
            occ[t, c] = started - ended
            ended += emass[t, c]


@nb.njit(**_jit)
def _transition_marginals(L, C, log_z, trans, alpha, alpha_r, tgrad):
    """tgrad (C, C): the expected count of c' -> c at the inner boundaries s = 1 .. L - 1."""
    for cp in range(C):
        for c in range(C):
            tot = 0.0
            if trans[cp, c] != NEG_INF:
                for s in range(1, L):
                    tot += _safe_exp(alpha[s, cp] + trans[cp, c] + alpha_r[L - s, c] - log_z)
            tgrad[cp, c] = tot


@nb.njit(**_jit)
def _duration_marginal_log(c, L, constrained, log_z, cum, dur, span, lim, gl, gl_r, dgrad):
    """dgrad[:, c] (K,) from the log-space sweeps: one exponential per (start, duration)."""
    for s in range(L):
        gs = gl[c, s]
        if gs == NEG_INF:
            continue
        for d in range(span[c, 0], min(span[c, 1], L - s) + 1, span[c, 2]):
            if constrained and d > lim[s + d - 1, c]:
                continue
            x = gs + dur[d - 1, c] + gl_r[c, L - s - d] + cum[L, c] - log_z
            dgrad[d - 1, c] += _safe_exp(x)


@nb.njit(**_jit)
def _duration_marginal_blocks(c, L, constrained, log_z, cum, dur, span, lim, gl, bstart, bref, nblk,
                              gl_r, blk_r, bstart_r, bref_r, nblk_r, dgrad, h_lin):
    """dgrad[:, c] (K,) from the linear sweeps: per pair of a forward and a backward block, sums of
    products ``gl[s] · h_lin[s + d]`` at the two blocks' references, one exponential per duration.
    h_lin (L + 1,) is scratch."""
    # Backward blocks indexed by end position e = L - s': h_lin[e] = gl_r[L - e].
    for e in range(1, L + 1):
        h_lin[e] = gl_r[c, L - e]
    for i in range(nblk[c]):
        a_i = bstart[c, i]
        b_i = bstart[c, i + 1] if i + 1 < nblk[c] else L
        if bref[c, i] == NEG_INF:
            continue
        e_lo = a_i + span[c, 0]
        e_hi = min(L, b_i - 1 + span[c, 1])
        # Walk the backward blocks that cover e in [e_lo, e_hi], from high e to low e... in s' order.
        sp = L - e_hi  # s' of e_hi
        while sp <= L - e_lo:
            j = blk_r[c, sp]
            sp_end = bstart_r[c, j + 1] if j + 1 < nblk_r[c] else L
            sp_stop = min(sp_end, L - e_lo + 1)
            f_lo = L - (sp_stop - 1)
            f_hi = L - sp
            ref = bref[c, i] + bref_r[c, j] + cum[L, c] - log_z
            if bref_r[c, j] != NEG_INF:
                d_min = max(span[c, 0], f_lo - (b_i - 1))
                d_max = min(span[c, 1], f_hi - a_i)
                for d in range(d_min, d_max + 1):
                    if dur[d - 1, c] == NEG_INF:
                        continue
                    s_lo = max(a_i, f_lo - d)
                    s_hi = min(b_i - 1, f_hi - d)
                    part = 0.0
                    if constrained:
                        for s in range(s_lo, s_hi + 1):
                            if d <= lim[s + d - 1, c]:
                                part += gl[c, s] * h_lin[s + d]
                    else:
                        for s in range(s_lo, s_hi + 1):
                            part += gl[c, s] * h_lin[s + d]
                    if part > 0.0:
                        dgrad[d - 1, c] += math.exp(math.log(part) + ref + dur[d - 1, c])
            sp = sp_stop


@nb.njit(**_jit)
def _assemble_task(b, B, lengths, K, C, linear, constrained, log_z, cum, start, trans, dur, dur_max, span, lim,
                   alpha, u, gl, blk, bstart, bref, nblk, occ, smass, emass, tgrad, dgrad):
    """_assemble for sequence b, whose reversal is task B + b."""
    r = B + b
    h_lin = np.empty(lengths[b] + 1)
    _assemble(lengths[b], K, C, linear, constrained, log_z[b], cum[b], start[b], trans, dur, dur_max, span, lim[b],
              alpha[b], u[b], gl[b], blk[b], bstart[b], bref[b], nblk[b],
              alpha[r], u[r], gl[r], blk[r], bstart[r], bref[r], nblk[r],
              occ[b], smass[b], emass[b], tgrad[b], dgrad[b], h_lin)


# --------------------------------------------------------------------------- limits
@nb.njit(**_jit)
def _limits(labels, lengths, K, C, constrained, out):
    """out[b, t, c]: the longest allowed segment of label c ending at t (see reference.duration_limits)."""
    for b in range(labels.shape[0]):
        run = 0
        for t in range(lengths[b]):
            if constrained:
                if t > 0 and labels[b, t] == labels[b, t - 1]:
                    run += 1
                else:
                    run = 1
                for c in range(C):
                    out[b, t, c] = min(run, K) if labels[b, t] == c else 0
            else:
                for c in range(C):
                    out[b, t, c] = K


# --------------------------------------------------------------------------- drivers
_POOL: ThreadPoolExecutor | None = None


_SERIAL_WORK = 2_000_000  # below this many look-back terms a thread hand-off costs more than it saves


def _parallel(fn, n: int, work: int) -> None:
    """Run fn(0), ..., fn(n - 1) on up to torch.get_num_threads() threads."""
    global _POOL
    workers = max(1, min(n, torch.get_num_threads()))
    if work < _SERIAL_WORK:
        workers = 1
    if workers == 1:
        for i in range(n):
            fn(i)
        return
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semicrf")
    for f in [_POOL.submit(fn, i) for i in range(n)]:
        f.result()


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float64).numpy())


def _prefix(em: torch.Tensor) -> np.ndarray:
    B, T, C = em.shape
    out = np.zeros((B, T + 1, C))
    np.cumsum(_np(em), axis=1, out=out[:, 1:])
    return out


def _seq_or_zeros(x, shape) -> np.ndarray:
    return np.zeros(shape) if x is None else _np(x)


def duration_span(dur: np.ndarray) -> np.ndarray:
    """(C, 3) int64: the shortest and longest finite duration of each label and the step between its
    finite durations ((1, 0, 1) when none is).

    The look-back of label c visits only durations in this span: a label whose durations are
    -inf past some length (or below one) costs no more than its longest (shortest) segment needs.
    The step is the largest m such that every finite duration is the shortest plus a multiple of
    m (the gcd of their differences; 1 for a label with one finite duration): a label whose lengths
    are restricted to one residue mod 3 (the gene model's introns) visits a third of the terms.
    """
    K, C = dur.shape
    finite = np.isfinite(dur)
    any_ = finite.any(axis=0)
    lo = np.where(any_, finite.argmax(axis=0) + 1, 1)
    hi = np.where(any_, K - finite[::-1].argmax(axis=0), 0)
    step = np.ones(C, dtype=np.int64)
    for c in range(C):
        gaps = np.flatnonzero(finite[:, c]) + 1 - lo[c]
        g = int(np.gcd.reduce(gaps)) if gaps.size else 0
        step[c] = max(1, g)
    return np.ascontiguousarray(np.stack([lo, hi, step], axis=1).astype(np.int64))


@nb.njit(**_jit)
def first_start(a, e, shortest, step):
    """The first start s >= a of a segment ending at e whose length e - s is shortest + a multiple of
    step (the starts the look-back visits go from there by step)."""
    return a + (e - shortest - a) % step


def _duration_tables(dur: np.ndarray):
    """(linear?, w_rev (C, K), dur_max (C,)) for the duration look-back."""
    K, C = dur.shape
    finite = np.isfinite(dur)
    dmax = np.where(finite.any(axis=0), np.where(finite, dur, -np.inf).max(axis=0), 0.0)
    dmin = np.where(finite.any(axis=0), np.where(finite, dur, np.inf).min(axis=0), 0.0)
    linear = bool(np.all(dmax - dmin <= SPREAD))
    with np.errstate(under="ignore"):
        w = np.exp(dur - dmax[None, :])  # -inf -> 0
    w_rev = np.ascontiguousarray(w[::-1].T)  # w_rev[c, K - d] = w[d - 1, c]
    return linear, w_rev, dmax


def entry_lists(trans: np.ndarray):
    """(sources, scores, ptr): for each label c, ``sources[ptr[c]:ptr[c + 1]]`` are the labels c' with a
    finite ``trans[c', c]`` in ascending order and ``scores`` those transition scores (a gene grammar's
    98 states have 433 of 9 604)."""
    finite = np.isfinite(trans)
    cols, rows = np.nonzero(finite.T)  # by target, then source ascending
    ptr = np.zeros(trans.shape[1] + 1, dtype=np.int64)
    np.cumsum(finite.sum(axis=0), out=ptr[1:])
    return rows.astype(np.int64), np.ascontiguousarray(trans[rows, cols], dtype=np.float64), ptr


def check_problem(p: Problem) -> None:
    """Nothing to refuse: any device works (CUDA inputs are computed on the host)."""


def _labels_np(p: Problem, B: int, T: int) -> np.ndarray:
    if p.labels is None:
        return np.zeros((B, T), dtype=np.int64)
    return np.ascontiguousarray(p.labels.cpu().numpy().astype(np.int64))


def _sweeps(p: Problem, problems: list, constrained: bool) -> dict:
    """The forward sweeps of ``problems`` (``p`` and perhaps its reversal), the rows stacked
    direction after direction: alpha (n, T+1, C) and the arrays the marginals read."""
    B, T, C = p.emissions.shape
    K = p.max_duration
    dur = _np(p.durations)
    linear, w_rev, dmax = _duration_tables(dur)
    span = duration_span(dur)
    lengths = p.lengths.cpu().numpy().astype(np.int64)
    n = len(problems) * B
    cum = np.concatenate([_prefix(q.emissions) for q in problems])
    start = np.concatenate([_seq_or_zeros(q.start_scores, (B, T, C)) for q in problems])
    end = np.concatenate([_seq_or_zeros(q.end_scores, (B, T, C)) for q in problems])
    lim = np.zeros((n, T, C), dtype=np.int64)
    for i, q in enumerate(problems):
        _limits(_labels_np(q, B, T), lengths, K, C, constrained, lim[i * B:(i + 1) * B])
    if constrained and p.label_classes is not None:  # runs of classes; label c reads its class's column
        lim = np.ascontiguousarray(lim[:, :, p.label_classes.cpu().numpy()])
    entries = [entry_lists(_np(q.transitions)) for q in problems]
    init = np.concatenate([np.broadcast_to(_np(q.initial), (B, C)) for q in problems])
    all_len = np.tile(lengths, len(problems))
    alpha = np.empty((n, T + 1, C))
    u = np.empty((n, T, C))
    gl = np.empty((n, C, T))
    blk = np.zeros((n, C, T), dtype=np.int64)
    bstart = np.zeros((n, C, T + 1), dtype=np.int64)
    bref = np.zeros((n, C, T))
    nblk = np.zeros((n, C), dtype=np.int64)
    init = np.ascontiguousarray(init)

    def sweep(i):
        _sweep(all_len[i], K, C, linear, cum[i], start[i], end[i], lim[i], entries[i // B], init[i], dur, w_rev, dmax,
               span, alpha[i], u[i], gl[i], blk[i], bstart[i], bref[i], nblk[i])

    work = int(lengths.sum()) * K * C
    _parallel(sweep, n, work)
    return dict(dur=dur, linear=linear, dmax=dmax, span=span, lengths=lengths, cum=cum, start=start, lim=lim,
                alpha=alpha, u=u, gl=gl, blk=blk, bstart=bstart, bref=bref, nblk=nblk, work=work)


def forward_alpha(p: Problem) -> torch.Tensor:
    """(B, T+1, C) float64 ``alpha`` of the unconstrained forward sweep: ``alpha[b, e, c]`` is the
    log-sum of every path over ``[0, e)`` whose last segment has label c; -inf past each length."""
    alpha = _sweeps(p, [p], False)["alpha"]
    for b, L in enumerate(p.lengths.tolist()):
        alpha[b, L + 1:] = NEG_INF
    return torch.from_numpy(alpha).to(p.emissions.device)


def forward_backward(p: Problem, constrained: bool = False, need_marginals: bool = True) -> ForwardBackward:
    """log Z (or the constrained log Z of ``p.labels``) and, optionally, all marginals."""
    B, T, C = p.emissions.shape
    K = p.max_duration
    problems = [p, reverse_problem(p)] if need_marginals else [p]
    sw = _sweeps(p, problems, constrained)
    dur, linear, dmax, span, lengths, cum, start, lim, work = (
        sw[k] for k in ("dur", "linear", "dmax", "span", "lengths", "cum", "start", "lim", "work"))
    alpha, u, gl, blk, bstart, bref, nblk = (sw[k] for k in ("alpha", "u", "gl", "blk", "bstart", "bref", "nblk"))
    final = _np(p.final)
    at_len = alpha[np.arange(B), lengths] + final[None, :]
    m = at_len.max(axis=1, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        log_z = (m_safe + np.log(np.exp(at_len - m_safe).sum(axis=1, keepdims=True)))[:, 0]
    out_dev = p.emissions.device
    log_z_t = torch.from_numpy(log_z).to(out_dev)
    if not need_marginals:
        return ForwardBackward(log_z_t)
    occ = np.zeros((B, T, C))
    smass = np.zeros((B, T, C))
    emass = np.zeros((B, T, C))
    tgrad = np.zeros((B, C, C))
    dgrad = np.zeros((B, K, C))
    trans_f = _np(p.transitions)
    _parallel(lambda b: _assemble_task(b, B, lengths, K, C, linear, constrained, log_z, cum, start, trans_f, dur, dmax,
                                       span, lim, alpha, u, gl, blk, bstart, bref, nblk, occ, smass, emass, tgrad, dgrad), B, work)

    def t(x):
        return torch.from_numpy(x).to(out_dev)

    marg = Marginals.from_masses(t(occ), t(smass), t(emass), t(tgrad), t(dgrad), t(np.asarray(lengths)))
    return ForwardBackward(log_z_t, marg)


def viterbi(p: Problem) -> ViterbiResult:
    """The best segmentation of each sequence (max-plus sweep, traceback compiled;
    :mod:`semicrf.backends.cpu_viterbi`)."""
    from .cpu_viterbi import viterbi as best_paths  # the max-plus module imports this one's helpers

    return best_paths(p)
