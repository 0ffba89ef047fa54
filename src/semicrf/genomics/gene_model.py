"""``semicrf_gene``: a learned semi-CRF whose hidden states carry the gene structure.

The benchmark's other semi-CRF models label three classes and know nothing of
the reading frame. This one runs the engine over 16 *states*, sub-classes of
the three classes (intergenic, exon, intron), laid out so that the frame of
every exon is carried through the gene exactly as in the generating model
(:mod:`.oracle`), while every score is learned from the shared encoder. It is
trained by the exact log-likelihood of the gold *class* labelling (a sum over
the hidden states consistent with it), decoded by Viterbi over the states and
reported in the classes, so every metric of the benchmark applies unchanged.

Scope of this first version: synthetic data, C = 3, ``realistic`` content with
splice motifs (codon structure, GT..AG introns), plus strand only. No start or
stop codons at gene ends, no UTRs, no reverse strand: those are what real data
needs next (see the README).

States (S = 16)
===============

Phases are *absolute*, as in the oracle: an exon of phase ``a`` reads the base at
position t as codon position ``(t - a) mod 3``, whatever its start, so the
per-position emission of a state does not depend on where its segment began.

==================== ======= =============================================================
state                class   meaning
==================== ======= =============================================================
``intergenic``       0
``first_exon(a)``    1       a gene's first exon (after intergenic), a = 0, 1, 2; may only
                             start at codon position 0, ``(s - a) mod 3 = 0``: the frame
                             starts at a gene's first coding base
``exon(a)``          1       any other exon piece: after an intron, the continuation of an
                             exon run longer than K, or the first segment of a sequence
``intron(a, r)``     2       an intron piece entered with frame ``a`` (the phase of the exon
                             before it) whose length is ``r`` mod 3 (durations ``d = r`` mod 3
                             only), a, r = 0, 1, 2
==================== ======= =============================================================

Grammar (every other transition is -inf)::

    intergenic   -> intergenic, first_exon(a)                       (any a)
    first_exon(a), exon(a) -> exon(a), intron(a, r), intergenic     (any r)
    intron(a, r) -> exon((a + r) mod 3), intron((a + r) mod 3, r')   (any r')

An intron moves the frame by its length mod 3, which its state carries, so the
next exon's phase is exact; the ``-> exon(a)`` / ``-> intron`` self-continuations
let a run longer than K (intergenic 5 000, introns 3 000 bp at the median, K =
1 000 by default) be cut into several segments, as the plain ``semicrf`` model
does, without losing the frame. The first segment may be intergenic, ``exon(a)``
or ``intron(a, r)`` (a window may start inside a gene: its frame is then summed
over); any state may end a sequence. Given the class segmentation, the states
are determined (the first exon's phase by its start, every later phase by the
lengths), except the free frame of a sequence that starts inside a gene.

Parameterisation (tied across the copies of a class)
====================================================

- Emissions: a linear head on the encoder state gives per position 3 class scores
  ``e_c(t)`` and 3 codon-position scores ``q_j(t)``. ``intergenic`` and every
  ``intron`` state emit ``e_c(t)``; ``first_exon(a)`` and ``exon(a)`` emit
  ``e_exon(t) + q_{(t - a) mod 3}(t)``.
- Start / end scores: a linear head (zero-initialised) gives a start and an end
  score per class and position (splice sites, gene boundaries), shared by the
  copies.
- Transitions: a learned (3, 3) class table; a state pair allowed by the grammar
  scores its classes' entry (the intergenic -> intron and intron -> intergenic
  entries are never used). The three ``exon -> intron(a, r)`` choices share one
  score: they split the intron by length, not by probability.
- Durations: a learned (K, 3) class table; an ``intron(a, r)`` state scores the
  intron column on ``d = r`` mod 3 and -inf elsewhere, so for each length exactly
  one residue copy carries the class's score. Initial / final: learned per class.

Hard constraints
================

- Grammar and frame: -inf transitions, -inf durations, -inf start scores (a
  first exon off codon position 0).
- In-frame stop codons: an exon segment of phase ``a`` may not contain the third
  base ``u + 2`` of a stop codon (TAA, TAG, TGA) at ``u, u+1, u+2`` with
  ``(u - a) mod 3 = 0``. The third base scores ``-STOP_PENALTY`` (1e4, the
  oracle's constant: probability e^-10000, zero in float64) in the emissions
  (the engine needs finite emissions), and -inf as a start or end score. A codon
  cut by the end of a segment is read with the bases before the segment: inside
  an exon run cut into pieces that is exact; after an intron it reads the
  intron's last bases, and since no stop codon begins with G or AG this never
  forbids a gene whose introns end in AG, as all synthetic (and nearly all real)
  introns do. The oracle instead refunds codons that start before the segment;
  a refund cannot be exact for a 1-base segment inside the codon (its score
  would be +1e4), which the oracle's 30-bp minimum exon excludes and a learned
  duration table does not.

Training: the gold labelling's likelihood
=========================================

``log P(y) = log Z(y) - log Z``, where Z(y) is the partition function of the same
problem with every state whose class differs from ``y_t`` forbidden at t: -inf
start and end scores there, and ``-GOLD_PENALTY`` (1e4) added to its emission.
A segment of state s is consistent with y iff every position it covers has class
``class(s)``; one that starts or ends at an inconsistent position is -inf, and one
that passes over one pays at least 1e4 per position passed, far beyond what any
learned score can gain back there, so Z(y) is the sum over the consistent state
paths. (Putting a run's whole penalty on its first position instead scores every
segment with finite ends the same; measured on the CPU backend it is no faster,
so the simpler form stays.) Segment boundaries need no constraint: a gold run
may be one segment or several (runs longer than K must be), and each way is one
state path. The class
labellings partition the state paths, so their probabilities sum to one.

What is exact and what is approximated
======================================

Exact (given the model): the likelihood of a class labelling summed over frames
and segmentations; Viterbi's best *state path* (its classes are reported: the
class labelling of the best path, not the most probable class labelling, which
would sum over frames; here the frame is pinned by the first exon's start, so
only sequences starting inside a gene differ). Up to e^-10000: the stop-codon
and gold penalties. Not modelled (approximations of the generating process):
the exon count (left to the learned transitions, as the oracle's geometric
last level), the right-censored last segment (scored by the same duration
table), and a codon split by an intron (its stop-freeness is not checked, as in
the oracle).

Decoding and training run on any engine backend (``ModelConfig.backend``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .models import ModelConfig, SequenceLabeler, position_mask
from .oracle import STOP_PENALTY
from .synthetic import STOP_CODONS

NUM_CLASSES = 3
INTERGENIC, EXON, INTRON = 0, 1, 2
#: Added (negated) to the emission of a state whose class differs from the gold class (see the docstring).
GOLD_PENALTY = 1.0e4
_STOP_IDS = tuple(16 * "ACGT".index(s[0]) + 4 * "ACGT".index(s[1]) + "ACGT".index(s[2]) for s in STOP_CODONS)
NEG_INF = float("-inf")


@dataclass(frozen=True)
class GeneState:
    """One hidden state. kind: ``intergenic``, ``first_exon``, ``exon`` or ``intron``; phase: the
    absolute frame ``a`` (exons: codon position of t is ``(t - a) mod 3``; introns: the frame they
    were entered with); residue: an intron piece's length mod 3."""

    kind: str
    phase: int | None = None
    residue: int | None = None

    @property
    def cls(self) -> int:
        return {"intergenic": INTERGENIC, "first_exon": EXON, "exon": EXON, "intron": INTRON}[self.kind]

    @property
    def name(self) -> str:
        if self.kind == "intergenic":
            return "intergenic"
        if self.kind == "intron":
            return f"intron/a{self.phase}/r{self.residue}"
        return f"{self.kind}/a{self.phase}"


