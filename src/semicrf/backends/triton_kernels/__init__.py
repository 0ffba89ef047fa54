"""Triton kernels of the semi-CRF engine, one module per stage of the computation.

Notation as in :mod:`semicrf.backends.reference`: ``cum[t, c]`` is the sum of
emissions of label c over ``[0, t)``;

    u[s, c]     = initial[c]                                   (s = 0)
                = logsumexp_{c'} (alpha[s, c'] + trans[c', c])  (s >= 1)
    g[s, c]     = u[s, c] - cum[s, c] + start[s, c]
    alpha[e, c] = cum[e, c] + end[e - 1, c]
                  + logsumexp_{d = 1..min(K, e, lim[e - 1, c])} (dur[d - 1, c] + g[e - d, c])

``lim[t, c]`` is the longest allowed segment of label c ending at t (K when
unconstrained). The max-plus version of the same sweep is Viterbi.

Every sweep kernel runs one program per row ``n`` of a launch. Rows come in groups of ``NR``
(``NR = B`` for one direction, ``2·B`` for the forward and reversed sequences, stacked so the two
directions run at the same time); group ``n // NR`` is unconstrained when it is below ``first_con``,
else constrained to the labels (longest allowed segment ``lim``). Inputs shared by the groups
(``cum``, ``start``, ``end``, ``lim``) are indexed by ``n % NR``, outputs by ``n``: the
unconstrained and the constrained sweeps of ``log_likelihood`` run in one launch.

The modules follow the computation (docs/engine.md, docs/engine_gpu.md):

- :mod:`.prepare`: the mantissa and exponent split, the label runs of the constrained sweeps and the
  linear weights, each one launch.
- :mod:`.exact_sweep`: the recurrence as written, the fallback for the rows the chunked sweep flags.
- The chunked sweep (the default), the look-back split at chunks of Q positions:
  :mod:`.chunk_far` (a chunk's ends and its far part), :mod:`.chunk_handover` (the far part by a
  helper program and the hand-over to the row), :mod:`.chunk_near` (the near part, step by step)
  and :mod:`.chunk_sweep` (the kernel that runs them, and its exactness guard).
- :mod:`.marginals`: the duration, position and transition marginals from the two sweeps.
- :mod:`.viterbi`: the arguments of the maxima, the meeting point of the halves, the traceback.

The kernels are re-exported here: the launchers in :mod:`semicrf.backends.triton` call ``_k.<kernel>``.
"""

from .prepare import label_runs_kernel, split_exp_kernel, weights_kernel
from .exact_sweep import sweep_kernel
from .chunk_sweep import chunk_linear_sweep_kernel
from .marginals import duration_grad_kernel, marginals_kernel
from .viterbi import traceback_kernel, viterbi_argmax_kernel, viterbi_meet_kernel

__all__ = [
    "split_exp_kernel", "label_runs_kernel", "weights_kernel", "sweep_kernel", "chunk_linear_sweep_kernel",
    "duration_grad_kernel", "marginals_kernel", "viterbi_argmax_kernel", "viterbi_meet_kernel", "traceback_kernel",
]
