"""One long sequence as a batch of overlapping windows: its forward messages, log Z and marginals
computed side by side, and checked.

A sequence's forward sweep is a chain: ``alpha`` at position e reads the K positions before it, so
one long sequence runs step after step however many processors wait (on an H200, ``log_partition``
of one 21 Mbp sequence took 16.1 s, docs/engine_gpu.md). Here a row longer than ``chunk +
warm_up`` is cut into chunks of ``chunk`` positions; window i runs from ``warm_up`` positions
before chunk i to the chunk's end, started as if a sequence began there (every label may start),
and all windows of all rows run as one batch through the backend's forward sweep
(``forward_alpha``), in parallel.

Why the stitched result is the whole row's, and how that is checked. The sweep's state at position
c is its frontier, the alphas of the K positions up to c over all C labels: every later alpha is a
sum of products of frontier entries with the row's own scores, the same positive linear map
whichever window computes it (no start term reaches past K positions into a window). So where
window i's frontier at the start c of its chunk is proportional to the true one, its alphas from
c on are the true ones less one constant. Each boundary is measured: the frontiers of window i - 1
(true, by induction from window 0, which starts where the row does) and of window i at c, by
Hilbert's projective distance -- max minus min over the K·C entries of their log-difference --
with -inf where one is -inf required of the other. A positive linear map never increases that
distance, so when every boundary is within ``tolerance`` (relative to the frontier's magnitude, the
size of the roundings each window's own chain makes) the stitched alphas (window i's plus the
summed log-differences) are the row's with a log-error no larger than the sum of the boundary
distances and the windows' own roundings. A row with a boundary outside it (a model that
remembers its start for longer than ``warm_up``, such as one whose labels never change) is computed
whole instead, with a ``RuntimeWarning`` saying so: the result is always the row's.

The backward messages are the same on the reversed problem; the marginals come from both
(``start_mass[s, c] = exp(u[s, c] + beta[s, c] - log Z)``, ``end_mass`` likewise, the occupancy
their running difference), assembled so that the segments starting and ending at a boundary share
the rounding of its one large number, which the running difference then cancels (:func:`marginals`).
docs/engine.md, "Long rows in windows", measures both against closed forms: log Z and the marginals
closer to the truth than the backends' on one chain.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from .problem import Problem, reverse_problem

NEG_INF = float("-inf")


@dataclass(frozen=True)
class WindowConfig:
    """How :func:`semicrf.log_partition` and :func:`semicrf.marginals` cut long rows.

    min_length: rows at least this long are cut when any is (else nothing is; default 2^20).
    chunk: positions each window adds (default 2^16); at least K.
    warm_up: positions a window runs before its chunk (default: the larger of 4·K and chunk / 4);
        at least K.
    tolerance: the largest projective distance allowed between two windows' frontiers, relative to
        their largest magnitude (at least 1): a window's own alphas carry roundings of about that
        size (docs/engine.md, "Precision at length"), so a smaller one would refuse rounding noise.
    """

    min_length: int = 1 << 20
    chunk: int = 1 << 16
    warm_up: int | None = None
    tolerance: float = 1e-12

    def __post_init__(self):
        for name in ("min_length", "chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"WindowConfig.{name}: a positive int, got {v!r}")
        if self.warm_up is not None and (isinstance(self.warm_up, bool) or not isinstance(self.warm_up, int)
                                         or self.warm_up < 1):
            raise ValueError(f"WindowConfig.warm_up: a positive int or None (automatic), got {self.warm_up!r}")
        if not (isinstance(self.tolerance, (int, float)) and self.tolerance >= 0):
            raise ValueError(f"WindowConfig.tolerance: a number >= 0 (relative), got {self.tolerance!r}")

    def sizes(self, K: int) -> tuple[int, int]:
        """(chunk, warm_up) for longest segment K; refuses a chunk or warm-up shorter than K."""
        warm = self.warm_up if self.warm_up is not None else max(4 * K, self.chunk // 4)
        for name, v in (("chunk", self.chunk), ("warm_up", warm)):
            if v < K:
                raise ValueError(f"WindowConfig.{name} = {v} is shorter than the longest segment K = {K}; "
                                 f"give at least {K}")
        return self.chunk, warm

    def reaches(self, p: Problem) -> bool:
        """Whether a row of ``p`` is at least ``min_length`` long."""
        return int(p.lengths.max()) >= self.min_length

    def wanted(self, p: Problem) -> bool:
        """Whether this cuts ``p``'s rows: one is at least ``min_length`` long and longer than a window."""
        chunk, warm = self.sizes(p.max_duration)
        return self.reaches(p) and int(p.lengths.max()) > chunk + warm