#: The states, in engine order: intergenic, first_exon(0..2), exon(0..2), intron(a, r) (a major).
STATES: tuple[GeneState, ...] = (
    (GeneState("intergenic"),)
    + tuple(GeneState("first_exon", a) for a in range(3))
    + tuple(GeneState("exon", a) for a in range(3))
    + tuple(GeneState("intron", a, r) for a in range(3) for r in range(3))
)
NUM_STATES = len(STATES)
_INDEX = {s: i for i, s in enumerate(STATES)}
#: (S,) int64 class of each state.
STATE_CLASS = np.array([s.cls for s in STATES], dtype=np.int64)
#: Engine columns of first_exon(a), exon(a) and intron(a, r), a = 0, 1, 2 (the layout above).
FIRST_EXON_COLS, EXON_COLS, INTRON_COLS = slice(1, 4), slice(4, 7), slice(7, 16)


def grammar_mask() -> np.ndarray:
    """(S, S) float64: 0 where the grammar allows state j after state i, else -inf."""
    mask = np.full((NUM_STATES, NUM_STATES), NEG_INF)

    def allow(src: GeneState, dst: GeneState) -> None:
        mask[_INDEX[src], _INDEX[dst]] = 0.0

    ig = GeneState("intergenic")
    allow(ig, ig)
    for a in range(3):
        allow(ig, GeneState("first_exon", a))
        for kind in ("first_exon", "exon"):
            src = GeneState(kind, a)
            allow(src, GeneState("exon", a))  # a run cut into pieces keeps its absolute phase
            allow(src, ig)
            for r in range(3):
                allow(src, GeneState("intron", a, r))
        for r in range(3):
            src, b = GeneState("intron", a, r), (a + r) % 3
            allow(src, GeneState("exon", b))
            for r2 in range(3):
                allow(src, GeneState("intron", b, r2))
    return mask


