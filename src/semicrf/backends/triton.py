"""The Triton backend: the semi-CRF sweeps as GPU kernels (see :mod:`.triton_kernels`).

It runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (slow;
for tests). The forward sweep and the sweep of the reversed problem run in one
launch, one program per (sequence, direction), and store their messages at
every position; the marginals are then assembled from them with O(B·T·C)
tensor operations and one lagged-correlation kernel for the durations. All
arithmetic is float64. Nothing uses float atomics, so results are bitwise
reproducible.
"""

from __future__ import annotations

import os

import torch

from ..problem import Problem, reverse_problem
from ..types import ForwardBackward, Marginals, ViterbiResult

try:  # Triton is optional: without it this backend reports itself unusable.
    import triton

    from . import triton_kernels as _k
    _IMPORT_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the installation
    triton = None
    _k = None
    _IMPORT_ERROR = exc

NEG_INF = float("-inf")

#: Positions per tile of the duration-gradient kernel (``--checkpoint-interval`` of the gradient check).
DEFAULT_CHUNK = 64

#: Float32 exponentials in the look-back (float64 shifts and chain): faster, ~1e-8 per step instead
#: of float64 rounding. Off by default.
FAST_LOOKBACK = False

#: Look-back method: "auto" (the chunked look-back where it is exact, else the per-step one),
#: "chunked" or "exact" (the per-step K-wide look-back).
LOOKBACK = "auto"
#: Positions per chunk of the chunked look-back (a power of two); None: :func:`chunk_config`.
CHUNK = None
#: Warps per program of the chunked sweep; None: :func:`chunk_config`.
CHUNK_WARPS = None
#: Near part of the chunked sweep: "linear" (register-resident, linear space) or "log" (per-step
#: log-space look-back through global memory).
NEAR = "linear"
#: Far-part tile of the linear-near kernel: about this many values per thread per sub-block.
FAR_TILE = 32
#: Largest spread (nats) of finite duration scores per label, and of finite g below its block's
#: largest, that the linear far part takes: products stay within [e^-700, 1].
SPREAD_D = 300.0
SPREAD_G = 400.0


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def usable() -> bool:
    """True when Triton imports and there is a CUDA GPU, or the interpreter is on."""
    if triton is None:
        return False
    return interpreted() or torch.cuda.is_available()


def check_problem(p: Problem) -> None:
    """Refuse what the kernels cannot run, with a message saying what to change."""
    if triton is None:
        raise ValueError(f"`backend`: 'triton' needs the triton package, which failed to import "
                         f"({_IMPORT_ERROR}); install it (pip install triton) or use backend='cpu'")
    dev = p.emissions.device
    if dev.type == "cuda":
        if interpreted():
            raise ValueError("`backend`: TRITON_INTERPRET=1 runs the Triton kernels on CPU tensors; "
                             "move the inputs to the CPU or unset TRITON_INTERPRET")
    elif dev.type == "cpu":
        if not interpreted():
            raise ValueError("`backend`: 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors); "
                             "move the inputs with .cuda() or use backend='cpu'")
    else:
        raise ValueError(f"`backend`: 'triton' runs on CUDA tensors, got tensors on {dev}; "
                         "use backend='reference' there")
    for name in ("transitions", "durations", "initial", "final", "lengths"):
        if getattr(p, name).device != dev:
            raise ValueError(f"`{name}`: is on {getattr(p, name).device} but emissions are on {dev}")


def chunk_config(K: int) -> tuple[int, int]:
    """(positions per chunk, warps per program) of the chunked sweep, unless set by :data:`CHUNK` /
    :data:`CHUNK_WARPS`. Chosen by measurement on an H200 (docs/engine_gpu.md): for K = 100 chunks
    of 32 with 4 warps (log sweep 2.6 ms against 3.2 ms for 64/8 and 3.9 ms for the exact kernel);
    for K = 1000 chunks of 64 with 8 warps (33.5 ms against 37.9 ms for 32/4)."""
    q, w = (32, 4) if K <= 256 else (64, 8)
    return (CHUNK or q, CHUNK_WARPS or w)


def _pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def _prefix(em: torch.Tensor) -> torch.Tensor:
    B, T, C = em.shape
    cum = torch.zeros((B, T + 1, C), dtype=torch.float64, device=em.device)
    torch.cumsum(em, dim=1, out=cum[:, 1:])
    return cum


