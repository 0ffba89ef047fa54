"""semicrf: exact, fast semi-Markov conditional random fields for PyTorch.

The functional core: :func:`log_partition`, :func:`log_likelihood`,
:func:`segmentation_log_likelihood`, :func:`viterbi` (:func:`viterbi_blocks` for one sequence whose scores
arrive in blocks) and :func:`marginals`, with backends behind one dispatcher (:mod:`semicrf.backends`), long
rows run as checked windows side by side (:mod:`semicrf.windows`), and a thin module, :class:`SemiCRF`, that
owns the transition, duration and boundary-label parameters.
"""

__version__ = "0.1.0"

from .core import log_likelihood, log_partition, marginals, segmentation_log_likelihood, viterbi, viterbi_blocks
from .module import SemiCRF
from .types import ViterbiResult

__all__ = ["log_partition", "log_likelihood", "segmentation_log_likelihood", "viterbi", "viterbi_blocks", "marginals",
           "SemiCRF", "ViterbiResult", "__version__"]