#: What the engine's functions use unless told otherwise.
DEFAULT_WINDOWS = WindowConfig()


@dataclass
class _Plan:
    """The windows of a batch, in row order: each one's row, first position and chunk start, and
    per row the number of windows; ``span`` is every window's padded length."""

    row: Tensor
    ws: Tensor
    cs: Tensor
    length: Tensor
    per_row: list
    span: int

    def firsts(self) -> list:
        """Index of each row's first window."""
        out, n = [], 0
        for count in self.per_row:
            out.append(n)
            n += count
        return out


def _plan(lengths: list, chunk: int, warm: int) -> _Plan:
    row, ws, cs, length, per_row = [], [], [], [], []
    for b, L in enumerate(lengths):
        n = 1 if L <= chunk + warm else -(-L // chunk)
        for i in range(n):
            c0 = i * chunk
            s, e = (max(0, c0 - warm), min(L, c0 + chunk)) if n > 1 else (0, L)
            row.append(b), ws.append(s), cs.append(c0), length.append(e - s)
        per_row.append(n)
    t = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
    return _Plan(t(row), t(ws), t(cs), t(length), per_row, max(length))


def _window_problem(p: Problem, plan: _Plan) -> Problem:
    """The windows as the rows of one problem: every window starts free (initial 0), the row's own
    initial scores moved onto its first window's start scores at position 0."""
    dev = p.emissions.device
    T, C = p.emissions.shape[1:]
    row, ws = plan.row.to(dev), plan.ws.to(dev)
    idx = (ws[:, None] + torch.arange(plan.span, device=dev)[None, :]).clamp(max=T - 1)

    def cut(x):
        return None if x is None else x[row[:, None], idx]

    start = cut(p.start_scores)
    if start is None:
        start = torch.zeros((row.shape[0], plan.span, C), dtype=torch.float64, device=dev)
    start[:, 0] = torch.where((ws == 0)[:, None], start[:, 0] + p.initial[None], start[:, 0])
    return Problem(emissions=cut(p.emissions), transitions=p.transitions, durations=p.durations,
                   initial=torch.zeros_like(p.initial), final=p.final, start_scores=start,
                   end_scores=cut(p.end_scores), lengths=plan.length.to(dev))


def _boundaries(alpha_w: Tensor, plan: _Plan, K: int) -> tuple[Tensor, Tensor]:
    """(shift (n,), distance (n,)): at each window's chunk start c (windows that are not their row's
    first), the log-difference of window w - 1's frontier over window w's (the midpoint of its range)
    and the projective distance between the two over their largest magnitude, at least 1 (inf where
    their -inf entries differ). 0 for a row's first window."""
    dev = alpha_w.device
    ws, cs = plan.ws.to(dev), plan.cs.to(dev)
    n = ws.shape[0]
    shift = torch.zeros(n, dtype=torch.float64, device=dev)
    dist = torch.zeros(n, dtype=torch.float64, device=dev)
    later = torch.nonzero(plan.row[1:] == plan.row[:-1]).flatten().to(dev) + 1  # not a row's first window
    if later.numel():
        t = cs[later, None] + torch.arange(-K + 1, 1, device=dev)[None, :]
        a = alpha_w[(later - 1)[:, None], t - ws[later - 1][:, None]].flatten(1)
        b = alpha_w[later[:, None], t - ws[later][:, None]].flatten(1)
        fa, fb = torch.isfinite(a), torch.isfinite(b)
        same = (fa == fb).all(dim=1) & fa.any(dim=1)
        both = fa & fb
        diff = torch.where(both, a - b, 0.0)
        hi = torch.where(both, diff, NEG_INF).max(dim=1).values
        lo = torch.where(both, diff, float("inf")).min(dim=1).values
        size = torch.where(both, torch.maximum(a.abs(), b.abs()), 0.0).max(dim=1).values.clamp(min=1.0)
        dist[later] = torch.where(same, (hi - lo) / size, float("inf"))
        shift[later] = torch.where(same, (hi + lo) / 2, 0.0)
    return shift, dist


def _row_problem(p: Problem, b: int) -> Problem:
    """Row b of ``p`` alone, cut to its length."""
    L = int(p.lengths[b])

    def one(x):
        return None if x is None else x[b:b + 1, :L]

    return Problem(emissions=one(p.emissions), transitions=p.transitions, durations=p.durations,
                   initial=p.initial, final=p.final, start_scores=one(p.start_scores),
                   end_scores=one(p.end_scores), lengths=p.lengths[b:b + 1])


def forward_alpha(backend, p: Problem, config: WindowConfig = DEFAULT_WINDOWS) -> tuple[Tensor, list]:
    """(alpha (B, T+1, C) float64 of ``p``'s unconstrained forward sweep, -inf past each length;
    per row the largest boundary distance (relative), 0.0 for a row in one window) through ``backend``'s
    ``forward_alpha`` on the windows of ``config`` (module docstring). A row whose boundaries are
    not all within ``config.tolerance`` is computed whole, with a RuntimeWarning."""
    B, T, C = p.emissions.shape
    K = p.max_duration
    chunk, warm = config.sizes(K)
    lengths = [int(x) for x in p.lengths.tolist()]
    plan = _plan(lengths, chunk, warm)
    alpha_w = backend.forward_alpha(_window_problem(p, plan))
    shift, dist = _boundaries(alpha_w, plan, K)
    dev = alpha_w.device
    ws = plan.ws.to(dev)
    alpha = torch.full((B, T + 1, C), NEG_INF, dtype=torch.float64, device=dev)
    worst = []
    for b, (first, count) in enumerate(zip(plan.firsts(), plan.per_row)):
        L = lengths[b]
        sl = slice(first, first + count)
        d = float(dist[sl].max())
        worst.append(d)
        if not d <= config.tolerance:
            warnings.warn(f"semicrf windows: row {b} (length {L}) was computed whole: its windows' frontiers "
                          f"differ by {d:.3g} (relative; tolerance {config.tolerance:g}), the model remembers its start "
                          f"for longer than warm_up = {warm}; give a longer WindowConfig.warm_up, or windows=None",
                          RuntimeWarning, stacklevel=3)
            alpha[b, :L + 1] = backend.forward_alpha(_row_problem(p, b))[0, :L + 1].to(dev)
            continue
        offset = torch.cumsum(shift[sl], 0)
        t = torch.arange(L + 1, device=dev)
        i = (t // chunk).clamp(max=count - 1)  # the window of each position (0 for a row in one window)
        alpha[b, :L + 1] = alpha_w[first + i, t - ws[first + i]] + offset[i][:, None]
    return alpha, worst


def log_partition(backend, p: Problem, config: WindowConfig = DEFAULT_WINDOWS) -> Tensor:
    """(B,) float64 log Z of ``p`` from :func:`forward_alpha`."""
    alpha, _ = forward_alpha(backend, p, config)
    rows = torch.arange(alpha.shape[0], device=alpha.device)
    return torch.logsumexp(alpha[rows, p.lengths.to(alpha.device)] + p.final.to(alpha.device)[None], dim=1)


def _through(x: Tensor, trans: Tensor, budget: int = 1 << 24) -> Tensor:
    """``logsumexp_i (x[..., i] + trans[i, j])`` for x (B, N, C), over blocks of positions of at most
    ``budget`` terms (a (B, N, C, C) table at once would not fit for many labels)."""
    B, N, C = x.shape
    step = max(1, budget // max(1, B * C * C))
    return torch.cat([torch.logsumexp(x[:, i:i + step, :, None] + trans[None, None], dim=2)
                      for i in range(0, N, step)], dim=1)


def _finite_max(x: Tensor) -> Tensor:
    """max over the last dimension of the finite entries, 0 where there is none."""
    m = x.masked_fill(~torch.isfinite(x), NEG_INF).max(dim=-1).values
    return torch.where(torch.isfinite(m), m, 0.0)


def marginals(backend, p: Problem, config: WindowConfig = DEFAULT_WINDOWS) -> Tensor:
    """(B, T, C) float64 P(label at t is c), zero past each length, from the windowed forward sweeps
    of ``p`` and of its reversal."""
    alpha, _ = forward_alpha(backend, p, config)
    alpha_r, _ = forward_alpha(backend, reverse_problem(p), config)
    dev = alpha.device
    B, T, C = p.emissions.shape
    L = p.lengths.to(dev)
    trans, initial, final = (x.to(dev) for x in (p.transitions, p.initial, p.final))
    rows = torch.arange(B, device=dev)
    log_z = torch.logsumexp(alpha[rows, L] + final[None], dim=1)
    t = torch.arange(T + 1, device=dev)
    inside = t[None, :] < L[:, None]  # (B, T+1): s in [0, L)
    # beta[s, c]: every path over [s, L) whose first segment has label c and starts at s.
    beta = torch.gather(alpha_r, 1, (L[:, None] - t[None, :]).clamp(min=0)[:, :, None].expand(-1, -1, C))
    beta = beta.masked_fill(~inside[:, :, None], NEG_INF)
    # At each boundary s the forward side (alpha, u) and the backward side (beta, v) are taken
    # relative to their largest entries A[s] and V[s], and the one large number A + V - log Z is
    # rounded once and shared by the segments that start at s and those that end there: their
    # masses then carry the same rounding, which the occupancy's running difference cancels
    # instead of summing over the row (docs/engine.md, "Long rows in windows").
    is_s0 = (t == 0)[None, :, None]
    fwd = torch.where(is_s0, initial[None, None].expand(B, T + 1, C), alpha)  # u[0] is the initial scores
    A = _finite_max(fwd)
    at_end = (t[None, :] == L[:, None])[:, :, None]
    V = _finite_max(torch.where(at_end, final[None, None].expand(B, T + 1, C), beta))
    a_loc = alpha - A[:, :, None]
    # u[s, c] - A[s]: everything before a segment of label c that starts at s, its transition included.
    u_loc = torch.where(is_s0, fwd - A[:, :, None], _through(a_loc, trans))
    b_loc = beta - V[:, :, None]
    # v[e, c] - V[e]: everything after a segment of label c that ends at e (final at e = L).
    v_loc = torch.where(at_end, final[None, None] - V[:, :, None], _through(b_loc, trans.t()))
    shared = (A + V - log_z[:, None])[:, :, None]
    start_mass = torch.exp(u_loc[:, :T] + b_loc[:, :T] + shared[:, :T]).nan_to_num(0.0)
    end_mass = torch.exp(a_loc[:, 1:] + v_loc[:, 1:] + shared[:, 1:]).nan_to_num(0.0)
    end_mass = end_mass.masked_fill(~inside[:, :T, None], 0.0)
    # The running count of open segments: one difference per position, summed.
    step = start_mass.clone()
    step[:, 1:] -= end_mass[:, :-1]
    occupancy = torch.cumsum(step, 1)
    return occupancy.masked_fill(~inside[:, :T, None], 0.0)
