"""One given path: the gold segmentation of a label sequence, and its score.

:func:`run_pieces` turns per-position labels into the segmentation a semi-CRF scores as "the" gold
path: each run of one label is one segment, and a run longer than K, which no single segment can
cover, is cut into the fewest pieces of at most K, as equal as possible (lengths differing by at most
one, the longer first). Equal pieces, not pieces of K and a remainder: a model trained on the latter
learns a peak at K and then prefers runs whose lengths are multiples of K (measured: docs/engine.md).
With ``grid=True`` a run longer than K is cut instead at the positions that are multiples of K (a grid
fixed to the sequence, not to the run), so that a model whose long-run pieces may only meet on that grid
has exactly one way to cut any run (the gene model's ``--gene-long-runs grid``).
:func:`path_score` scores those
segments with the model's tables in plain PyTorch operations (autograd gives the gradients); the
engine's ``segmentation_log_likelihood`` subtracts ``log_partition``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def run_pieces(labels: np.ndarray, lengths: np.ndarray, max_duration: int, grid: bool = False):
    """The gold segmentation of each sequence as padded arrays: (starts, ends (exclusive), labels)
    (B, J) int64 and the number of segments (B,) int64. Padding repeats a sequence's last segment.

    labels: (B, T) integer labels (anything past each length); lengths: (B,) >= 1. grid: cut a run
    longer than K at every multiple of K inside it (pieces of 1 .. K at its two ends, K between them)
    instead of into equal pieces; a run of at most K stays whole either way.
    """
    K = int(max_duration)
    rows = []
    for y, n in zip(labels, np.asarray(lengths).tolist()):
        y = y[:n]
        cuts = np.flatnonzero(np.diff(y)) + 1
        run_s, run_e = np.r_[0, cuts], np.r_[cuts, n]
        pieces = []
        for s, e in zip(run_s.tolist(), run_e.tolist()):
            if grid and e - s > K:
                bounds = np.array([s] + list(range((s // K + 1) * K, e, K)) + [e])
            else:
                m = -(-(e - s) // K)  # the fewest pieces of at most K
                size, extra = divmod(e - s, m)
                bounds = np.cumsum([s] + [size + (i < extra) for i in range(m)])
            pieces += [(a, b, y[s]) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
        rows.append(pieces)
    J = max(len(r) for r in rows)
    out = np.zeros((3, len(rows), J), np.int64)
    for b, r in enumerate(rows):
        out[:, b, :len(r)] = np.array(r, np.int64).T
        out[:, b, len(r):] = np.array(r[-1], np.int64)[:, None]
    return out[0], out[1], out[2], np.array([len(r) for r in rows], np.int64)


def piece_tensors(labels: Tensor, lengths: Tensor, max_duration: int, grid: bool = False):
    """:func:`run_pieces` of tensors, on their device (one host copy of the labels)."""
    arrays = run_pieces(labels.detach().cpu().numpy(), lengths.detach().cpu().numpy(), max_duration, grid)
    return tuple(torch.from_numpy(a).to(labels.device) for a in arrays)


def segment_sums(emissions: Tensor, starts: Tensor, ends: Tensor) -> Tensor:
    """(B, J, C) float64: the emissions summed over each segment [start, end), for every label."""
    B, T, C = emissions.shape
    cum = torch.cat([emissions.new_zeros(B, 1, C, dtype=torch.float64), emissions.to(torch.float64).cumsum(1)], 1)
    at = lambda idx: cum.gather(1, idx[:, :, None].expand(-1, -1, C))  # noqa: E731
    return at(ends) - at(starts)


def path_score(emissions: Tensor, labels: Tensor, lengths: Tensor, transitions: Tensor, durations: Tensor,
               initial: Tensor, final: Tensor, start_scores: Tensor | None, end_scores: Tensor | None) -> Tensor:
    """(B,) float64 score of the gold segmentation (:func:`run_pieces`) of each sequence, in the
    semi-CRF's path score: emissions over each segment, its duration score, its start and end
    scores, the initial and final scores and the transitions between consecutive segments
    (including between the pieces of one run). Differentiable in every floating argument."""
    K = durations.shape[0]
    starts, ends, labs, count = piece_tensors(labels, lengths, K)
    f64 = lambda x: x.to(torch.float64)  # noqa: E731
    live = torch.arange(starts.shape[1], device=starts.device)[None, :] < count[:, None]  # (B, J)
    pick = lambda x: x.gather(2, labs[:, :, None])[:, :, 0]  # noqa: E731  (B, J, C) -> (B, J)
    per = pick(segment_sums(emissions, starts, ends)) + f64(durations)[ends - starts - 1, labs]
    for scores, at in ((start_scores, starts), (end_scores, ends - 1)):
        if scores is not None:
            C = scores.shape[-1]
            per = per + pick(f64(scores).gather(1, at[:, :, None].expand(-1, -1, C)))
    trans = f64(transitions)[labs[:, :-1], labs[:, 1:]]  # (B, J - 1): into segment j + 1
    total = torch.where(live, per, 0.0).sum(1) + torch.where(live[:, 1:], trans, 0.0).sum(1)
    last = labs.gather(1, (count - 1)[:, None])[:, 0]
    return total + f64(initial)[labs[:, 0]] + f64(final)[last]