def initial_mask() -> np.ndarray:
    """(S,) 0 for the states that may open a sequence (all but first_exon), else -inf."""
    return np.array([NEG_INF if s.kind == "first_exon" else 0.0 for s in STATES])


def residue_mask(K: int) -> np.ndarray:
    """(K, S) 0, or -inf where an intron(a, r) state has a length d (row d - 1) with d mod 3 != r."""
    d = np.arange(1, K + 1)
    out = np.zeros((K, NUM_STATES))
    for i, s in enumerate(STATES):
        if s.residue is not None:
            out[d % 3 != s.residue, i] = NEG_INF
    return out


def stop_codon_starts(codes: Tensor, lengths: Tensor) -> Tensor:
    """(B, T) bool: a stop codon occupies positions t, t+1, t+2, all inside the sequence.

    codes: (B, T) integer base codes 0..4 (N = 4 is never part of a codon); any value past a length.
    """
    B, T = codes.shape
    out = torch.zeros(B, T, dtype=torch.bool, device=codes.device)
    if T < 3:
        return out
    c = torch.where(position_mask(lengths, T), codes.long(), 4)
    ok = (c[:, :-2] < 4) & (c[:, 1:-1] < 4) & (c[:, 2:] < 4)
    ids = 16 * c[:, :-2] + 4 * c[:, 1:-1] + c[:, 2:]
    stop = torch.zeros_like(ok)
    for sid in _STOP_IDS:
        stop |= ids == sid
    out[:, :-2] = ok & stop
    return out


