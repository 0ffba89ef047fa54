"""The reference backend: the semi-CRF recurrences written plainly in PyTorch.

Every other backend is tested against this one, and this one is tested against
brute-force enumeration. It favours clarity over speed: float64 throughout, a
Python loop over positions, the duration look-back vectorised.

Notation (see docs/engine.md). ``cum[t, c]`` is the sum of emissions of
label c over positions ``[0, t)``. A segment ``[s, e)`` of label c scores
``cum[e, c] - cum[s, c] + durations[e - s - 1, c] + start[s, c] + end[e - 1, c]``.

- ``u[s, c]``: log-sum of everything before a segment of label c that starts at
  s, its incoming transition included (``initial[c]`` when s = 0).
- ``g[s, c] = u[s, c] - cum[s, c] + start[s, c]``.
- ``alpha[e, c] = cum[e, c] + end[e - 1, c] + logsumexp_d (durations[d - 1, c] + g[e - d, c])``,
  the log-sum of all paths over ``[0, e)`` whose last segment has label c.
- ``log Z = logsumexp_c (alpha[L, c] + final[c])``.

The backward quantities are the forward ones of the reversed problem.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..problem import Problem, reverse_problem
from ..types import ForwardBackward, Marginals, ViterbiResult

NEG_INF = float("-inf")


def _zeros_like_seq(p: Problem) -> Tensor:
    return torch.zeros_like(p.emissions)


def run_lengths(labels: Tensor) -> Tensor:
    """(B, T) length of the run of equal labels that ends at each position."""
    run = torch.ones_like(labels)
    for t in range(1, labels.shape[1]):
        run[:, t] = torch.where(labels[:, t] == labels[:, t - 1], run[:, t - 1] + 1, 1)
    return run


def duration_limits(p: Problem, constrained: bool) -> Tensor:
    """(B, T, C): the longest allowed segment of label c that ends at position t.

    Unconstrained, every segment up to K is allowed. Constrained to ``p.labels``,
    a segment of label c may end at t only if ``labels[t] == c`` (with
    ``p.label_classes``: ``labels[t] == label_classes[c]``), and may reach back no
    further than the run of equal labels that ends at t.
    """
    B, T, C = p.emissions.shape
    K = p.max_duration
    if not constrained:
        return torch.full((B, T, C), K, dtype=torch.int64, device=p.emissions.device)
    run = run_lengths(p.labels).clamp(max=K)
    classes = p.label_classes if p.label_classes is not None else torch.arange(C, device=p.labels.device)
    own = p.labels[:, :, None] == classes[None, None, :]  # label c's class is the one at t
    return torch.where(own, run[:, :, None], torch.zeros((), dtype=torch.int64, device=run.device))


def _prefix_sums(p: Problem) -> Tensor:
    B, T, C = p.emissions.shape
    zero = torch.zeros((B, 1, C), dtype=torch.float64, device=p.emissions.device)
    return torch.cat([zero, torch.cumsum(p.emissions, dim=1)], dim=1)


def _forward(p: Problem, limits: Tensor, semiring: str = "log"):
    """The forward sweep. Returns ``alpha`` (B, T+1, C) and ``g`` (B, T, C).

    With ``semiring="max"`` it is the Viterbi sweep and also returns the best
    duration (B, T+1, C) and the best previous label (B, T, C) (-1 at s = 0).
    """
    B, T, C = p.emissions.shape
    K = p.max_duration
    dev = p.emissions.device
    cum = _prefix_sums(p)
    start = p.start_scores if p.start_scores is not None else _zeros_like_seq(p)
    end = p.end_scores if p.end_scores is not None else _zeros_like_seq(p)
    alpha = torch.full((B, T + 1, C), NEG_INF, dtype=torch.float64, device=dev)
    g = torch.full((B, T, C), NEG_INF, dtype=torch.float64, device=dev)
    d_all = torch.arange(1, K + 1, device=dev)
    if semiring == "max":
        best_d = torch.zeros((B, T + 1, C), dtype=torch.int64, device=dev)
        best_prev = torch.full((B, T, C), -1, dtype=torch.int64, device=dev)
    for t in range(T):
        if t == 0:
            u = p.initial.expand(B, C)
        elif semiring == "log":
            u = torch.logsumexp(alpha[:, t, :, None] + p.transitions[None], dim=1)
        else:
            u, arg = torch.max(alpha[:, t, :, None] + p.transitions[None], dim=1)
            best_prev[:, t] = arg
        g[:, t] = u - cum[:, t] + start[:, t]
        e = t + 1
        n = min(K, e)
        window = g[:, e - n:e].flip(1) + p.durations[:n][None]  # index j <-> duration j + 1
        window = window.masked_fill(d_all[:n][None, :, None] > limits[:, t][:, None, :], NEG_INF)
        if semiring == "log":
            best = torch.logsumexp(window, dim=1)
        else:
            best, arg = torch.max(window, dim=1)
            best_d[:, e] = arg + 1
        alpha[:, e] = cum[:, e] + end[:, t] + best
    if semiring == "max":
        return alpha, g, best_d, best_prev
    return alpha, g


def _at_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """x[b, lengths[b]] for x of shape (B, T+1, C)."""
    return x[torch.arange(x.shape[0], device=x.device), lengths]


def _log_z(p: Problem, alpha: Tensor) -> Tensor:
    return torch.logsumexp(_at_lengths(alpha, p.lengths) + p.final[None], dim=1)


def forward_alpha(p: Problem) -> Tensor:
    """(B, T+1, C) float64 ``alpha`` of the unconstrained forward sweep (see the module docstring);
    -inf past each length."""
    alpha = _forward(p, duration_limits(p, False))[0]
    past = torch.arange(alpha.shape[1], device=alpha.device)[None, :] > p.lengths[:, None]
    return alpha.masked_fill(past[:, :, None], NEG_INF)


def forward_backward(p: Problem, constrained: bool = False, need_marginals: bool = True) -> ForwardBackward:
    """log Z (or the constrained log Z of ``p.labels``) and, optionally, all marginals."""
    limits = duration_limits(p, constrained)
    alpha, g = _forward(p, limits)
    log_z = _log_z(p, alpha)
    if not need_marginals:
        return ForwardBackward(log_z)

    B, T, C = p.emissions.shape
    K = p.max_duration
    dev = p.emissions.device
    rp = reverse_problem(p)
    alpha_r, _ = _forward(rp, duration_limits(rp, constrained))
    L = p.lengths
    # beta[s, c]: log-sum of all paths over [s, L) whose first segment has label c, starting at s.
    t = torch.arange(T + 1, device=dev)
    idx = (L[:, None] - t[None, :]).clamp(min=0)  # (B, T+1): L - s
    beta = torch.gather(alpha_r, 1, idx[:, :, None].expand(-1, -1, C))
    beta = beta.masked_fill((t[None, :] >= L[:, None])[:, :, None], NEG_INF)
    # Outgoing score after a segment of label c ends at e: final at e = L, else a transition.
    v = torch.logsumexp(p.transitions[None, None] + beta[:, :, None, :], dim=3)  # (B, T+1, C)
    at_end = (t[None, :] == L[:, None])[:, :, None]
    v = torch.where(at_end, p.final[None, None].expand(B, T + 1, C), v)
    v = v.masked_fill((t[None, :] > L[:, None])[:, :, None], NEG_INF)
    cum = _prefix_sums(p)
    end = p.end_scores if p.end_scores is not None else _zeros_like_seq(p)
    h = torch.full((B, T + 1, C), NEG_INF, dtype=torch.float64, device=dev)
    h[:, 1:] = cum[:, 1:] + end + v[:, 1:]
    lz = log_z[:, None]

    start_mass = torch.zeros((B, T, C), dtype=torch.float64, device=dev)
    end_mass = torch.zeros((B, T, C), dtype=torch.float64, device=dev)
    dur_grad = torch.zeros((B, K, C), dtype=torch.float64, device=dev)
    for d in range(1, min(K, T) + 1):
        # segment [s, s + d) for s = 0 .. T - d
        logp = g[:, : T - d + 1] + p.durations[d - 1][None, None] + h[:, d:] - lz[:, :, None]
        ok = limits[:, d - 1:] >= d
        prob = torch.where(ok & torch.isfinite(logp), torch.exp(logp), torch.zeros((), dtype=torch.float64, device=dev))
        start_mass[:, : T - d + 1] += prob
        end_mass[:, d - 1:] += prob
        dur_grad[:, d - 1] = prob.sum(dim=1)

    starts_so_far = torch.cumsum(start_mass, dim=1)
    ends_before = torch.cumsum(end_mass, dim=1) - end_mass  # segments that ended before t
    occupancy = starts_so_far - ends_before
    inside = p.padding_mask()[:, :, None]
    occupancy = torch.where(inside, occupancy, torch.zeros((), dtype=torch.float64, device=dev))

    # Transitions at every inner boundary s = 1 .. L - 1.
    logt = alpha[:, 1:T, :, None] + p.transitions[None, None] + beta[:, 1:T, None, :] - lz[:, :, None, None]
    tr = torch.where(torch.isfinite(logt), torch.exp(logt), torch.zeros((), dtype=torch.float64, device=dev))
    trans_grad = tr.sum(dim=1)
    return ForwardBackward(log_z, Marginals.from_masses(occupancy, start_mass, end_mass, trans_grad, dur_grad, L))


def viterbi(p: Problem) -> ViterbiResult:
    """The best segmentation, by the max-plus version of the forward sweep."""
    B, T, C = p.emissions.shape
    alpha, g, best_d, best_prev = _forward(p, duration_limits(p, False), semiring="max")
    final_scores = _at_lengths(alpha, p.lengths) + p.final[None]
    score, last = torch.max(final_scores, dim=1)
    labels = torch.full((B, T), -1, dtype=torch.int64)
    best_d, best_prev = best_d.cpu(), best_prev.cpu()
    segments = []
    for b in range(B):
        segs = []
        if torch.isfinite(score[b]):
            e, c = int(p.lengths[b]), int(last[b])
            while e > 0:
                d = int(best_d[b, e, c])
                s = e - d
                segs.append((s, e, c))
                labels[b, s:e] = c
                if s > 0:
                    c = int(best_prev[b, s, c])
                e = s
            segs.reverse()
        segments.append(segs)
    return ViterbiResult(score=score, labels=labels.to(p.emissions.device), segments=segments)