def run_lengths(labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T) length of the run of equal labels ending at each position (vectorised, any device)."""
    B, T = labels.shape
    t = torch.arange(T, device=labels.device).expand(B, T)
    change = torch.ones_like(labels, dtype=torch.bool)
    change[:, 1:] = labels[:, 1:] != labels[:, :-1]
    first = torch.where(change, t, torch.zeros_like(t))
    run_start = torch.cummax(first, dim=1).values
    return t - run_start + 1


def _limits(p: Problem) -> torch.Tensor:
    """(B, T, C) int32: the longest allowed segment of label c ending at t under ``p.labels``."""
    C = p.num_classes
    run = run_lengths(p.labels, p.lengths).clamp(max=p.max_duration)
    onehot = torch.nn.functional.one_hot(p.labels, C).bool()
    return torch.where(onehot, run[:, :, None], torch.zeros((), dtype=run.dtype, device=run.device)) \
        .to(torch.int32).contiguous()


class _Sweep:
    """Messages of the stacked sweeps: rows [0, B) forward, [B, 2B) reversed (when present)."""

    def __init__(self, problems, constrained: bool, semiring: str = "log"):
        p = problems[0]
        B, T, C = p.emissions.shape
        K = p.max_duration
        dev = p.emissions.device
        N = B * len(problems)
        f64 = dict(dtype=torch.float64, device=dev)
        cat = lambda xs: torch.cat(xs).contiguous()  # noqa: E731
        self.cum = cat([_prefix(q.emissions) for q in problems])
        has_start = p.start_scores is not None
        has_end = p.end_scores is not None
        # In a reversed problem start and end swap, so present-ness is shared by both directions when
        # both are given; otherwise fill zeros for the missing one.
        if len(problems) == 2 and has_start != has_end:
            has_start = has_end = True
        zeros = torch.zeros((B, T, C), **f64)
        start = cat([q.start_scores if q.start_scores is not None else zeros for q in problems]) \
            if has_start else self.cum
        end = cat([q.end_scores if q.end_scores is not None else zeros for q in problems]) \
            if has_end else self.cum
        lim = cat([_limits(q) for q in problems]) if constrained else torch.zeros(1, dtype=torch.int32, device=dev)
        trans = torch.stack([q.transitions for q in problems] + [p.transitions] * (2 - len(problems))).contiguous()
        init = torch.stack([q.initial for q in problems] + [p.initial] * (2 - len(problems))).contiguous()
        lengths = torch.cat([p.lengths] * len(problems)).contiguous()
        self.alpha = torch.full((N, T + 1, C), NEG_INF, **f64)
        self.u = torch.full((N, T, C), NEG_INF, **f64)
        self.g = torch.full((N, T, C), NEG_INF, **f64)
        mx = semiring == "max"
        if mx:
            self.best_d = torch.zeros((N, T + 1, C), dtype=torch.int32, device=dev)
            self.best_prev = torch.full((N, T, C), -1, dtype=torch.int32, device=dev)
        else:
            self.best_d = self.best_prev = torch.zeros(1, dtype=torch.int32, device=dev)
        self.lim = lim
        self.method = _pick_method(p.durations, mx, trans, init)
        args = (self.cum, start, end, lim, trans, init, p.durations.contiguous())
        flags = dict(HAS_START=has_start, HAS_END=has_end, CONSTRAINED=constrained, MAX=mx)
        if self.method == "chunked":
            Q, warps = chunk_config(K)
            nblk = triton.cdiv(T, Q)
            w, dmax = _duration_weights(p.durations)
            glin = torch.empty((N, T, C), **f64) if not mx else self.g
            bref = torch.empty((N, nblk, C), **f64) if not mx else self.g
            flag = torch.zeros(N, dtype=torch.int32, device=dev)
            if NEAR == "linear":
                BC = _pow2(C)
                scr = torch.empty((N, 3, Q, BC), **f64)
                fard = torch.empty((N, Q, BC), dtype=torch.int32, device=dev)
                qs = Q
                while qs > 1 and Q * qs * BC > FAR_TILE * 32 * warps:
                    qs //= 2
                if mx:
                    wt = tlin = tmax = self.g
                else:
                    wt = _far_weights(w, K, Q, BC)
                    tlin, tmax = _linear_transitions(trans)
                _k.chunk_linear_sweep_kernel[(N,)](
                    *args, w, wt, tlin, tmax, dmax, lengths, self.alpha, self.u, self.g, glin, bref, scr, fard,
                    flag, self.best_d, self.best_prev, T, C, K, B, nblk,
                    **flags, Q=Q, QS=qs, BLOCK_C=BC, NBP=_pow2(triton.cdiv(K, Q) + 2), SPREAD_G=SPREAD_G,
                    num_warps=warps,
                )
            else:
                _k.chunk_sweep_kernel[(N,)](
                    *args, w, dmax, lengths, self.alpha, self.u, self.g, glin, bref, flag,
                    self.best_d, self.best_prev, T, C, K, B, nblk,
                    **flags, Q=Q, BLOCK_C=_pow2(C), NBP=_pow2(triton.cdiv(K, Q) + 2), SPREAD_G=SPREAD_G,
                    num_warps=warps,
                )
            if bool(flag.any()):  # a score spread the linear far part cannot hold: redo it exactly
                self.method = "exact"
                self.alpha.fill_(NEG_INF)
                self.u.fill_(NEG_INF)
                self.g.fill_(NEG_INF)
        if self.method == "exact":
            _k.sweep_kernel[(N,)](
                *args, lengths, self.alpha, self.u, self.g, self.best_d, self.best_prev,
                T, C, K, B,
                **flags, FAST_EXP=FAST_LOOKBACK, BLOCK_C=_pow2(C), BLOCK_K=_pow2(K),
                num_warps=4 if K * C <= 2048 else 8,
            )


def _duration_weights(dur: torch.Tensor):
    """(w (K, C), dmax (C,)): ``w = exp(dur - dmax)`` with dmax the largest finite score per label."""
    finite = torch.isfinite(dur)
    dmax = torch.where(finite, dur, NEG_INF).max(dim=0).values
    dmax = torch.where(torch.isfinite(dmax), dmax, torch.zeros_like(dmax))
    return torch.exp(dur - dmax[None]).contiguous(), dmax.contiguous()


def _far_weights(w: torch.Tensor, K: int, Q: int, BC: int) -> torch.Tensor:
    """(NBW, Q, Q, BC) Toeplitz tiles ``wt[δ - 1, a, b, c] = w[δ·Q + a - b, c]`` (0 from K on): the
    duration weights between end ``a`` of a chunk and start ``b`` of the block δ chunks before it."""
    nbw = triton.cdiv(K, Q) + 1
    dev = w.device
    idx = (torch.arange(1, nbw + 1, device=dev)[:, None, None] * Q + torch.arange(Q, device=dev)[None, :, None]
           - torch.arange(Q, device=dev)[None, None, :])
    ok = (idx < K)[..., None]
    wt = torch.zeros((nbw, Q, Q, BC), dtype=torch.float64, device=dev)
    wt[..., :w.shape[1]] = torch.where(ok, w[idx.clamp(max=K - 1)], 0.0)
    return wt


def _linear_transitions(trans: torch.Tensor):
    """(tlin (2, C, C), tmax (2,)): ``exp(trans - tmax)`` per direction, tmax the largest finite score."""
    finite = torch.isfinite(trans)
    tmax = torch.where(finite, trans, NEG_INF).flatten(1).max(dim=1).values
    tmax = torch.where(torch.isfinite(tmax), tmax, torch.zeros_like(tmax))
    return torch.exp(trans - tmax[:, None, None]).contiguous(), tmax.contiguous()


def _spread_ok(x: torch.Tensor, dim) -> bool:
    """Finite entries of ``x`` spread at most :data:`SPREAD_D` nats along ``dim``."""
    finite = torch.isfinite(x)
    hi = torch.where(finite, x, NEG_INF).amax(dim=dim)
    lo = torch.where(finite, x, float("inf")).amin(dim=dim)
    spread = torch.where(finite.any(dim=dim), hi - lo, torch.zeros_like(hi))
    return bool((spread <= SPREAD_D).all())


def _pick_method(dur: torch.Tensor, mx: bool, trans: torch.Tensor = None, init: torch.Tensor = None) -> str:
    """'chunked' (the chunked look-back) unless switched off or, in the log semiring, the finite
    duration scores of a label spread over more than :data:`SPREAD_D` nats."""
    if LOOKBACK != "auto":
        return LOOKBACK
    if mx:
        return "chunked"
    ok = _spread_ok(dur, 0)
    if NEAR == "linear" and trans is not None:
        # The linear chain scales transitions and initial scores by their largest finite value.
        ok = ok and _spread_ok(trans.flatten(1), 1) and _spread_ok(init, 1)
    return "chunked" if ok else "exact"


def _exp_or_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), torch.exp(x), torch.zeros((), dtype=x.dtype, device=x.device))


def forward_backward(p: Problem, constrained: bool = False, need_marginals: bool = True,
                     chunk: int | None = None) -> ForwardBackward:
    """log Z (or the constrained log Z of ``p.labels``) and, optionally, all marginals (float64).

    ``chunk`` is the number of positions per tile of the duration-gradient kernel (rounded up to a
    power of two; default :data:`DEFAULT_CHUNK`, read at call time).
    """
    B, T, C = p.emissions.shape
    K = p.max_duration
    dev = p.emissions.device
    problems = [p, reverse_problem(p)] if need_marginals else [p]
    sw = _Sweep(problems, constrained)
    b = torch.arange(B, device=dev)
    L = p.lengths
    log_z = torch.logsumexp(sw.alpha[b, L] + p.final[None], dim=1)
    if not need_marginals:
        return ForwardBackward(log_z)

    alpha, alpha_r = sw.alpha[:B], sw.alpha[B:]
    u, u_r = sw.u[:B], sw.u[B:]
    lz = log_z[:, None, None]
    t = torch.arange(T, device=dev)
    inside = (t[None, :] < L[:, None])[:, :, None]
    # beta[s] = alpha_r[L - s]: everything from s on, first segment starting at s.
    idx_s = (L[:, None] - t[None, :]).clamp(min=0)[:, :, None].expand(-1, -1, C)
    beta = torch.gather(alpha_r, 1, idx_s)
    start_mass = torch.where(inside, _exp_or_zero(u + beta - lz), 0.0)
    # Outgoing score after a segment ending at e = t + 1: u_r[L - e] (final when e = L).
    idx_e = (L[:, None] - t[None, :] - 1).clamp(min=0)[:, :, None].expand(-1, -1, C)
    out_score = torch.gather(u_r, 1, idx_e)
    end_mass = torch.where(inside, _exp_or_zero(alpha[:, 1:] + out_score - lz), 0.0)
    occupancy = torch.cumsum(start_mass, dim=1) - (torch.cumsum(end_mass, dim=1) - end_mass)
    occupancy = torch.where(inside, occupancy, 0.0)

    # Transitions at inner boundaries s = 1 .. L - 1, one source label at a time (O(B·T·C) memory).
    inner = ((t[None, :] >= 1) & (t[None, :] < L[:, None]))[:, :, None]
    trans_grad = torch.empty((B, C, C), dtype=torch.float64, device=dev)
    for cp in range(C):
        x = alpha[:, :T, cp, None] + p.transitions[cp][None, None] + beta - lz
        trans_grad[:, cp] = torch.where(inner, _exp_or_zero(x), 0.0).sum(dim=1)

    dur_grad = torch.empty((B, K, C), dtype=torch.float64, device=dev)
    block_d = min(64, _pow2(K))
    chunk = _pow2(chunk if chunk is not None else DEFAULT_CHUNK)
    _k.duration_grad_kernel[(B, C, triton.cdiv(K, block_d))](
        sw.g, sw.lim, p.durations.contiguous(), sw.cum, log_z.contiguous(), p.lengths.contiguous(), dur_grad,
        T, C, K, B,
        CONSTRAINED=constrained, BLOCK_S=chunk, BLOCK_D=block_d,
    )
    return ForwardBackward(log_z, Marginals.from_masses(occupancy, start_mass, end_mass, trans_grad, dur_grad, L))


def viterbi(p: Problem) -> ViterbiResult:
    """The best segmentation: max-plus sweep, traceback on the device. Ties go to the shorter segment."""
    B, T, C = p.emissions.shape
    K = p.max_duration
    dev = p.emissions.device
    sw = _Sweep([p], constrained=False, semiring="max")
    b = torch.arange(B, device=dev)
    score, last = torch.max(sw.alpha[b, p.lengths] + p.final[None], dim=1)
    ok = torch.isfinite(score).to(torch.int32)
    labels = torch.full((B, T), -1, dtype=torch.int64, device=dev)
    segs = torch.zeros((B, T, 3), dtype=torch.int32, device=dev)
    nseg = torch.zeros(B, dtype=torch.int32, device=dev)
    _k.traceback_kernel[(B,)](sw.best_d, sw.best_prev, last.to(torch.int32).contiguous(), p.lengths.contiguous(),
                              ok, labels, segs, nseg, T, C, BLOCK_K=_pow2(K), num_warps=1)
    table, offsets = _flat_segments(segs, nseg)
    return ViterbiResult(score=score, labels=labels, segment_table=table, segment_offsets=offsets)


def _flat_segments(segs: torch.Tensor, nseg: torch.Tensor):
    """(S, 3) int64 table of all segments in order, and (B + 1,) offsets, from the traceback's
    (B, T, 3) last-first rows and (B,) counts, on their device (one host sync for S)."""
    counts = nseg.to(torch.int64)
    offsets = torch.zeros(counts.shape[0] + 1, dtype=torch.int64, device=segs.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    total = int(offsets[-1].item())
    r = torch.arange(total, device=segs.device)
    b = torch.searchsorted(offsets[1:], r, right=True)
    row = counts[b] - 1 - (r - offsets[b])  # the traceback wrote the last segment first
    return segs[b, row].to(torch.int64), offsets
