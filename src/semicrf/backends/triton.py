"""The Triton backend: the semi-CRF sweeps as GPU kernels (see :mod:`.triton_kernels`).

It runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (slow;
for tests). The forward sweep and the sweep of the reversed problem run in one
launch, one program per (sequence, direction), and store their messages at
every position; the marginals are then assembled from them with O(B·T·C)
tensor operations and one lagged-correlation kernel for the durations. All
arithmetic is float64. Nothing uses float atomics, so results are bitwise
reproducible. Settings (chunk size, warps, far-part tiles and helpers, ...) come in a frozen
:class:`TritonConfig` passed down from the caller; :data:`DEFAULT_CONFIG` holds the measured ones.
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

from .triton_config import (DEFAULT_CONFIG, NEG_INF, PRODUCT_SPREAD, SPREAD_D, SPREAD_G, TritonConfig,  # noqa: F401
                            _pow2, chunk_config, testing_helpers, viterbi_end_block, viterbi_inner_block)


_SM_COUNT: dict = {}
#: Launch shapes (labels, K, compile flags, config) whose rows and helpers need more shared memory
#: than an SM has: they run without helpers.
_NO_HELP: set = set()


def _split_far(n_rows: int, nblk_lookback: int, dev: torch.device, config: TritonConfig) -> bool:
    """Whether this launch of ``n_rows`` rows gets far-part helpers (``split_far`` "auto")."""
    if config.split_far != "auto" or dev.type != "cuda" or nblk_lookback <= config.near_blocks:
        return False
    if dev not in _SM_COUNT:
        _SM_COUNT[dev] = torch.cuda.get_device_properties(dev).multi_processor_count
    return 2 * n_rows <= _SM_COUNT[dev]


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


def _cumsum_t(x: torch.Tensor) -> torch.Tensor:
    """cumsum over dim 1 of (N, T, C), scanned with T innermost (a scan over an outer dim with few
    labels is far slower on the GPU, by measurement: docs/engine_gpu.md)."""
    return torch.cumsum(x.transpose(1, 2).contiguous(), dim=2).transpose(1, 2).contiguous()


def _prefix(em: torch.Tensor) -> torch.Tensor:
    B, T, C = em.shape
    cum = torch.zeros((B, T + 1, C), dtype=torch.float64, device=em.device)
    cum[:, 1:] = _cumsum_t(em)
    return cum


def _label_runs(p: Problem, reverse: bool):
    """(lim (B or 2B, T, C), rem (B, C, T)) int32 from ``p.labels`` (see ``label_runs_kernel``): the
    longest allowed segment of each label ending at each position, for the problem and, with
    ``reverse``, the reversed problem; and the longest that may start at each position. With
    ``p.label_classes`` the kernel's columns are classes, gathered into labels."""
    B, T, C = p.emissions.shape
    dev = p.emissions.device
    lim = torch.empty(((2 if reverse else 1) * B, T, C), dtype=torch.int32, device=dev)
    rem = torch.empty((B, C, T), dtype=torch.int32, device=dev)
    _k.label_runs_kernel[(B,)](p.labels.contiguous(), p.lengths.contiguous(), lim, rem, T, C, p.max_duration, B,
                               REVERSE=reverse, BLOCK_T=256, BLOCK_C=_pow2(C))
    if p.label_classes is not None:  # the runs are of classes; label c reads its class's column
        cls = p.label_classes
        lim, rem = lim[:, :, cls].contiguous(), rem[:, cls, :].contiguous()
    return lim, rem