class GeneGrammar(nn.Module):
    """The learned class-level tables and their expansion to the 16 states.

    Parameters: ``transitions`` (3, 3), ``durations`` (K, 3), ``initial`` and ``final`` (3,).
    The per-sequence scores come from the caller's heads (see :meth:`state_scores`).
    """

    def __init__(self, max_duration: int, backend: str = "auto"):
        super().__init__()
        if isinstance(max_duration, bool) or not isinstance(max_duration, int) or max_duration < 1:
            raise ValueError(f"max_duration must be a positive integer, got {max_duration!r}")
        self.max_duration, self.backend = max_duration, backend
        C = NUM_CLASSES
        self.transitions = nn.Parameter(torch.zeros(C, C))
        self.durations = nn.Parameter(torch.zeros(max_duration, C))
        self.initial = nn.Parameter(torch.zeros(C))
        self.final = nn.Parameter(torch.zeros(C))
        self.register_buffer("state_class", torch.from_numpy(STATE_CLASS), persistent=False)
        self.register_buffer("grammar_mask", torch.from_numpy(grammar_mask()), persistent=False)
        self.register_buffer("initial_mask", torch.from_numpy(initial_mask()), persistent=False)
        self.register_buffer("residue_mask", torch.from_numpy(residue_mask(max_duration)), persistent=False)
        phases = torch.tensor([s.phase if s.phase is not None else 0 for s in STATES])
        self.register_buffer("phase", phases, persistent=False)

    def extra_repr(self) -> str:
        return f"states={NUM_STATES}, max_duration={self.max_duration}, backend={self.backend!r}"

    def state_tables(self) -> dict:
        """The engine's sequence-independent inputs over the states: transitions (S, S), durations
        (K, S), initial (S,), final (S,), in the parameters' dtype."""
        cls = self.state_class
        dtype = self.transitions.dtype
        return dict(
            transitions=self.transitions[cls][:, cls] + self.grammar_mask.to(dtype),
            durations=self.durations[:, cls] + self.residue_mask.to(dtype),
            initial=self.initial[cls] + self.initial_mask.to(dtype),
            final=self.final[cls],
        )

    def state_scores(self, class_scores: Tensor, codon_scores: Tensor, codes: Tensor, lengths: Tensor,
                     start_scores: Tensor | None = None, end_scores: Tensor | None = None):
        """Per-position engine inputs over the states: emissions, start_scores, end_scores, each (B, T, S).

        class_scores: (B, T, 3) ``e_c(t)``. codon_scores: (B, T, 3) ``q_j(t)``, the score of codon
        position j at t (used by exon states only). codes: (B, T) base codes (for stop codons).
        lengths: (B,). start_scores, end_scores: (B, T, 3) per class, or None (zero).
        """
        B, T, _ = class_scores.shape
        cls = self.state_class
        t = torch.arange(T, device=class_scores.device)
        a = torch.arange(3, device=class_scores.device)
        # Codon position of t in an exon of absolute phase a: (t - a) mod 3, independent of the start.
        cpos = (t[:, None] - a[None, :]) % 3  # (T, 3)
        codon = codon_scores.gather(2, cpos[None].expand(B, T, 3))  # (B, T, 3) by phase a
        emissions = class_scores[:, :, cls]
        exon_part = emissions[:, :, EXON_COLS] + codon
        # In-frame stop codons: the codon's third base, for the exon states of that frame.
        stops = stop_codon_starts(codes, lengths)  # (B, T)
        third = torch.zeros(B, T, 3, dtype=torch.bool, device=class_scores.device)
        third[:, 2:] = stops[:, :-2, None] & (cpos[None, :-2] == 0)
        exon_part = exon_part - STOP_PENALTY * third.to(exon_part.dtype)
        emissions = torch.cat([emissions[:, :, :1], exon_part, exon_part, emissions[:, :, INTRON_COLS]], dim=2)

        zeros = emissions.new_zeros(B, T, NUM_STATES)
        start = zeros if start_scores is None else start_scores[:, :, cls]
        end = zeros if end_scores is None else end_scores[:, :, cls]
        hard = torch.zeros(B, T, NUM_STATES, dtype=torch.bool, device=emissions.device)
        hard[:, :, FIRST_EXON_COLS] = third
        hard[:, :, EXON_COLS] = third
        start_hard = hard.clone()
        start_hard[:, :, FIRST_EXON_COLS] |= (cpos != 0)[None]  # the frame starts at a gene's first base
        start = start.masked_fill(start_hard, NEG_INF)
        end = end.masked_fill(hard, NEG_INF)
        return emissions, start, end

    def constrain(self, emissions: Tensor, start: Tensor, end: Tensor, labels: Tensor):
        """The scores restricted to the state paths whose classes are ``labels`` (B, T)."""
        off = self.state_class[None, None, :] != labels[:, :, None]  # (B, T, S)
        return (emissions - GOLD_PENALTY * off.to(emissions.dtype), start.masked_fill(off, NEG_INF),
                end.masked_fill(off, NEG_INF))

    def log_likelihood(self, emissions: Tensor, start: Tensor, end: Tensor, labels: Tensor,
                       lengths: Tensor) -> Tensor:
        """(B,) ``log P(labels)`` summed over the consistent state paths, from :meth:`state_scores`."""
        from .. import log_partition

        tables = self.state_tables()
        labels = torch.where(position_mask(lengths, labels.shape[1]), labels, 0)
        em_y, st_y, en_y = self.constrain(emissions, start, end, labels)
        log_zy = log_partition(em_y, lengths=lengths, start_scores=st_y, end_scores=en_y, backend=self.backend,
                               **tables)
        log_z = log_partition(emissions, lengths=lengths, start_scores=start, end_scores=end, backend=self.backend,
                              **tables)
        return log_zy - log_z

    def decode(self, emissions: Tensor, start: Tensor, end: Tensor, lengths: Tensor):
        """Viterbi over the states: (class labels (B, T) int64, -1 past each length; the engine's
        :class:`~semicrf.types.ViterbiResult` over the states)."""
        from .. import viterbi

        result = viterbi(emissions, lengths=lengths, start_scores=start, end_scores=end, backend=self.backend,
                         **self.state_tables())
        states = result.labels
        classes = torch.where(states >= 0, self.state_class.to(states.device)[states.clamp(min=0)], -1)
        return classes, result


