"""Result types shared by the backends and the public functions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
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

    @classmethod
    def from_masses(cls, occupancy: Tensor, start_mass: Tensor, end_mass: Tensor, transitions: Tensor,
                    durations: Tensor, lengths: Tensor) -> "Marginals":
        """Assemble the marginals; the first segment starts at 0 and the last ends at ``lengths - 1``."""
        rows = torch.arange(start_mass.shape[0], device=start_mass.device)
        return cls(emissions=occupancy, start_scores=start_mass, end_scores=end_mass, transitions=transitions,
                   durations=durations, initial=start_mass[:, 0].clone(), final=end_mass[rows, lengths - 1].clone())


@dataclass
class ForwardBackward:
    """``log_z`` (B,) float64, and the marginals when they were asked for."""

    log_z: Tensor
    marginals: Marginals | None = None


class ViterbiResult:
    """The best segmentation of each sequence.

    - ``score`` (B,) float64: the score of the best path (-inf if no path is possible).
    - ``labels`` (B, T) int64: its per-position labels, -1 past each length.
    - ``segment_table`` (S, 3) int64: every segment of the batch as a row ``(start, end, label)``
      (``end`` exclusive), sequence by sequence, each sequence's segments in order.
    - ``segment_offsets`` (B + 1,) int64: sequence b's segments are the rows
      ``segment_offsets[b]:segment_offsets[b + 1]`` of ``segment_table``.
    - ``segments``: for each sequence a list of ``(start, end, label)`` tuples.

    A backend gives either the tensor form (``segment_table`` and ``segment_offsets``, on any
    device) or the list form; the other form is built from it on first access and kept. Building
    Python tuples costs about a microsecond per segment, which is why the GPU backend only makes
    the tensors.
    """

    def __init__(self, score: Tensor, labels: Tensor, segments: list | None = None,
                 segment_table: Tensor | None = None, segment_offsets: Tensor | None = None):
        if (segment_table is None) != (segment_offsets is None):
            raise ValueError("`segment_table` and `segment_offsets` come together; pass both or neither")
        if segments is None and segment_table is None:
            segments = []
        self.score = score
        self.labels = labels
        self._segments = segments
        self._table = segment_table
        self._offsets = segment_offsets

    @property
    def segments(self) -> list:
        if self._segments is None:
            offsets = self._offsets.tolist()
            rows = [tuple(r) for r in self._table.tolist()]
            self._segments = [rows[offsets[b]:offsets[b + 1]] for b in range(len(offsets) - 1)]
        return self._segments

    @segments.setter
    def segments(self, value: list) -> None:
        self._segments = value
        self._table = self._offsets = None

    def _build_tensors(self) -> None:
        segs = self._segments
        counts = torch.tensor([len(s) for s in segs], dtype=torch.int64)
        offsets = torch.zeros(len(segs) + 1, dtype=torch.int64)
        torch.cumsum(counts, 0, out=offsets[1:])
        flat = [row for s in segs for row in s]
        table = torch.tensor(flat, dtype=torch.int64).reshape(-1, 3)
        dev = self.labels.device if isinstance(self.labels, Tensor) else None
        self._table, self._offsets = table.to(dev), offsets.to(dev)

    @property
    def segment_table(self) -> Tensor:
        if self._table is None:
            self._build_tensors()
        return self._table

    @property
    def segment_offsets(self) -> Tensor:
        if self._offsets is None:
            self._build_tensors()
        return self._offsets

    def __repr__(self) -> str:
        n = self.segment_offsets.shape[0] - 1 if self._segments is None else len(self._segments)
        return f"ViterbiResult(score={self.score!r}, labels={self.labels!r}, segments=<{n} sequences>)"
