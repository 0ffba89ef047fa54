"""The public functional API: log_partition, log_likelihood, segmentation_log_likelihood, viterbi,
viterbi_blocks, marginals.

Inputs are validated once (``problem.make_problem``), handed to a backend as a
float64 :class:`~semicrf.problem.Problem`, and gradients reach every floating
input through :mod:`torch.autograd`. The backward pass never differentiates
through a loop: a backend returns the marginals of the model, which *are* the
gradients of log Z (forward-backward), and they are saved in the forward pass
when any input needs a gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import backends, paths
from .problem import make_problem
from .types import Marginals, ViterbiResult
from .windows import DEFAULT_WINDOWS, WindowConfig
from .windows import log_partition as windows_log_partition
from .windows import marginals as windows_marginals

__all__ = ["log_partition", "log_likelihood", "segmentation_log_likelihood", "viterbi", "viterbi_blocks", "marginals"]

# Order of the differentiable inputs, matching the fields of Marginals.
_GRAD_FIELDS = ("emissions", "transitions", "durations", "initial", "final", "start_scores", "end_scores")


def _batched_grad(field: str, m: Marginals, go: Tensor, like: Tensor) -> Tensor:
    """Weight per-sequence marginals by the incoming gradient and reduce over the batch."""
    value = getattr(m, field)
    if field in ("emissions", "start_scores", "end_scores"):
        out = value * go[:, None, None]
    else:
        out = (value * go.view(-1, *([1] * (value.dim() - 1)))).sum(dim=0)
    return out.to(dtype=like.dtype, device=like.device)


class _ScoreFunction(torch.autograd.Function):
    """log Z, or log P(labels) = log Z(labels) - log Z, with marginals as gradients."""

    @staticmethod
    def forward(ctx, backend_name, problem, with_labels, *inputs):
        backend = backends.get(backend_name, problem)
        need = any(ctx.needs_input_grad[3:])
        if with_labels:
            full, gold = backends.forward_backward_pair(backend, problem, need)
        else:
            full = backend.forward_backward(problem, constrained=False, need_marginals=need)
        value = full.log_z
        grads = full.marginals
        if with_labels:
            value = gold.log_z - full.log_z
            if need:
                grads = Marginals(**{f: getattr(gold.marginals, f) - getattr(full.marginals, f)
                                     for f in Marginals.__dataclass_fields__})
        ctx.grads = grads
        ctx.inputs_meta = [(x.dtype, x.device) if x is not None else None for x in inputs]
        return value.to(inputs[0].device)

    @staticmethod
    def backward(ctx, grad_out):
        m = ctx.grads
        go = grad_out.to(torch.float64)
        out = []
        for field, meta, needed in zip(_GRAD_FIELDS, ctx.inputs_meta, ctx.needs_input_grad[3:]):
            if meta is None or not needed:
                out.append(None)
                continue
            dtype, device = meta
            like = torch.empty((), dtype=dtype, device=device)
            out.append(_batched_grad(field, m, go.to(getattr(m, field).device), like))
        return (None, None, None, *out)


def _inputs(emissions, transitions, durations, initial, final, start_scores, end_scores):
    return (emissions, transitions, durations, initial, final, start_scores, end_scores)


def _check_windows(windows) -> None:
    if windows is not None and not isinstance(windows, WindowConfig):
        raise ValueError(f"`windows`: a semicrf.windows.WindowConfig, or None for every row in one piece; "
                         f"got {windows!r}")


def log_partition(emissions: Tensor, transitions: Tensor, durations: Tensor, lengths: Tensor | None = None,
                  initial: Tensor | None = None, final: Tensor | None = None,
                  start_scores: Tensor | None = None, end_scores: Tensor | None = None,
                  backend: str = "auto", windows: WindowConfig | None = DEFAULT_WINDOWS) -> Tensor:
    """log Z: the log-sum of the scores of all segmentations of each sequence.

    Args:
        emissions: (B, T, C) score of label c at position t.
        transitions: (C, C); ``transitions[i, j]`` scores a segment of label j after one of label i.
        durations: (K, C); ``durations[d - 1, c]`` scores a segment of label c and length d. K is the
            longest segment.
        lengths: (B,) integer lengths in [1, T] (default: all T). Padding past a length is ignored.
        initial, final: (C,) scores of the first / last segment's label (default 0).
        start_scores, end_scores: (B, T, C) added to a segment of label c that starts at t / whose
            last position is t (default: none).
        backend: "auto", "reference", "cpu" or "triton" ("streaming" is "auto"); what each is and what
            "auto" picks: :mod:`semicrf.backends`.
        windows: how a long sequence is cut into overlapping windows that run side by side when no
            input needs a gradient (:class:`semicrf.windows.WindowConfig`: rows of 2^20 positions and
            more, by default; the result is checked to be the whole row's, see :mod:`semicrf.windows`).
            None: every row in one piece.

    Returns:
        (B,) float64 log Z. Differentiable with respect to every floating input; the gradient of
        log Z is the vector of marginals.
    """
    p = make_problem(emissions, transitions, durations, lengths, initial, final, start_scores, end_scores)
    _check_windows(windows)
    inputs = _inputs(emissions, transitions, durations, initial, final, start_scores, end_scores)
    graded = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs)
    if not graded and windows is not None:
        mod = backends.get(backend, p)
        if hasattr(mod, "forward_alpha") and windows.wanted(p):
            return windows_log_partition(mod, p, windows).to(emissions.device)
    return _ScoreFunction.apply(backend, p, False, *inputs)


def log_likelihood(emissions: Tensor, labels: Tensor, transitions: Tensor, durations: Tensor,
                   lengths: Tensor | None = None, initial: Tensor | None = None, final: Tensor | None = None,
                   start_scores: Tensor | None = None, end_scores: Tensor | None = None,
                   backend: str = "auto", label_classes: Tensor | None = None) -> Tensor:
    """log P(labels): the probability of each per-position label sequence.

    It sums over every segmentation consistent with ``labels`` (a run longer than K is several
    segments of the same label), so it is a normalised probability over all C^L label sequences and
    ``-log_likelihood`` is a loss >= 0 for every input.

    With ``label_classes`` the C labels are hidden states grouped into classes and ``labels`` gives
    the class at each position: the probability of the class sequence, summed over every
    segmentation into labels whose classes match it at every position (an expanded-state model
    trained on class annotations, e.g. exon states by reading frame). Inconsistent segments are
    excluded exactly, and cost nothing in the constrained sweep.

    Args:
        labels: (B, T) integer labels in [0, C) (any value past each length); with
            ``label_classes``, classes: each must be the class of some label.
        label_classes: (C,) integer class of each label, in [0, C), or None (each label its own).
        Other arguments: as :func:`log_partition`.

    Returns:
        (B,) float64 log-likelihoods, differentiable with respect to every floating input.
    """
    p = make_problem(emissions, transitions, durations, lengths, initial, final, start_scores, end_scores, labels,
                     label_classes)
    return _ScoreFunction.apply(backend, p, True,
                                *_inputs(emissions, transitions, durations, initial, final, start_scores, end_scores))


def segmentation_log_likelihood(emissions: Tensor, labels: Tensor, transitions: Tensor, durations: Tensor,
                                lengths: Tensor | None = None, initial: Tensor | None = None,
                                final: Tensor | None = None, start_scores: Tensor | None = None,
                                end_scores: Tensor | None = None, backend: str = "auto") -> Tensor:
    """log P(gold segmentation): the probability of the one path whose segments are the runs of
    ``labels``, a run longer than K cut into the fewest pieces of at most K, as equal as possible
    (:func:`semicrf.paths.run_pieces`).

    :func:`log_likelihood` sums over every way of cutting the runs into segments; this scores one,
    so that the path the model is trained to prefer is the path :func:`viterbi` returns. It is at
    most :func:`log_likelihood` (equal when no other cutting has any weight), and -inf when the
    gold path has a -inf score. The path's score is computed in PyTorch operations from the inputs
    (autograd); log Z by ``backend``.

    Args: as :func:`log_likelihood`, without ``label_classes``.

    Returns:
        (B,) float64, differentiable with respect to every floating input.
    """
    p = make_problem(emissions, transitions, durations, lengths, initial, final, start_scores, end_scores, labels)
    C = p.transitions.shape[0]
    zeros = emissions.new_zeros(C)
    gold = paths.path_score(emissions, p.labels, p.lengths, transitions, durations,
                            zeros if initial is None else initial, zeros if final is None else final,
                            start_scores, end_scores)
    log_z = _ScoreFunction.apply(backend, p, False,
                                 *_inputs(emissions, transitions, durations, initial, final, start_scores, end_scores))
    return gold - log_z.to(gold.device)


def marginals(emissions: Tensor, transitions: Tensor, durations: Tensor, lengths: Tensor | None = None,
              initial: Tensor | None = None, final: Tensor | None = None,
              start_scores: Tensor | None = None, end_scores: Tensor | None = None,
              backend: str = "auto", windows: WindowConfig | None = DEFAULT_WINDOWS) -> Tensor:
    """(B, T, C) float64: P(label at position t is c), zero past each length.

    Arguments as :func:`log_partition`. With ``windows``, a batch with a row of at least its
    ``min_length`` goes through :func:`semicrf.windows.marginals` (long rows cut as there, and the
    marginals assembled so that their roundings do not add up along the row). Not differentiable
    (differentiate :func:`log_partition`).
    """
    p = make_problem(emissions, transitions, durations, lengths, initial, final, start_scores, end_scores)
    _check_windows(windows)
    mod = backends.get(backend, p)
    if windows is not None and hasattr(mod, "forward_alpha") and windows.reaches(p):
        return windows_marginals(mod, p, windows).to(emissions.device)
    return mod.forward_backward(p, constrained=False, need_marginals=True) \
        .marginals.emissions.to(emissions.device)


def viterbi(emissions: Tensor, transitions: Tensor, durations: Tensor, lengths: Tensor | None = None,
            initial: Tensor | None = None, final: Tensor | None = None,
            start_scores: Tensor | None = None, end_scores: Tensor | None = None,
            backend: str = "auto") -> ViterbiResult:
    """The highest-scoring segmentation of each sequence, of any length.

    Arguments as :func:`log_partition`. Returns a :class:`~semicrf.types.ViterbiResult` with
    ``score`` (B,), ``labels`` (B, T) int64 (-1 past each length) and ``segments`` (per sequence a
    list of ``(start, end, label)``, ``end`` exclusive). Ties go to the shorter last segment; the
    Triton backend, which meets in the middle of each sequence, may return another of several
    equally good paths (same score).
    """
    p = make_problem(emissions, transitions, durations, lengths, initial, final, start_scores, end_scores)
    with torch.no_grad():
        result = backends.get(backend, p).viterbi(p)
    result.labels = result.labels.to(emissions.device)
    result.score = result.score.to(emissions.device)
    return result


def viterbi_blocks(blocks, length: int, transitions: Tensor, durations: Tensor, initial: Tensor | None = None,
                   final: Tensor | None = None, threads: int | None = None) -> ViterbiResult:
    """:func:`viterbi` of one sequence whose scores arrive in blocks of consecutive positions, on the CPU:
    for a sequence whose (T, C) score tables do not fit in memory (a chromosome over many states).

    ``blocks``: an iterable (a generator, say) of ``(emissions, start_scores, end_scores)``, each
    (W, C) for the next W positions (``start_scores`` / ``end_scores`` may be None: zero), in order,
    their W summing to ``length``. Parameters as :func:`viterbi`. The path, its score and its ties are
    those of ``viterbi(..., backend="cpu")`` on the whole sequence, bit for bit; memory is about 3 bytes
    per position and label (the traceback's links) beside one block (:mod:`semicrf.backends.cpu_blocks`).
    ``threads``: how many CPU threads share each step's look-back over earlier starts (default
    ``torch.get_num_threads()``); the result does not depend on it.
    Returns a :class:`~semicrf.types.ViterbiResult` of one sequence (B = 1) on the CPU.
    """
    import numpy as np

    from .backends.cpu_blocks import BlockViterbi

    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"`length`: the sequence's number of positions, an int >= 1; got {length!r}")
    length = int(length)
    if threads is None:
        threads = torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"`threads`: how many CPU threads to use, an int >= 1 (or None: torch's count); got {threads!r}")
    host = lambda x: x.cpu() if isinstance(x, Tensor) else x  # noqa: E731
    params = tuple(host(x) for x in (transitions, durations, initial, final))
    C = params[0].shape[-1] if isinstance(params[0], Tensor) else None
    sweep = None
    for i, block in enumerate(blocks):
        done = sweep.done if sweep else 0
        if not isinstance(block, (tuple, list)) or len(block) != 3:
            raise ValueError(f"`blocks`: item {i} must be (emissions, start_scores, end_scores); got "
                             f"{type(block).__name__}{f' of {len(block)}' if isinstance(block, (tuple, list)) else ''}")
        em, start, end = (host(x) for x in block)
        if not isinstance(em, Tensor) or em.dim() != 2 or em.shape[1] != C:
            raise ValueError(f"`blocks`: item {i}'s emissions must be a (W, C) tensor with C = {C} (the "
                             f"transitions' labels); got {tuple(em.shape) if isinstance(em, Tensor) else type(em).__name__}")
        side = [x[None] if isinstance(x, Tensor) and x.dim() == 2 else x for x in (start, end)]
        try:
            p = make_problem(em[None], params[0], params[1], None, params[2], params[3], *side)
        except ValueError as exc:
            raise ValueError(f"`blocks`: item {i} (positions from {done}): {exc}") from exc
        if sweep is None:
            sweep = BlockViterbi(length, *(_c64(getattr(p, n)) for n in ("transitions", "durations", "initial", "final")),
                                 threads=int(threads))
        w = p.emissions.shape[1]
        if done + w > length:
            raise ValueError(f"`blocks`: item {i} brings the positions to {done + w}, past `length` = {length}")
        zeros = np.zeros((w, C)) if p.start_scores is None or p.end_scores is None else None
        sweep.add(_c64(p.emissions[0]), zeros if p.start_scores is None else _c64(p.start_scores[0]),
                  zeros if p.end_scores is None else _c64(p.end_scores[0]))
    if sweep is None or sweep.done != length:
        raise ValueError(f"`blocks`: gave {0 if sweep is None else sweep.done} positions; `length` is {length}")
    score, labels, table = sweep.finish()
    return ViterbiResult(score=torch.tensor([score], dtype=torch.float64), labels=torch.from_numpy(labels)[None],
                         segment_table=torch.from_numpy(table),
                         segment_offsets=torch.tensor([0, table.shape[0]], dtype=torch.int64))


def _c64(x: Tensor):
    return x.detach().to(torch.float64).contiguous().numpy()