def _linear_weights(dur: torch.Tensor, trans: torch.Tensor, kp: int | None = None):
    """(w (K, C), dp, dmax (C,), gsp (C,), tlin (2, C, C), tmax (2,)) float64, see ``weights_kernel``;
    with ``kp``, dp is the (kp, BC) padded score table (BC: C rounded up to a power of two; -inf past
    K), else None."""
    K, C = dur.shape
    BC = _pow2(C)
    f64 = dict(dtype=torch.float64, device=dur.device)
    w, dmax, gsp = torch.empty((K, C), **f64), torch.empty(C, **f64), torch.empty(C, **f64)
    dp = torch.empty((kp, BC), **f64) if kp is not None else None
    tlin, tmax = torch.empty((2, C, C), **f64), torch.empty(2, **f64)
    _k.weights_kernel[(1,)](dur.contiguous(), trans.contiguous(), w, w if dp is None else dp, dmax, gsp, tlin, tmax,
                            C, K, kp or K, PADDED=dp is not None, BLOCK_K=max(16, 1024 // BC), BLOCK_C=BC,
                            SPREAD_G=SPREAD_G, PRODUCT_SPREAD=PRODUCT_SPREAD)
    return w, dp, dmax, gsp, tlin, tmax


def _launch_roles(launch, N: int, test_mode: str | None, helped: bool, shape: tuple) -> bool:
    """Runs the chunked sweep's programs through ``launch(grid, help, pid_off)``: the N rows alone,
    or with their N helpers in one launch, or (test modes, under the interpreter) the roles one after
    the other. Returns whether helpers ran."""
    if test_mode is not None:
        launch(N, False, 0)  # the blocks the helpers read
        if test_mode == "staged":
            launch(N, True, N)
        launch(N, True, 0)
    elif helped:
        try:
            launch(2 * N, True, 0)
        except triton.runtime.errors.OutOfResources:
            # The two roles in one program need more shared memory than the SM has (many
            # labels): this shape runs without helpers from now on.
            _NO_HELP.add(shape)
            helped = False
            launch(N, False, 0)
    else:
        launch(N, False, 0)
    return helped


class Sweep:
    """Messages of the sweeps of ``p``, all in one launch (the chunked sweep; rows it flags are redone
    by the exact one). Used by the functions below; public for the benchmark and the tests.

    ``groups`` lists, unconstrained first, whether each group of rows is constrained to
    ``p.labels``; with ``reverse`` a group holds the forward rows ``[0, B)`` and the rows of the
    reversed problem ``[B, 2B)``. :meth:`rows` gives a group's slice of ``alpha``, ``u``, ``g``.
    ``lengths`` (one per row of a group) stops rows early; by default each row runs its sequence.
    """

    def __init__(self, p: Problem, groups=(False,), reverse: bool = False, semiring: str = "log",
                 lengths: torch.Tensor | None = None, config: TritonConfig = DEFAULT_CONFIG):
        if list(groups) != sorted(groups):
            raise ValueError("Sweep: unconstrained groups come first")
        if semiring == "max" and True in groups:
            raise ValueError("Sweep: max-plus sweeps are unconstrained")
        problems = [p, reverse_problem(p)] if reverse else [p]
        B, T, C = p.emissions.shape
        K = p.max_duration
        NR = B * len(problems)
        N = NR * len(groups)
        first_con = list(groups).index(True) if True in groups else len(groups)
        self.B, self.NR, self.first_con = B, NR, first_con
        mx = semiring == "max"
        args, flags, lengths = self._stack_inputs(p, problems, first_con < len(groups), mx, lengths)
        self._allocate_messages(N, T, C, mx, p.emissions.device)
        rows = (T, C, K, B, NR, first_con)
        self.helped = False
        flag = self._chunked_sweep(p, args, flags, rows, lengths, N, config)
        self._flag = None
        if not mx or self.helped:
            # Rows whose scores the linear parts cannot hold, or whose helper gave up (flagged in
            # the kernel), are redone exactly; the launch does not wait for the flags (unflagged
            # rows return at once).
            self._flag = flag
            _k.sweep_kernel[(N,)](*args, lengths, self.alpha, self.u, self.g, self.best_v, flag, *rows, **flags,
                                  BLOCK_C=_pow2(C), BLOCK_K=_pow2(K), num_warps=4 if K * C <= 2048 else 8)

    def _stack_inputs(self, p: Problem, problems: list, constrained: bool, mx: bool, lengths):
        """The kernels' inputs, the directions stacked: (args, flags, lengths). ``args`` = (cum
        (NR, T+1, C), start and end (NR, T, C) or ``cum`` where absent, lim (NR, T, C) int32 (a dummy
        when unconstrained), trans (2, C, C), init (2, C), dur (K, C)); ``flags`` the kernels'
        constexpr switches; lengths (NR,). Keeps ``cum``, ``rem``, ``end``, ``has_end`` and ``trans``
        on ``self`` for the marginals."""
        B, T, C = p.emissions.shape
        dev = p.emissions.device
        cat = lambda xs: torch.cat(xs).contiguous()  # noqa: E731
        self.cum = cat([_prefix(q.emissions) for q in problems])
        has_start = p.start_scores is not None
        has_end = p.end_scores is not None
        # In a reversed problem start and end swap, so present-ness is shared by both directions when
        # both are given; otherwise fill zeros for the missing one.
        if len(problems) == 2 and has_start != has_end:
            has_start = has_end = True
        zeros = torch.zeros((B, T, C), dtype=torch.float64, device=dev)
        start = cat([q.start_scores if q.start_scores is not None else zeros for q in problems]) \
            if has_start else self.cum
        end = cat([q.end_scores if q.end_scores is not None else zeros for q in problems]) \
            if has_end else self.cum
        if constrained:
            lim, self.rem = _label_runs(p, reverse=len(problems) == 2)
        else:
            lim = self.rem = torch.zeros(1, dtype=torch.int32, device=dev)
        trans = torch.stack([q.transitions for q in problems] + [p.transitions] * (2 - len(problems))).contiguous()
        init = torch.stack([q.initial for q in problems] + [p.initial] * (2 - len(problems))).contiguous()
        if lengths is None:
            lengths = torch.cat([p.lengths] * len(problems))
        self.end, self.has_end, self.trans = end, has_end, trans
        args = (self.cum, start, end, lim, trans, init, p.durations.contiguous())
        flags = dict(HAS_START=has_start, HAS_END=has_end, CONSTRAINED=constrained, MAX=mx)
        return args, flags, lengths.contiguous()

    def _allocate_messages(self, N: int, T: int, C: int, mx: bool, dev: torch.device):
        """alpha (N, T+1, C), u and g (N, T, C), all -inf; max-plus: best_v (N, T+1, C), the best
        look-back value of each end (its duration is found afterwards), else an alias of g."""
        f64 = dict(dtype=torch.float64, device=dev)
        self.alpha = torch.full((N, T + 1, C), NEG_INF, **f64)
        self.u = torch.full((N, T, C), NEG_INF, **f64)
        self.g = torch.full((N, T, C), NEG_INF, **f64)
        self.best_v = torch.full((N, T + 1, C), NEG_INF, **f64) if mx else self.g

    def _chunked_sweep(self, p: Problem, args: tuple, flags: dict, rows: tuple, lengths: torch.Tensor, N: int,
                       config: TritonConfig) -> torch.Tensor:
        """The chunked sweep of all N rows, with far-part helpers where they fit; sets ``helped``.
        Returns flag (N,) int32, the rows the exact kernel has to redo."""
        T, C, K = rows[:3]
        mx = flags["MAX"]
        dev = p.emissions.device
        f64 = dict(dtype=torch.float64, device=dev)
        BC = _pow2(C)
        Q, warps = chunk_config(K, config, C, bool(mx))
        nblk = triton.cdiv(T, Q)
        # Max-plus far part: score rows for every look-back distance (d - 1 < (cdiv(K, Q) + 1) Q).
        w, dp, dmax, gsp, tlin, tmax = _linear_weights(p.durations, args[4], (triton.cdiv(K, Q) + 2) * Q if mx else None)
        glin = torch.empty((N, T, C), **f64) if not mx else self.g
        bref = torch.empty((N, nblk, C), **f64) if not mx else self.g
        flag = torch.zeros(N, dtype=torch.int32, device=dev)
        scr = torch.empty((N, 3, Q, BC), **f64)
        qs, tile = Q, config.far_tile_max if mx else config.far_tile
        while qs > 1 and Q * qs * BC > tile * 32 * warps:
            qs //= 2
        test_mode = config._helpers_test
        shape = (C, K, tuple(flags.items()), config)
        helped = test_mode is not None or (
            shape not in _NO_HELP and _split_far(N, triton.cdiv(K, Q) + 1, dev, config))
        depth = nblk + 1 if test_mode is not None else config.near_blocks + 2
        if helped:
            # Test modes: the rows' counters start past every block, so helpers never wait.
            prog = torch.full((N,), (1 << 30) - 1 if test_mode is not None else 0, dtype=torch.int32, device=dev)
            ready = torch.zeros(N, dtype=torch.int32, device=dev)
            ring = torch.empty((N, depth, 3, Q, BC), **f64)
        else:
            prog = ready = ring = flag

        def launch(grid, help_, pid_off):
            _k.chunk_linear_sweep_kernel[(grid,)](
                *args, dp if mx else w, tlin, tmax, dmax, gsp, lengths, self.alpha, self.u, self.g, glin, bref, scr,
                flag, self.best_v, prog, ready, ring,
                *rows, nblk, N, config.near_blocks, depth, config.spin_limit, pid_off,
                **flags, Q=Q, QS=qs, BLOCK_C=BC, NBP=_pow2(triton.cdiv(K, Q) + 2),
                SPREAD_D=SPREAD_D, HELP=help_, FENCE=help_ and not interpreted(), num_warps=warps,
            )

        self.helped = _launch_roles(launch, N, test_mode, helped, shape)
        return flag

    @property
    def method(self) -> str:
        """"chunked" when every row took the chunked sweep, else "exact" (reads the flags: a sync)."""
        if self._flag is not None and bool(self._flag.any()):
            return "exact"
        return "chunked"

    def rows(self, group: int, reverse: bool = False) -> slice:
        """The rows of ``group`` (forward, or with ``reverse`` the reversed problem)."""
        start = group * self.NR + (self.B if reverse else 0)
        return slice(start, start + self.B)


# ln 2 in two parts (the first with trailing zero bits, so k·LN2_HI is exact for |k| < 2^20).
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


def _split_exp(x: torch.Tensor):
    """(m float64, k int32) with exp(x) = m · 2^k, m in [1, 2] (m = 0, k = -2^20 where x = -inf),
    for any float64 x, without overflow; same shape as x, contiguous."""
    x = x.contiguous()
    m = torch.empty_like(x)
    k = torch.empty(x.shape, dtype=torch.int32, device=x.device)
    n = x.numel()
    _k.split_exp_kernel[(triton.cdiv(n, 1024),)](x, m, k, n, LN2_HI=LN2_HI, LN2_LO=LN2_LO, BLOCK=1024)
    return m, k


def forward_alpha(p: Problem, config: TritonConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """(B, T+1, C) float64 ``alpha`` of the unconstrained forward sweep (the log-sum of every path
    over ``[0, e)`` whose last segment has label c); -inf past each length."""
    return Sweep(p, config=config).alpha


def forward_backward(p: Problem, constrained: bool = False, need_marginals: bool = True,
                     config: TritonConfig = DEFAULT_CONFIG) -> ForwardBackward:
    """log Z (or the constrained log Z of ``p.labels``) and, optionally, all marginals (float64)."""
    return _forward_backward(p, (constrained,), need_marginals, config)[0]


def forward_backward_pair(p: Problem, need_marginals: bool = True,
                          config: TritonConfig = DEFAULT_CONFIG) -> tuple[ForwardBackward, ForwardBackward]:
    """``forward_backward`` unconstrained and constrained to ``p.labels``, both sweeps in one launch."""
    return tuple(_forward_backward(p, (False, True), need_marginals, config))


def _forward_backward(p: Problem, groups, need_marginals: bool, config: TritonConfig) -> list[ForwardBackward]:
    B, T, C = p.emissions.shape
    K = p.max_duration
    G = len(groups)
    dev = p.emissions.device
    sw = Sweep(p, groups, reverse=need_marginals, config=config)
    b = torch.arange(B, device=dev)
    L = p.lengths
    log_z = torch.stack([torch.logsumexp(sw.alpha[sw.rows(i)][b, L] + p.final[None], dim=1) for i in range(G)])
    if not need_marginals:
        return [ForwardBackward(z) for z in log_z]

    # Group-major (G·B) batches of the forward and the reversed messages.
    def split(x):
        x = x.view(G, 2, B, *x.shape[1:])
        return x[:, 0].reshape(G * B, *x.shape[3:]), x[:, 1].reshape(G * B, *x.shape[3:])

    LG = L.repeat(G)
    lz = log_z.reshape(G * B)[:, None, None]
    f64 = dict(dtype=torch.float64, device=dev)
    occupancy = torch.empty((G * B, T, C), **f64)
    start_mass = torch.empty((G * B, T, C), **f64)
    end_mass = torch.empty((G * B, T, C), **f64)
    trans_grad = torch.empty((G * B, C, C), **f64)
    BC = _pow2(C)
    _k.marginals_kernel[(G * B,)](
        sw.alpha, sw.u, p.transitions.contiguous(), log_z.reshape(G * B).contiguous(), L.contiguous(),
        occupancy, start_mass, end_mass, trans_grad, T, C, B,
        BLOCK_T=max(16, 1024 // BC), BLOCK_T2=max(2, 2048 // (BC * BC)), BLOCK_C=BC)

    # Duration marginal from f[s] = g[s] and h[e] = g_r[L - e] + cum[L] - log Z (the score of
    # everything from segment end e on), split into mantissas and exponents for the kernel.
    g_f, g_r = split(sw.g)
    e_idx = torch.arange(T + 1, device=dev)
    valid_e = ((e_idx[None, :] >= 1) & (e_idx[None, :] <= LG[:, None]))[:, :, None]
    idx_h = (LG[:, None] - e_idx[None, :]).clamp(min=0, max=T - 1)[:, :, None].expand(-1, -1, C)
    cum_l = sw.cum[:B][b, L].repeat(G, 1)
    h = torch.where(valid_e, torch.gather(g_r, 1, idx_h) + (cum_l[:, None, :] - lz), NEG_INF)
    # Positions innermost: the kernel reads h along e = s + d.
    fm, fk = _split_exp(g_f.transpose(1, 2))
    hm, hk = _split_exp(h.transpose(1, 2))
    wm, wk = _split_exp(p.durations)
    dur_grad = torch.empty((G * B, K, C), dtype=torch.float64, device=dev)
    block_d = min(config.dgrad_block_d, _pow2(K))
    _k.duration_grad_kernel[(G * B, C, triton.cdiv(K, block_d))](
        fm, fk, hm, hk, wm, wk, sw.rem, L.contiguous(), dur_grad, T, C, K, B, sw.first_con,
        CONSTRAINED=sw.first_con < G, BLOCK_S=config.dgrad_positions, BLOCK_D=block_d,
        num_warps=config.dgrad_warps,
    )
    out = []
    for i in range(G):
        r = slice(i * B, (i + 1) * B)
        m = Marginals.from_masses(occupancy[r], start_mass[r], end_mass[r], trans_grad[r], dur_grad[r], L)
        out.append(ForwardBackward(log_z[i], m))
    return out


def viterbi(p: Problem, config: TritonConfig = DEFAULT_CONFIG) -> ViterbiResult:
    """The best segmentation, meeting in the middle: the forward max-plus sweep over the first half
    of each sequence and the sweep of the reversed sequence over the second half run at the same
    time (values only); the best segment across the middle joins them. The arguments of the sweeps'
    maxima are found in parallel, both halves are traced back at the same time on the device, and
    labels are filled from the segments.

    Equal-scoring paths: within each half, ties go to the shorter segment nearer the middle's
    side (as :func:`viterbi_argmax_kernel`); across the middle, to the latest start, then the
    earliest end, then the first label. The reference backend breaks ties from the end of the
    sequence, so where several paths share the best score the two may return different ones.
    """
    B, T, C = p.emissions.shape
    K = p.max_duration
    dev = p.emissions.device
    L = p.lengths
    mid, row_len = viterbi_halves(L)
    sw = Sweep(p, reverse=True, semiring="max", lengths=row_len, config=config)
    inner = viterbi_inner_block(C)
    block_s = 32
    nblk = triton.cdiv(K, block_s)
    val = torch.empty((B, nblk), dtype=torch.float64, device=dev)
    key = torch.empty((B, nblk), dtype=torch.int64, device=dev)
    _k.viterbi_meet_kernel[(B, nblk)](
        sw.g, sw.u, sw.cum, sw.end, p.durations.contiguous(), L.contiguous(), mid.contiguous(), val, key,
        T, C, K, B, HAS_END=sw.has_end, BLOCK_S=block_s, BLOCK_E=inner, BLOCK_C=_pow2(C), num_warps=4)
    score, _ = val.max(dim=1)
    ok = torch.isfinite(score)
    k = torch.where(val == score[:, None], key, torch.iinfo(torch.int64).max).min(dim=1).values
    k = torch.where(ok, k, 0)
    c = k % C
    s = mid - 1 - (k // C) // (K + 1)
    e = mid + (k // C) % (K + 1)

    # Links of both halves (rows b and B + b), then the label before the middle segment on each side.
    link = torch.empty((2 * B, T + 1, C), dtype=torch.int64, device=dev)
    block_e = viterbi_end_block(C)
    _k.viterbi_argmax_kernel[(triton.cdiv(T // 2 + 1, block_e), 2 * B)](
        sw.g, sw.alpha, sw.best_v, p.durations.contiguous(), sw.trans, row_len, link, T, C, K, B,
        BLOCK_E=block_e, BLOCK_D=inner, BLOCK_C=_pow2(C))
    b = torch.arange(B, device=dev)
    tr = sw.trans  # tr[1] = trans transposed: tr[1][c'', c] is c -> c''
    before = torch.argmax(sw.alpha[b, s] + tr[0][:, c].T, dim=1)
    after = torch.argmax(sw.alpha[B + b, L - e] + tr[1][:, c].T, dim=1)
    ends = torch.cat([torch.where(ok, s, 0), torch.where(ok, L - e, 0)]).to(torch.int32).contiguous()
    lasts = torch.cat([before, after]).to(torch.int32).contiguous()
    segs = torch.zeros((2 * B, T, 3), dtype=torch.int32, device=dev)
    nseg = torch.zeros(2 * B, dtype=torch.int32, device=dev)
    _k.traceback_kernel[(2 * B,)](link, lasts, ends, (ends > 0).to(torch.int32), segs, nseg, T, C, num_warps=1)
    table, offsets = _join_halves(segs, nseg, torch.stack([s, e, c], dim=1), L, ok)
    # Labels: each segment's label repeated over its length, sequence after sequence, in order.
    inside = (torch.arange(T, device=dev)[None, :] < L[:, None]) & ok[:, None]
    labels = torch.full((B, T), -1, dtype=torch.int64, device=dev)
    labels[inside] = torch.repeat_interleave(table[:, 2], table[:, 1] - table[:, 0])
    return ViterbiResult(score=score, labels=labels, segment_table=table, segment_offsets=offsets)


def viterbi_halves(lengths: torch.Tensor):
    """The middle ``M = ceil(L / 2)`` of each sequence and the lengths of the Viterbi sweep's 2B rows:
    row b runs [0, M) (its g up to M - 1), row B + b, reversed, up to position L - M."""
    mid = (lengths + 1) // 2
    return mid, torch.cat([mid, lengths - mid + 1]).contiguous()


def _join_halves(segs: torch.Tensor, nseg: torch.Tensor, middle: torch.Tensor, L: torch.Tensor, ok: torch.Tensor):
    """(S, 3) int64 table of all segments in order and (B + 1,) offsets, from the traceback's rows
    (``segs`` (2B, T, 3), ``nseg`` (2B,)): row b holds the first half's segments last first, row
    B + b the second half's in reversed coordinates, first (in sequence order) first; ``middle``
    (B, 3) is the segment across the middle. Sequences without a path (``ok`` false) get none.
    One host sync, for S."""
    B = L.shape[0]
    n1, n2 = nseg[:B].to(torch.int64), nseg[B:].to(torch.int64)
    counts = torch.where(ok, n1 + 1 + n2, 0)
    offsets = torch.zeros(B + 1, dtype=torch.int64, device=segs.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    total = int(offsets[-1].item())
    r = torch.arange(total, device=segs.device)
    b = torch.searchsorted(offsets[1:], r, right=True)
    i = r - offsets[b]
    first = segs[b, (n1[b] - 1 - i).clamp(min=0)].to(torch.int64)
    second = segs[B + b, (i - n1[b] - 1).clamp(min=0)].to(torch.int64)
    Lb = L[b]
    second = torch.stack([Lb - second[:, 1], Lb - second[:, 0], second[:, 2]], dim=1)
    pick = lambda x, y, z: torch.where((i < n1[b])[:, None], x, torch.where((i == n1[b])[:, None], y, z))  # noqa: E731
    return pick(first, middle[b].to(torch.int64), second), offsets


class Configured:
    """The Triton backend with ``config`` instead of :data:`DEFAULT_CONFIG`, for the engine's
    functions, e.g. ``semicrf.log_partition(..., backend=Configured(TritonConfig(chunk=32)))``
    (:func:`semicrf.backends.get` takes it in place of a backend's name)."""

    name = "triton"

    def __init__(self, config: TritonConfig):
        if not isinstance(config, TritonConfig):
            raise TypeError(f"Configured: expected a TritonConfig, got {type(config).__name__}")
        self.config = config

    def __repr__(self) -> str:
        return f"Configured({self.config!r})"

    # Module functions looked up at call time, so that a test's stand-in for one is used here too.
    def check_problem(self, p: Problem) -> None:
        check_problem(p)

    def forward_alpha(self, p: Problem) -> torch.Tensor:
        return forward_alpha(p, config=self.config)

    def forward_backward(self, p: Problem, constrained: bool = False, need_marginals: bool = True) -> ForwardBackward:
        return forward_backward(p, constrained, need_marginals, config=self.config)

    def forward_backward_pair(self, p: Problem, need_marginals: bool = True):
        return forward_backward_pair(p, need_marginals, config=self.config)

    def viterbi(self, p: Problem) -> ViterbiResult:
        return viterbi(p, config=self.config)
