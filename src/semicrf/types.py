"""Result types shared by the backends and the public functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Marginals:
    """Expected counts of a semi-CRF, i.e. the gradients of log Z (all float64).

    Per sequence (leading dimension B):

    - ``emissions`` (B, T, C): P(label at t is c), the occupancy (zero past each length).
    - ``start_scores`` (B, T, C): P(a segment of label c starts at t).
    - ``end_scores`` (B, T, C): P(a segment of label c ends at t, inclusive).
    - ``transitions`` (B, C, C): expected number of i -> j transitions.
    - ``durations`` (B, K, C): expected number of segments of label c and length d.
    - ``initial``, ``final`` (B, C): P(the first / last segment has label c).
    """

    emissions: Tensor
    start_scores: Tensor
    end_scores: Tensor
    transitions: Tensor
    durations: Tensor
    initial: Tensor
    final: Tensor


@dataclass
class ForwardBackward:
    """``log_z`` (B,) float64, and the marginals when they were asked for."""

    log_z: Tensor
    marginals: Marginals | None = None


@dataclass
class ViterbiResult:
    """The best segmentation of each sequence.

    - ``score`` (B,) float64: the score of the best path (-inf if no path is possible).
    - ``labels`` (B, T) int64: its per-position labels, -1 past each length.
    - ``segments``: for each sequence a list of ``(start, end, label)``, ``end`` exclusive.
    """

    score: Tensor
    labels: Tensor
    segments: list = field(default_factory=list)
