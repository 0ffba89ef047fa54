"""The benchmark's models: one shared encoder architecture, five output layers.

Every model is a fresh encoder (:func:`semicrf.genomics.encoders.build_encoder`,
the same hyper-parameters for all) followed by its head:

============== ===== ========== ================================================
model          K     durations  head
============== ===== ========== ================================================
softmax        --    --         per-position logits, cross-entropy
pytorch-crf    1     --         emissions + ``torchcrf.CRF`` (transitions and
                                start/end transitions), the external linear CRF
linear         1     --         emissions + :class:`semicrf.SemiCRF` with K = 1
                                (transitions, initial/final scores, and the
                                K = 1 duration row, a per-class bias)
semicrf        K     learned    emissions + segment start/end scores +
                                ``SemiCRF(C, K, "learned")``
semicrf_uniform K    uniform    the same as semicrf with the duration table
                                fixed at zero (every length 1..K scores alike)
oracle         20000 true       no encoder, no training: the generating model
                                as a semi-CRF, Viterbi (see :mod:`.oracle`)
oracle_posterior     true       the same, per-position maximum posterior
                                (not in the default list: forward-backward at
                                K = 20 000 costs several times the Viterbi)
============== ===== ========== ================================================

Both semi-CRF models have the same boundary heads (a linear map of the encoder
state to ``start_scores`` and ``end_scores``, (B, T, C), initialised to zero), so
``semicrf`` vs ``semicrf_uniform`` differs only in the learned duration table.
``linear`` has no boundary heads: with K = 1 every position is a segment and
they would only add a second copy of the emissions.

Losses are the mean negative log-likelihood per position (the sum over the
batch divided by the number of real positions), so curves of different
models and batch compositions share one scale.

New models are added with :func:`register_model`; a model that needs no
training sets ``trainable = False`` and the runner only evaluates it.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .encoders import build_encoder

#: The five learned models of the comparison.
MODEL_NAMES = ("softmax", "pytorch-crf", "linear", "semicrf", "semicrf_uniform")
#: What ``--models all`` (the default) runs: the learned models and the oracle, their ceiling.
DEFAULT_MODELS = MODEL_NAMES + ("oracle",)
#: What the semi-CRF models may be trained to make probable (``ModelConfig.objective``, ``run --objective``).
OBJECTIVES = ("labelling", "segmentation")
#: How semicrf_gene scores the runs longer than K (``ModelConfig.gene_long_runs``, ``run --gene-long-runs``).
GENE_LONG_RUNS = ("tail-ends", "tail", "pieces", "tail-exons", "grid")
#: Where semicrf_gene's content, site, length and transition tables start (``ModelConfig.gene_start``,
#: ``run --gene-start``).
GENE_STARTS = ("counts", "zeros")
#: Whether the cut between two tail pieces of one long run carries the class's start and end scores
#: (``ModelConfig.gene_inner_cuts``, ``run --gene-inner-cuts``).
GENE_INNER_CUTS = ("free", "scored")
#: Where an exon's ends take the exon class's start and end scores (``ModelConfig.gene_exon_ends``,
#: ``run --gene-exon-ends``): only where it meets intergenic sequence, or at splice junctions too.
GENE_EXON_ENDS = ("gene", "all")


@dataclass(frozen=True)
class ModelConfig:
    """What every model is built from.

    input_dim: feature dimensions D. num_classes: C. encoder, hidden_dim,
    num_layers, stem: the shared encoder; recompute: recompute its
    activations in the backward pass. max_duration: K of the semi-CRF models.
    objective: what the semi-CRF models are trained to make probable,
    ``"labelling"`` (:func:`semicrf.log_likelihood`) or ``"segmentation"``
    (:func:`semicrf.segmentation_log_likelihood`).
    backend: the semi-CRF engine backend. mixed_precision: run the encoder
    under bfloat16 autocast on CUDA (the output layers stay in float32).
    gene_long_runs: how semicrf_gene scores an intergenic or intron run
    longer than K, ``"tail-ends"`` (tail states with their own length law, the
    first and last pieces of a long intron told apart; the default), ``"tail"``
    (tail states alone), ``"tail-exons"`` (exon runs too), ``"pieces"`` (its
    pieces scored by the class's law; the first version) or ``"grid"``
    (``"tail-ends"`` with intergenic ends too, the pieces meeting only at the
    multiples of K: one cutting per run).
    gene_splice_sites: semicrf_gene scores a whole intron's ends against the
    canonical GT .. AG (needs a tail mode; with ``"tail-ends"`` a long
    intron's two ends too, with ``"tail-exons"`` a whole exon's intron sides).
    gene_start: where semicrf_gene's content, site, length and transition tables
    start before training: ``"counts"`` (the training split's counting estimates, a gene
    finder's generative model: :mod:`.gene_priors`) or ``"zeros"``.
    gene_inner_cuts: whether a cut inside a run longer than K (between two of its tail pieces) carries the
    class's start and end scores, sites and boundary head: ``"free"`` (only a run's outer ends do) or
    ``"scored"`` (every piece's ends do; the default here, so that a checkpoint saved before the setting
    existed, whose config does not name it, loads as it was trained; ``run`` passes its flag).
    gene_exon_ends: which exon ends take the exon class's start and end scores (sites and boundary head):
    ``"gene"`` (only a gene's outer ends: an exon entered from intergenic sequence at its start, one that
    closes a gene at its end; a splice junction is scored once, by the intron's windows, which read the
    exon side too) or ``"all"`` (every exon end, so that a junction is scored by both classes' tables; the
    default, and what the checkpoints saved before the setting did).
    """

    input_dim: int
    num_classes: int
    encoder: str = "mamba_stub"
    hidden_dim: int = 256
    num_layers: int = 4
    max_duration: int = 1000
    backend: str = "auto"
    mixed_precision: bool = True
    stem: str = "linear"
    recompute: bool = True
    objective: str = "labelling"
    gene_long_runs: str = "tail-ends"
    gene_splice_sites: bool = True
    gene_start: str = "counts"
    gene_inner_cuts: str = "scored"
    gene_exon_ends: str = "all"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.gene_start not in GENE_STARTS:
            raise ValueError(f"gene_start must be one of {GENE_STARTS}, got {self.gene_start!r}")
        if self.gene_inner_cuts not in GENE_INNER_CUTS:
            raise ValueError(f"gene_inner_cuts must be one of {GENE_INNER_CUTS}, got {self.gene_inner_cuts!r}")
        if self.gene_exon_ends not in GENE_EXON_ENDS:
            raise ValueError(f"gene_exon_ends must be one of {GENE_EXON_ENDS}, got {self.gene_exon_ends!r}")
        if self.gene_long_runs not in GENE_LONG_RUNS:
            raise ValueError(f"gene_long_runs must be one of {GENE_LONG_RUNS}, got {self.gene_long_runs!r}")
        if self.gene_splice_sites and self.gene_long_runs == "pieces":
            raise ValueError("gene_splice_sites scores whole introns, which only gene_long_runs='tail' tells from "
                             "pieces: use --gene-long-runs tail, or --gene-splice-sites off with pieces")

    def to_dict(self) -> dict:
        return asdict(self)


def position_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """(B, total) bool, True at the real positions of each row."""
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


class SequenceLabeler(nn.Module):
    """An encoder and an output layer; the runner's common interface.

    features (B, T, D) float32, labels (B, T) int64 (any valid class id past each
    length), lengths (B,) int64.
    """

    trainable = True
    #: K for the duration histograms of a model whose segments are bounded, else None.
    max_duration: int | None = None
    #: The input features the model reads, when it needs a kind of its own (else the run's --features).
    feature_kind: str | None = None
    description = ""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, config.input_dim, config.hidden_dim, config.num_layers,
                                     stem=config.stem, recompute=config.recompute)

    def initialise(self, train_split) -> None:
        """Set whatever the model starts from the training split (before training, never on resume);
        nothing by default."""

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden_dim) encoder states in full precision (float32 under autocast)."""
        use_bf16 = self.config.mixed_precision and features.is_cuda
        with torch.autocast(device_type=features.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            hidden = self.encoder(features, lengths)
        # The output layers run in full precision.
        return hidden.float() if hidden.dtype in (torch.bfloat16, torch.float16) else hidden

    def loss(self, features, labels, lengths) -> torch.Tensor:
        """Scalar mean negative log-likelihood per position."""
        return self.head_loss(self.encode(features, lengths), labels, lengths)

    def predict(self, features, lengths) -> list[np.ndarray]:
        """The predicted labels of each sequence, (L_i,) int64 arrays."""
        return self.head_predict(self.encode(features, lengths), lengths)

    # The output layer alone, on encoder states (B, T, hidden_dim): the step profile times it apart.

    def head_loss(self, hidden, labels, lengths) -> torch.Tensor:
        raise NotImplementedError

    def head_predict(self, hidden, lengths) -> list[np.ndarray]:
        raise NotImplementedError

    def duration_scores(self) -> torch.Tensor | None:
        """(K, C) learned duration log-scores, or None for a model without them."""
        return None


class SoftmaxTagger(SequenceLabeler):
    description = "per-position softmax over the encoder state (cross-entropy)"

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.classifier = nn.Linear(config.hidden_dim, config.num_classes)

    def head_loss(self, hidden, labels, lengths):
        logits = self.classifier(hidden)
        mask = position_mask(lengths, logits.shape[1])
        return F.cross_entropy(logits[mask], labels[mask])

    def head_predict(self, hidden, lengths):
        best = self.classifier(hidden).argmax(-1).cpu().numpy()
        return [best[i, :n] for i, n in enumerate(lengths.tolist())]


class TorchCRFTagger(SequenceLabeler):
    description = "emissions + pytorch-crf linear-chain CRF (transitions, start/end transitions)"
    max_duration = 1

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        try:
            from torchcrf import CRF
        except ImportError as exc:
            raise ValueError(
                "the pytorch-crf model needs the pytorch-crf package: pip install pytorch-crf==0.7.2 "
                "(or leave pytorch-crf out of --models)"
            ) from exc
        self.emission = nn.Linear(config.hidden_dim, config.num_classes)
        self.crf = CRF(config.num_classes, batch_first=True)

    def head_loss(self, hidden, labels, lengths):
        emissions = self.emission(hidden)
        mask = position_mask(lengths, emissions.shape[1])
        return -self.crf(emissions, labels, mask, reduction="sum") / lengths.sum()

    def head_predict(self, hidden, lengths):
        emissions = self.emission(hidden)
        mask = position_mask(lengths, emissions.shape[1])
        crf = self.crf
        if emissions.is_cuda:
            # Its traceback reads one element per step: far cheaper from host memory.
            crf = copy.deepcopy(self.crf).cpu()
            emissions, mask = emissions.cpu(), mask.cpu()
        return [np.asarray(p, dtype=np.int64) for p in crf.decode(emissions, mask)]


class SemiCRFTagger(SequenceLabeler):
    """Emissions (and optionally segment start/end scores) + :class:`semicrf.SemiCRF`."""

    def __init__(self, config: ModelConfig, max_duration: int, duration: str, boundary_heads: bool):
        super().__init__(config)
        from .. import SemiCRF

        self.max_duration = max_duration
        self.emission = nn.Linear(config.hidden_dim, config.num_classes)
        self.boundary_heads = boundary_heads
        if boundary_heads:
            self.boundary_head = nn.Linear(config.hidden_dim, 2 * config.num_classes)
            # Zero start: the boundary scores begin neutral and are learned from there.
            nn.init.zeros_(self.boundary_head.weight)
            nn.init.zeros_(self.boundary_head.bias)
        self.crf = SemiCRF(config.num_classes, max_duration, duration=duration, backend=config.backend)
        self.description = (
            f"emissions{' + segment start/end scores' if boundary_heads else ''} + semicrf.SemiCRF"
            f"(K={max_duration}, durations {duration})"
        )

    def _scores(self, hidden):
        emissions = self.emission(hidden)
        if not self.boundary_heads:
            return emissions, None, None
        start, end = self.boundary_head(hidden).chunk(2, dim=-1)
        return emissions, start, end

    def head_loss(self, hidden, labels, lengths):
        emissions, start, end = self._scores(hidden)
        nll = self.crf.nll(emissions, labels, lengths, start_scores=start, end_scores=end,
                           segmentation=self.config.objective == "segmentation")
        return nll.sum() / lengths.sum()

    def head_predict(self, hidden, lengths):
        emissions, start, end = self._scores(hidden)
        best = self.crf.decode(emissions, lengths, start_scores=start, end_scores=end).labels.cpu().numpy()
        return [best[i, :n] for i, n in enumerate(lengths.tolist())]

    def duration_scores(self):
        return self.crf.durations.detach() if self.crf.duration == "learned" else None


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``build(config, metadata)`` returns a :class:`SequenceLabeler`.

    metadata is the data set's metadata (``dataset.load_metadata``), for models
    that are built from the data's known generating process.
    """

    name: str
    build: Callable[[ModelConfig, dict | None], SequenceLabeler]
    summary: str
    #: Raises ValueError when the model cannot be built for a data set with this metadata.
    check: Callable[[dict | None], None] | None = None


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, build: Callable[[ModelConfig, dict | None], SequenceLabeler], summary: str = "",
                   *, replace: bool = False, check: Callable[[dict | None], None] | None = None) -> None:
    """Add a model to the registry (``replace=True`` to redefine an existing name).

    ``check(metadata)``, when given, raises ValueError for a data set the model cannot be built
    for; the run command calls it for every model before training any (:func:`check_data`).
    """
    if not isinstance(name, str) or not name or "," in name or any(ch.isspace() for ch in name):
        raise ValueError(f"model name must be a non-empty string without commas or spaces, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered; pass replace=True to redefine it")
    _REGISTRY[name] = ModelSpec(name, build, summary, check)


def check_data(names, metadata: dict | None) -> None:
    """Raise ValueError, naming the model, if any of ``names`` cannot be built for this data set."""
    for name in names:
        check = _get(name).check
        if check is not None:
            try:
                check(metadata)
            except ValueError as e:
                raise ValueError(f"model {name}: {e}") from None


def available_models() -> tuple[str, ...]:
    """Registered model names, in registration order."""
    return tuple(_REGISTRY)


def model_summary(name: str) -> str:
    return _get(name).summary


def _get(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build_model(name: str, config: ModelConfig, metadata: dict | None = None) -> SequenceLabeler:
    """A new, untrained model ``name`` (see the module docstring)."""
    model = _get(name).build(config, metadata)
    model.model_name = name
    return model


def parse_model_list(text: str) -> list[str]:
    """``"all"`` or a comma-separated list of model names -> names in the order given."""
    if text is None or text.strip() in ("", "all"):
        return list(DEFAULT_MODELS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"--models: unknown model(s) {unknown}; choose from {', '.join(_REGISTRY)} or 'all'")
    if len(set(names)) != len(names):
        raise ValueError(f"--models: each model may appear once, got {names}")
    if not names:
        raise ValueError("--models: give at least one model name, or 'all'")
    return names


def _oracle_generator(metadata: dict | None):
    from .oracle import config_from_metadata

    if metadata is None:
        raise ValueError("the oracle model is built from the data set's metadata (its generating model); "
                         "none was given")
    return config_from_metadata(metadata)


def _build_oracle(config: ModelConfig, metadata: dict | None, method: str):
    from .oracle import OracleTagger

    return OracleTagger(config, _oracle_generator(metadata), method=method)


register_model("softmax", lambda cfg, meta: SoftmaxTagger(cfg), "position-wise baseline, no structure")
register_model("pytorch-crf", lambda cfg, meta: TorchCRFTagger(cfg), "external linear CRF (pytorch-crf 0.7.2)")
register_model("linear", lambda cfg, meta: SemiCRFTagger(cfg, 1, "learned", boundary_heads=False),
               "linear CRF from this engine (K = 1)")
register_model("semicrf", lambda cfg, meta: SemiCRFTagger(cfg, cfg.max_duration, "learned", boundary_heads=True),
               "semi-CRF, learned durations")
register_model("semicrf_uniform",
               lambda cfg, meta: SemiCRFTagger(cfg, cfg.max_duration, "uniform", boundary_heads=True),
               "semi-CRF, durations fixed uniform (ablation)")
register_model("oracle", lambda cfg, meta: _build_oracle(cfg, meta, "viterbi"),
               "Bayes-optimal reference: the true generating model, Viterbi (no training)", check=_oracle_generator)
register_model("oracle_posterior", lambda cfg, meta: _build_oracle(cfg, meta, "posterior"),
               "the true generating model, per-position maximum posterior (no training)", check=_oracle_generator)


def _build_gene(config: ModelConfig, metadata: dict | None):
    from .gene_model import build_gene_model  # imported here: gene_model builds on this module

    return build_gene_model(config, metadata)


def _check_gene(metadata: dict | None) -> None:
    from .gene_model import check_metadata

    check_metadata(metadata)


register_model("semicrf_gene", _build_gene,
               "gene-structure semi-CRF: frame-carrying exon/intron states, no in-frame stops (realistic C = 3; "
               "imported C = 5: both strands, ATG .. stop)",
               check=_check_gene)
