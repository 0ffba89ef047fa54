"""SemiCRF: a thin nn.Module over the functional core."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import core
from .types import ViterbiResult

DURATION_MODES = ("learned", "uniform")


class SemiCRF(nn.Module):
    """A semi-Markov CRF layer that owns its transition, duration and boundary-label scores.

    Args:
        num_classes: C, the number of segment labels.
        max_duration: K, the longest segment. ``1`` gives a linear-chain CRF.
        duration: ``"learned"`` (a trained (K, C) table of duration scores) or ``"uniform"``
            (durations fixed at zero and not trained: every length up to K scores the same).
        backend: the default backend for every call (see :mod:`semicrf.backends`).

    Parameters: ``transitions`` (C, C) with ``transitions[i, j]`` scoring label j after label i;
    ``durations`` (K, C); ``initial`` and ``final`` (C,). Emissions (B, T, C) and the optional
    boundary scores ``start_scores`` / ``end_scores`` (B, T, C) come from the caller's network.
    """

    def __init__(self, num_classes: int, max_duration: int, duration: str = "learned", backend: str = "auto"):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes`: expected a positive integer, got {num_classes!r}")
        if not isinstance(max_duration, int) or max_duration < 1:
            raise ValueError(f"`max_duration`: expected a positive integer, got {max_duration!r}")
        if duration not in DURATION_MODES:
            raise ValueError(f"`duration`: expected one of {DURATION_MODES}, got {duration!r}")
        self.num_classes = num_classes
        self.max_duration = max_duration
        self.duration = duration
        self.backend = backend
        self.transitions = nn.Parameter(torch.zeros(num_classes, num_classes))
        self.initial = nn.Parameter(torch.zeros(num_classes))
        self.final = nn.Parameter(torch.zeros(num_classes))
        if duration == "learned":
            self.durations = nn.Parameter(torch.zeros(max_duration, num_classes))
        else:
            self.register_buffer("durations", torch.zeros(max_duration, num_classes))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, max_duration={self.max_duration}, "
                f"duration={self.duration!r}, backend={self.backend!r}")

    def _params(self, emissions: Tensor) -> dict:
        return dict(transitions=self.transitions, durations=self.durations, initial=self.initial, final=self.final)

    def nll(self, emissions: Tensor, labels: Tensor, lengths: Tensor | None = None,
            start_scores: Tensor | None = None, end_scores: Tensor | None = None,
            backend: str | None = None, segmentation: bool = False) -> Tensor:
        """(B,) negative log-likelihood of ``labels`` (>= 0), differentiable: of the label sequence
        (:func:`semicrf.log_likelihood`), or with ``segmentation`` of its gold segmentation
        (:func:`semicrf.segmentation_log_likelihood`)."""
        fn = core.segmentation_log_likelihood if segmentation else core.log_likelihood
        return -fn(emissions, labels, lengths=lengths, start_scores=start_scores, end_scores=end_scores,
                   backend=backend or self.backend, **self._params(emissions))

    def log_partition(self, emissions: Tensor, lengths: Tensor | None = None, start_scores: Tensor | None = None,
                      end_scores: Tensor | None = None, backend: str | None = None) -> Tensor:
        """(B,) log Z."""
        return core.log_partition(emissions, lengths=lengths, start_scores=start_scores, end_scores=end_scores,
                                  backend=backend or self.backend, **self._params(emissions))

    def decode(self, emissions: Tensor, lengths: Tensor | None = None, start_scores: Tensor | None = None,
               end_scores: Tensor | None = None, backend: str | None = None) -> ViterbiResult:
        """The best segmentation of each sequence (see :func:`semicrf.viterbi`)."""
        return core.viterbi(emissions, lengths=lengths, start_scores=start_scores, end_scores=end_scores,
                            backend=backend or self.backend, **self._params(emissions))

    def marginals(self, emissions: Tensor, lengths: Tensor | None = None, start_scores: Tensor | None = None,
                  end_scores: Tensor | None = None, backend: str | None = None) -> Tensor:
        """(B, T, C) P(label at t is c)."""
        return core.marginals(emissions, lengths=lengths, start_scores=start_scores, end_scores=end_scores,
                              backend=backend or self.backend, **self._params(emissions))