class GeneSemiCRFTagger(SequenceLabeler):
    """The shared encoder, emission heads tied across the copies of a class, and :class:`GeneGrammar`.

    features: (B, T, 5) one-hot bases (the model reads the bases themselves for stop codons, so it
    asks the runner for one-hot features whatever ``--features`` says).
    """

    feature_kind = "onehot"

    def __init__(self, config: ModelConfig):
        if config.num_classes != NUM_CLASSES:
            raise ValueError(f"semicrf_gene labels intergenic, exon and intron (C = 3); this data set has "
                             f"C = {config.num_classes} (UTRs are not modelled yet)")
        super().__init__(dataclasses.replace(config, input_dim=5))
        self.max_duration = config.max_duration
        H = config.hidden_dim
        self.emission = nn.Linear(H, NUM_CLASSES + 3)  # 3 class scores, 3 codon-position scores
        self.boundary_head = nn.Linear(H, 2 * NUM_CLASSES)
        # Zero start: the boundary scores begin neutral and are learned from there (as in semicrf).
        nn.init.zeros_(self.boundary_head.weight)
        nn.init.zeros_(self.boundary_head.bias)
        self.crf = GeneGrammar(config.max_duration, config.backend)
        self.description = (f"gene-structure semi-CRF: {NUM_STATES} states (frame-carrying exons, introns by "
                            f"phase and length mod 3), no in-frame stops, K={config.max_duration}, learned "
                            f"durations per class")

    def _scores(self, features: Tensor, lengths: Tensor):
        if features.dim() != 3 or features.shape[-1] != 5:
            raise ValueError(f"semicrf_gene reads base codes from one-hot features (B, T, 5), got shape "
                             f"{tuple(features.shape)}; run it with --features onehot")
        codes = torch.where(position_mask(lengths, features.shape[1]), features.argmax(-1), 4)
        hidden = self.encode(features, lengths)
        class_scores, codon_scores = self.emission(hidden).split([NUM_CLASSES, 3], dim=-1)
        start, end = self.boundary_head(hidden).chunk(2, dim=-1)
        return self.crf.state_scores(class_scores, codon_scores, codes, lengths, start, end)

    def loss(self, features, labels, lengths):
        emissions, start, end = self._scores(features, lengths)
        ll = self.crf.log_likelihood(emissions, start, end, labels, lengths)
        return -ll.sum() / lengths.sum()

    def predict(self, features, lengths):
        emissions, start, end = self._scores(features, lengths)
        classes, _ = self.crf.decode(emissions, start, end, lengths)
        classes = classes.cpu().numpy()
        return [classes[i, :n].astype(np.int64) for i, n in enumerate(lengths.tolist())]

    def duration_scores(self):
        return self.crf.durations.detach()


def check_metadata(metadata: dict | None) -> None:
    """Refuse data the model's hard constraints would contradict (clear errors, not an infinite loss)."""
    if metadata is None:
        return
    cfg = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    if cfg.get("source") == "imported":
        raise ValueError("semicrf_gene is a first version for synthetic data (plus strand, no start/stop codons); "
                         "this data set was imported from real sequence: leave semicrf_gene out of --models")
    if "content" in cfg and cfg["content"] != "realistic":
        raise ValueError(f"semicrf_gene forbids in-frame stop codons in exons, which only the realistic content "
                         f"guarantees; this data set's content is {cfg['content']!r} (generate it with "
                         f"--content realistic, or leave semicrf_gene out of --models)")
    if cfg.get("splice_motifs") is False:
        raise ValueError("semicrf_gene reads a codon cut by an intron with the intron's last bases, which is "
                         "exact only when introns end in AG; this data set has no splice motifs")
    C = metadata.get("num_classes", cfg.get("num_classes"))
    if C is not None and int(C) != NUM_CLASSES:
        raise ValueError(f"semicrf_gene labels intergenic, exon and intron (C = 3); this data set has C = {C}")


def build_gene_model(config: ModelConfig, metadata: dict | None) -> GeneSemiCRFTagger:
    check_metadata(metadata)
    return GeneSemiCRFTagger(config)
