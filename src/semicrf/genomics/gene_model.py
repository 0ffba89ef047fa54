"""``semicrf_gene``: a learned semi-CRF whose hidden states carry the gene structure.

The benchmark's other semi-CRF models label classes and know nothing of the
reading frame. This one runs the engine over *states*, sub-classes of the
classes, laid out so that the frame of every exon is carried through the gene
(as in the generating model, :mod:`.oracle`), while every score is learned from
the shared encoder. It is trained by the exact log-likelihood of the gold
*segmentation* (a sum over the hidden states consistent with it; see
"Training"), decoded by Viterbi over the states and reported in the classes, so
every metric of the benchmark applies unchanged.

Two layouts, chosen by the number of classes:

- **synthetic** (C = 3: intergenic, exon, intron; 16 states): ``realistic``
  synthetic content with splice motifs, plus strand only, no start or stop
  codons at gene ends (the generator writes none).
- **real** (C = 5, the importer's classes intergenic, exon+, intron+, exon-,
  intron-; 43 states): both strands, a start codon ATG at the 5' end of every
  coding sequence and a stop codon right after its 3' end, no in-frame stop in
  between. The stop codon convention is the AUGUSTUS GenBank training files'
  (``docs/real_genes.md``): the CDS excludes it, so the importer labels the
  stop codon intergenic, the 3 bases right after the last coding base (+) or
  right before the first (-). FASTA:GFF3 imports, whose stop_codon lines the
  importer merges into the CDS, are refused (:func:`check_metadata`).

States
======

Phases are *absolute*, as in the oracle: an exon of phase ``a`` reads the base at
position t as codon position ``(t - a) mod 3`` on the + strand, ``(a - t) mod 3``
on the - strand (a - gene is read right to left), whatever its start, so the
per-position emission of a state does not depend on where its segment began.
The engine reads left to right on both strands, so a - gene is met from its 3'
end (stop codon side) and left at its 5' end (ATG, read CAT on +).

Per strand (``s`` = + or -), with a = 0, 1, 2 and r = 0, 1, 2:

================== ========= =====================================================================
state              class     meaning
================== ========= =====================================================================
``intergenic``     0         (one state, both strands)
``open(s, a)``     exon s    a gene's leftmost exon piece, after intergenic
``inner(s, a)``    exon s    after an intron, or continuing a piece (runs longer than K), or
                             opening a sequence (free frame)
``close(s, a)``    exon s    a gene's rightmost exon piece, before intergenic (real layout only)
``single(s, a)``   exon s    a whole one-exon gene, intergenic on both sides (real layout only)
``intron(s, a, r)`` intron s an intron piece entered with frame a whose length is r mod 3
================== ========= =====================================================================

Real layout: 1 + 2 x (4 x 3 + 9) = 43 states. Synthetic layout: intergenic,
``open`` and ``inner`` of the + strand (named first_exon(a) and exon(a), as in
the first version) and its 9 introns: 16 states; without codons at gene ends
any exon piece may precede intergenic. With the tail states of long runs (see
"Long runs") 62 and 26, with a long intron's two ends told apart (the default) 98 and 44, and with
the grid cuts of ``--gene-long-runs grid`` 100 and 46.

Grammar (every other transition is -inf), per strand::

    intergenic    -> intergenic, open(a), single(a)
    open(a), inner(a) -> inner(a), close(a), intron(a, r)
    intron(a, r)  -> inner(b), close(b), intron(b, r')       b = (a + r) mod 3
    close(a), single(a) -> intergenic

(synthetic: no close / single, and open, inner -> intergenic). An intron moves
the absolute phase by its length mod 3 on both strands (on -, the exon to the
right is read first: its leftmost base, codon position (b - s') mod 3, precedes
the left exon's rightmost one, which gives b = a + d as on +). Same-kind
continuations cut runs longer than K (intergenic 5 000 bp, introns 3 000 bp at
the synthetic medians; fly introns up to tens of kbp) into pieces without losing
the frame. A sequence may open with any state but open / single (a window that
starts inside a gene has a free frame and no start rule: inner, close, intron)
and end with any state but close / single (a gene cut by the end: its stop or
start codon is not there to check). Given the class segmentation the states are
determined, except the free frame of a gene cut by the sequence's start.

Long runs: tail states
======================

The engine's segments are at most K long, so a run longer than K is a chain of
pieces. Scored by its class's length law, those pieces shape that law: on the
fly's training split (437 loci) at K = 300, 19 to 23 % of the introns are longer than K
and their 1 590 (+) and 2 329 (-) pieces outnumber the 692 and 573 introns of at
most K; a model so trained predicted introns of median 299 and 300 bases
against 66 and 70.5 true (``docs/real_genes.md``, "semicrf_gene on the CPU").
With ``tails`` (``run --gene-long-runs tail``, and ``tail-ends``, the run's default) intergenic and every
``intron(a, r)`` get a *tail* copy with a length law of its own (duration
columns 3 and 4): a run of at most K bases is one segment of the plain state,
scored by its class's law, and a longer one a chain of tail pieces (only a tail
piece continues a run; anything that may precede or follow a plain piece may
precede or follow its tail copy). That is a gene finder's intron model, explicit
lengths up to a bound and a geometric tail beyond it (AUGUSTUS models intron
lengths this way: Stanke and Waack 2003, Bioinformatics 19 Suppl 2), here with
the tail's piece lengths learned too. The gold segmentation marks the pieces of
a run longer than K as tail pieces (:meth:`GeneGrammar.path_log_likelihood`).
Exons keep one copy with ``tail``: their pieces still share the exon law, and
34 % of the fly's exon runs are longer than 300, so that law peaks near K.
``--gene-long-runs tail-ends`` tells a long intron's first and last pieces
from its middle ones: each intron tail state gets two more copies, ``first``
(entered from an exon) and ``last`` (followed by one), 98 and 44 states. A long
intron is then first, middle pieces, last (first -> last when it is two pieces),
an exon enters only an intron's plain or first piece and leaves only its plain
or last piece, and neither end copy opens or ends a sequence (a run the
sequence cuts is middle pieces there). The gold marks a long run's first piece
``first`` unless it opens the sequence and its last ``last`` unless it ends it.
With ``tail`` alone an exon may enter or leave any tail piece, so the junctions
of an intron longer than K, and any intron the model chooses to build of tail
pieces, escape the splice checks below: on the fly's test loci the
counts-started ``tail`` models predicted 30 to 41 introns with non-canonical
ends in about 450, AUGUSTUS none (``docs/real_genes.md``).

Where a tail piece meets the next piece of its own run, the cut is where the gold
happens to put it (equal pieces), not a feature of the bases. With ``run
--gene-inner-cuts free`` (the run's default) such cuts carry none of the class's
start and end scores (the site tables and the encoder's boundary head): a tail
piece takes its class's start score only as a long intron's ``first`` piece and
its end score only as its ``last``; the plain states and every exon keep both.
With ``scored`` (the models trained before 2026-12-05, and ``ModelConfig``'s
default, so that their checkpoints load as trained) every piece's ends carry
them, and training pulls the site tables towards whatever makes the gold's
arbitrary cuts cheap: at the spec's size with ``tail`` (two seeds) the
validation boundary F1 fell from the first epoch on (0.63 to 0.52 over 8)
while the loss kept falling, and the last checkpoint with the first epoch's site
table decoded 0.667 against its own 0.554 (``docs/results.md``, "Round 20").
With ``free`` the junctions of a long intron are scored by its first and last
pieces under ``tail-ends``, and by the exons beside them under ``tail`` (whose
tail pieces then carry no start or end score at all).

``--gene-long-runs grid`` cuts every long run one way. With the tail modes above a run of L > K
bases is any chain of pieces of at most K, about 2^(L/K) cuttings, all of them in Z: the probability
of a labelling is spread over its cuttings, and Viterbi, which compares single paths, reads a long run
by its best cutting alone, a small share of it. Measured on the first four validation sequences of the
spec's data with the counting start (``tail-ends``): log P(gold labelling), summed over its cuttings,
-9.8 nats per sequence (the oracle's -4.2), its best single cutting -57, the best path of all -51; so
Viterbi returned a labelling whose one path beat the gold's best, and cutting a long intron with a
false exon (two shorter runs, fewer cuttings) was cheap (``docs/results.md``, round 22). ``grid`` fixes
the cuts to the multiples of K counted from the sequence's start: the intergenic tail gets first and
last copies as the introns' (46 and 100 states), a first piece (entered from a gene) ends only before a
grid point, a middle piece starts on one and ends before the next (or at the sequence's end), a last
piece starts on one. A run longer than K then has exactly one cutting, so the gold segmentation's
likelihood is the labelling's and the best path is the best labelling's, but for two leaks: a run of at
most K across a grid point may also be a first and a last piece, and an exon run may still be cut
anywhere (exons have no tail states), each cut paying the exon -> exon transition. Its counting start
is a chain of runs (:func:`.gene_priors.grid_start`): a run of at most K scores ``log P(L = d)``, the
pieces of a longer one a geometric tail ``lam * L + beta`` (a tail piece of d bases ``lam * d + beta``,
each continuation ``-beta``, so the grid's place changes nothing), and the transitions are those of
consecutive runs.

``--gene-long-runs tail-exons`` gives the exon kinds a long run is made of
(open, inner, close) tail copies too, with a third tail law (duration column 5):
80 and 32 states. ``--gene-long-runs pieces`` is the first version (16 and 43
states).

Hard rules at gene ends (real layout; -inf start / end scores)
==============================================================

- + strand: ``open`` / ``single`` start at s only if ATG is at s, s+1, s+2 and
  s is codon position 0 (this pins the frame, a = s mod 3); ``close`` /
  ``single`` end at t only if t is codon position 2 and a stop codon (TAA, TAG,
  TGA) is at t+1 .. t+3.
- - strand (the mirror): ``open`` / ``single`` start at s only if s is codon
  position 2 and the bases s-3 .. s-1 read TTA, CTA or TCA (a stop codon on -);
  ``close`` / ``single`` end at t only if t is codon position 0 and t-2 .. t
  read CAT (ATG on -).
- A start or stop codon cut by the sequence's end matches on its visible bases
  (a locus's flank may cut one; the labelling must stay possible).

These are hard, not learned: the AUGUSTUS fly set is filtered to complete genes
and every one of its 586 loci obeys them (tested), gene finders treat them as
hard (a gene without ATG .. stop is not a coding sequence), and as -inf they cost
nothing and prune the search. Splice sites are *not* hard: a hard GT..AG would
need the first piece of every intron and exon told from its continuations
(about twice the states), and 2 of the 1 751 introns of the 486 fly training
loci are non-canonical (+ AT..AG, - AT..AC); they are learned, through the start /
end scores that the encoder computes from the bases around each boundary, and
through the splice penalties below.

Splice sites
============

With tail states a plain intron segment is a whole intron (at most K bases; a
longer one is tail pieces, whose inner ends are no splice sites). With
``splice_sites`` (``run --gene-splice-sites on``, the run's default; it needs the
tail states) a whole intron loses a learned ``softplus(splice_penalty[0])`` when its
first two bases are not the canonical donor and ``softplus(splice_penalty[1])``
when its last two are not the acceptor: GT .. AG on +, CT .. AC as read on +
for a - intron (:data:`.gene_grammar.SPLICE_ENDS`), through the start and end
scores of the plain intron states. Soft, so that the rare non-canonical intron
stays possible; it starts at about 5 nats (:data:`SPLICE_PENALTY_INIT`) and is
learned with the other tables. With ``tail-ends`` a long intron's first piece
pays the donor's penalty at its start and its last piece the acceptor's at its
end, the same two parameters; with ``tail`` the splice sites of tail-piece
introns are left to the encoder's start and end scores.

With ``--gene-long-runs tail-exons`` a plain exon piece is a whole exon as
well (a longer one is tail pieces), and its kind says which side an intron is
on: open and inner exons end where an intron begins (real layout; without
codons, the synthetic layout's open and inner pieces may precede intergenic
too), inner and close exons begin where an intron ends, on either strand since
the engine reads both left to right. Such a whole exon loses a learned
``softplus(exon_splice_penalty[0])`` when the two bases after it are not the
strand's donor (GT on +, CT as read on + for a - gene) and
``softplus(exon_splice_penalty[1])`` when the two before it are not the
acceptor (AG; AC), through its end and start scores. These checks reach the
junctions of the long introns, whose tail pieces have none; where both the
exon and the intron are whole, the junction is checked from both sides, with
the two sides' penalties learned apart. A checkpoint of this configuration
saved before them (2026-12-03) loads with them off.

In-frame stop codons (both layouts)
===================================

An exon piece may not cover the marked base of an in-frame stop: on +, the third
base u + 2 of a stop at u, u+1, u+2 with ``(u - a) mod 3 = 0``; on -, the
leftmost base u of TTA, CTA or TCA at u, u+1, u+2 with codon position 2 at u.
The marked base scores ``-STOP_PENALTY`` (1e4, the oracle's constant:
probability e^-10000, zero in float64) in the emissions (the engine needs finite
emissions), and -inf as a start or end score. A codon cut by the end of a piece
is read from the raw sequence around it: inside an exon run cut into pieces that
is exact; next to an intron it reads the intron's bases, which never forbids a
gene whose introns are canonical -- on +, the last bases of an intron are AG and
no stop begins with G or AG; on -, the first bases (on +) of an intron are CT and
no TTA, CTA, TCA ends in C or CT. A codon split by an intron is not checked (its
stop-freeness is not modelled, as in the oracle).

Parameterisation (tied across the copies of a class)
====================================================

- Emissions: a linear head on the encoder state gives per position C class
  scores ``e_c(t)`` and 3 codon-position scores per strand ``q_j(t)`` (+ and -
  codons are different base patterns, so each strand has its own). Intergenic
  and intron states emit ``e_c(t)``; an exon state of strand s and phase a emits
  ``e_c(t) + q^s_j(t)`` at its codon position j.
- Start / end scores: a linear head (zero-initialised) gives a start and an end
  score per class and position (splice sites, gene boundaries), shared by the
  copies.
- Content and sites, read from the bases themselves beside the encoder's heads:
  a table ``content`` over the 6-mer ending at t adds to each of the emission
  head's columns (a learned order-5 Markov content score per class and, for exon
  bases, per strand and codon position), and a convolution ``sites`` over the
  bases from 20 before to 20 after t (a position weight matrix per class and
  side: donors, acceptors, start and stop codon contexts) adds to the class's
  start and end scores. With ``run --gene-exon-ends all`` (the default) every
  exon end takes them, so each splice junction is scored by the exon's table
  and the intron's; the counting start then counts the donor and acceptor
  twice, and at the spec's size decoded, untrained, 0.204 boundary F1 (50 test
  sequences; ``docs/results.md``, round 21). With ``gene`` an exon's start and
  end take them only at a gene's outer ends: an ``open`` (``single``) state's
  start, a ``close`` (``single``) state's end (none in the synthetic layout,
  which has no closing state); a junction is scored once, by the intron's
  start or end, whose 41-base window reads the exon's side too (untrained:
  0.532). Trained, the two were a tie on the small CPU set, and on the fly
  loci (one seed) ``gene`` lost 0.030 of exon specificity (``docs/real_genes.md``);
  at the spec's size it is not measured yet. With ``run --gene-start counts`` (the default) they,
  the length laws and the class transitions start at the training split's
  counting estimates, a gene finder's generative model (:mod:`.gene_priors`),
  and the emission head at zero; with ``zeros`` at zero. Either way they are
  trained with the rest.
- Transitions: a learned (C, C) class table; a state pair allowed by the grammar
  scores its classes' entry. The three ``exon -> intron(a, r)`` choices share one
  score: they split the intron by length, not by probability.
- Durations: a learned (K, 3) table by kind, intergenic / exon / intron, shared by
  the two strands: which strand a gene lies on is an accident of the assembly,
  not of the gene, so exon+ and exon- lengths follow one law (and each is learned
  from twice the data: 242 + 244 fly genes); ``duration_scores()`` gives it per
  class, (K, C), exon+ and exon- columns equal. An ``intron(a, r)`` state scores
  the intron column on ``d = r`` mod 3 and -inf elsewhere, so for each length
  exactly one residue copy carries the score. Initial / final: learned per class.

Training: the gold segmentation's likelihood
============================================

``log P(gold segmentation) = log Z(pieces) - log Z``. The gold segmentation is
each run of a class as one segment, a run longer than K cut into the fewest
pieces of at most K, as equal as possible (:func:`semicrf.paths.run_pieces`); Z(pieces) sums
over the state paths on exactly these segments (the frames, the intron
residues), a forward over the pieces in PyTorch
(:meth:`GeneGrammar.path_log_likelihood`); Z is the engine's
``log_partition`` over every state path, split runs included. Decoding is
Viterbi, the best single path, and this objective makes that path the thing
trained.

Why not the class labelling's likelihood (:meth:`GeneGrammar.log_likelihood`,
the engine's ``log_likelihood`` with ``label_classes``, which sums over every
way of cutting the gold runs into pieces and was this model's objective until
2026-11-30): a model trained by it learns to spread the mass of a labelling over
its many cuttings, and the single best path then says nothing about the best
labelling. Measured: on an H200 (synthetic realistic content, the recipe of
``docs/results.md``, 1 098 steps) its test boundary F1 was 0.028, with 31 601
predicted segments for 1 759 true; on the CPU (bilstm 64, 300 sequences of
5 kbp, K = 300, 4 epochs) one validation sequence, all intergenic, had
log P(gold labelling) = -3.75 while Viterbi returned a labelling of
log-probability -626 made of pieces of 13 bases; on 10 kbp sequences, 6 174
predicted segments for 191 true, and 223 with this objective (``docs/results.md``,
"The training objective"). ``log_likelihood`` stays, for
asking how probable a labelling is. To ask whether a labelling is allowed,
:meth:`GeneGrammar.constrain` gives the penalised scores, whose Viterbi score
is 0 at zero parameters when it is allowed and <= -1e4 when not, as the tests
do.

Stop codons in training
=======================

Training scores the marked base of an in-frame stop with -50
(:data:`TRAIN_STOP_PENALTY`), decoding with the hard -1e4. The penalty is part
of the prefix sums of the emissions, and 1e4 spreads the Triton sweep's
messages past the 400 nats its linear chunked part holds: its exactness guard
then flagged every row for the exact fallback kernel (counted under the
interpreter on two realistic 800 bp sequences, K = 40: 7 096 to 8 575 flags on
each of the 4 rows; none with the penalties at 50;
``tests/test_triton.py`` checks both). That is the likely cause of the gene
model's slow steps on an H200 (426 ms for the engine's forward and backward at
the spec's size, 16 states; no 55-step epoch of the fly's 43 states in 13
minutes), still to be measured with the new penalty. A path through k in-frame
stops then weighs e^-50k of the same path without them (< 2e-22 for one) in Z;
the gold pieces never cross a stop, and the start and end scores on the marked
base stay -inf.

What is exact and what is approximated
======================================

Exact (given the model): the gold segmentation's likelihood summed over
frames, the training objective, up to e^-50 per in-frame stop in Z (see above);
the likelihood of a class labelling summed over frames and segmentations, and
Viterbi's best *state path*, up to e^-10000 (the hard stop and gold penalties).
Viterbi's classes are the class labelling of the best path, not the most
probable class labelling, which would sum over frames; the frame is pinned by a
gene's first exon, so only genes cut by the sequence's start differ. Not modelled: the exon count (left to the learned transitions),
the right-censored last segment (scored by the same duration table), a codon
split by an intron, UTRs (intergenic), overlapping or nested genes, and a stop
codon's three bases are not forced to be intergenic in decoding (only the bases
are checked; in gold data they always are).

Decoding and training run on any engine backend (``ModelConfig.backend``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from . import gene_priors
from .gene_crf import GeneGrammar, long_run_states
from .gene_grammar import LAYOUTS, STRANDED_CLASSES, NUM_CLASSES
from .gene_priors import CONTENT_KMER, SITE_LEFT, SITE_RIGHT, kmer_index
from .models import ModelConfig, SequenceLabeler, position_mask
from .oracle import STOP_PENALTY

#: The in-frame stop penalty of training (decoding keeps the hard STOP_PENALTY, 1e4). A path through
#: a stop weighs e^-50 (< 2e-22) per stop instead of e^-10000; the engine's linear sweep holds that
#: spread, while 1e4 made its exactness guard send every row to the exact fallback kernel (see the
#: module docstring, "Stop codons in training").
TRAIN_STOP_PENALTY = 50.0

# The class ids and the stop-codon test, for callers of this module.
from .gene_grammar import EXON, INTERGENIC, INTRON, stop_codon_starts  # noqa: F401


class GeneSemiCRFTagger(SequenceLabeler):
    """The shared encoder, emission heads tied across the copies of a class, and :class:`GeneGrammar`.

    features: (B, T, 5) one-hot bases (the model reads the bases themselves for start and stop
    codons, so it asks the runner for one-hot features whatever ``--features`` says).
    """

    feature_kind = "onehot"

    def __init__(self, config: ModelConfig):
        if config.num_classes not in LAYOUTS:
            raise ValueError(f"semicrf_gene labels intergenic, exon and intron (C = 3, synthetic) or the 5 stranded "
                             f"classes of imported genes ({', '.join(STRANDED_CLASSES)}); this data set has "
                             f"C = {config.num_classes}")
        super().__init__(dataclasses.replace(config, input_dim=5))
        self.max_duration = config.max_duration
        C, layout = config.num_classes, LAYOUTS[config.num_classes]
        self.num_codon_scores = 3 * len(layout.strands)
        H = config.hidden_dim
        # C class scores, and 3 codon-position scores per strand (a - gene's codons are other bases' patterns).
        self.emission = nn.Linear(H, C + self.num_codon_scores)
        self.boundary_head = nn.Linear(H, 2 * C)
        # Zero start: the boundary scores begin neutral and are learned from there (as in semicrf).
        nn.init.zeros_(self.boundary_head.weight)
        nn.init.zeros_(self.boundary_head.bias)
        # Content and site tables read from the bases themselves ("Content and sites"); zero until
        # start_from_counts fills them, or training moves them.
        self.content = nn.Embedding(4 ** CONTENT_KMER + 1, C + self.num_codon_scores)
        nn.init.zeros_(self.content.weight)
        self.sites = nn.Conv1d(5, 2 * C, SITE_LEFT + SITE_RIGHT + 1, bias=False)
        nn.init.zeros_(self.sites.weight)
        self.crf = GeneGrammar(config.max_duration, config.backend, C, splice_sites=config.gene_splice_sites,
                               score_cuts=config.gene_inner_cuts == "scored",
                               exon_junctions=config.gene_exon_ends == "all", **long_run_states(config.gene_long_runs))
        tails = (", tail states for runs longer than K" if self.crf.exon_tails else
                 ", tail states for intergenic and intron runs longer than K, their first and last pieces apart, "
                 "cut on a grid of K" if self.crf.grid else
                 ", tail states for intergenic and intron runs longer than K, a long intron's first and last "
                 "pieces apart" if self.crf.intron_ends else
                 ", tail states for intergenic and intron runs longer than K" if self.crf.tails else "")
        if layout.codons:
            self.description = (f"gene-structure semi-CRF: {self.crf.num_states} states (both strands, frame-carrying "
                                f"exons, ATG .. stop, introns by phase and length mod 3{tails}), no in-frame stops, "
                                f"K={config.max_duration}, learned durations shared by the strands")
        else:
            self.description = (f"gene-structure semi-CRF: {self.crf.num_states} states (frame-carrying exons, "
                                f"introns by phase and length mod 3{tails}), no in-frame stops, "
                                f"K={config.max_duration}, learned durations per class")

    def _scores(self, features: Tensor, lengths: Tensor, stop_penalty: float = STOP_PENALTY):
        if features.dim() != 3 or features.shape[-1] != 5:
            raise ValueError(f"semicrf_gene reads base codes from one-hot features (B, T, 5), got shape "
                             f"{tuple(features.shape)}; run it with --features onehot")
        codes = torch.where(position_mask(lengths, features.shape[1]), features.argmax(-1), 4)
        return self.states_from_heads(*self.heads(self.encode(features, lengths)), codes, lengths, stop_penalty)

    def heads(self, hidden: Tensor):
        """The per-position outputs of the encoder state (B, T, H): (class and codon scores (B, T, C + 3 *
        strands), start scores (B, T, C), end scores (B, T, C)), before the states."""
        start, end = self.boundary_head(hidden).chunk(2, dim=-1)
        return self.emission(hidden), start, end

    #: Bases on either side of a position that its state scores read: the codon rules' 3 (and the
    #: splice rules' 2), the content k-mer's CONTENT_KMER - 1 before it, the sites' SITE_LEFT / SITE_RIGHT.
    state_context = max(3, CONTENT_KMER - 1, SITE_LEFT, SITE_RIGHT)

    def states_from_heads(self, emission: Tensor, start: Tensor, end: Tensor, codes: Tensor, lengths: Tensor,
                          stop_penalty: float = STOP_PENALTY, first_position: int = 0, at_end: bool = True):
        """The engine's inputs over the states (:meth:`GeneGrammar.state_scores`) from :meth:`heads` and the
        base codes (B, T), with the content and site scores of the bases added. first_position, at_end: where
        these columns lie in a longer sequence (:meth:`GeneGrammar.state_scores`)."""
        emission = emission + self.content(kmer_index(codes, lengths, CONTENT_KMER))
        site_start, site_end = self.site_scores(codes, lengths)
        class_scores, codon_scores = emission.split([self.config.num_classes, self.num_codon_scores], dim=-1)
        return self.crf.state_scores(class_scores, codon_scores, codes, lengths, start + site_start,
                                     end + site_end, stop_penalty, first_position, at_end)

    def site_scores(self, codes: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(start, end) per class, each (B, T, C): the site tables over the bases from SITE_LEFT before to
        SITE_RIGHT after each position (N, padding and the bases past the ends read as N)."""
        T = codes.shape[1]
        c = torch.where(position_mask(lengths, T), codes.long(), 4)
        c = nn.functional.pad(c, (SITE_LEFT, SITE_RIGHT), value=4)
        x = nn.functional.one_hot(c, 5).to(self.sites.weight.dtype).transpose(1, 2)  # (B, 5, T + window - 1)
        return self.sites(x).transpose(1, 2).chunk(2, dim=-1)

    def start_from_counts(self, split) -> None:
        """Set the content, site, length and transition tables to the training split's counting
        estimates (:mod:`.gene_priors`) and the emission head to zero, so that training starts from a gene
        finder's generative model (``run --gene-start counts``)."""
        layout = self.crf.layout
        C = layout.num_classes
        content, _ = gene_priors.content_log_odds(split, layout)
        # (2, C, window, 4): start / end, class, offset, base; an exon's only at a gene's ends where only those
        # are scored
        sites = gene_priors.site_log_odds(split, C, exon_junctions=self.crf.exon_junctions)
        if self.crf.grid:  # one cutting per run: the run chain's laws (gene_priors.grid_start)
            durations, transitions, initial, final = gene_priors.grid_start(
                split, self.max_duration, C, self.crf.duration_column, self.crf.durations.shape[1])
        else:
            durations = gene_priors.duration_log_laws(split, self.max_duration, self.crf.duration_column,
                                                      self.crf.durations.shape[1])
            transitions, initial, final = gene_priors.transition_log_probabilities(split, C, self.max_duration)
        with torch.no_grad():
            self.content.weight.copy_(torch.as_tensor(content, dtype=self.content.weight.dtype))
            weight = torch.zeros_like(self.sites.weight)  # (2C, 5, window); the N channel stays 0
            weight[:, :4, :] = torch.as_tensor(sites, dtype=weight.dtype).reshape(2 * C, -1, 4).transpose(1, 2)
            self.sites.weight.copy_(weight)
            for table, value in ((self.crf.durations, durations), (self.crf.transitions, transitions),
                                 (self.crf.initial, initial), (self.crf.final, final)):
                table.copy_(torch.as_tensor(value, dtype=table.dtype))
            nn.init.zeros_(self.emission.weight)
            nn.init.zeros_(self.emission.bias)

    def initialise(self, train_split) -> None:
        if self.config.gene_start == "counts":
            self.start_from_counts(train_split)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A checkpoint saved before the content and site tables (2026-12-04) has none: load it with
        # them at zero, so that it scores what it scored when it was saved.
        for name in ("content.weight", "sites.weight"):
            if prefix + name not in state_dict and prefix + "emission.weight" in state_dict:
                state_dict[prefix + name] = torch.zeros_like(self.get_parameter(name))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def loss(self, features, labels, lengths):
        emissions, start, end = self._scores(features, lengths, TRAIN_STOP_PENALTY)
        ll = self.crf.path_log_likelihood(emissions, start, end, labels, lengths)
        return -ll.sum() / lengths.sum()

    def predict(self, features, lengths):
        emissions, start, end = self._scores(features, lengths)
        classes, _ = self.crf.decode(emissions, start, end, lengths)
        classes = classes.cpu().numpy()
        return [classes[i, :n].astype(np.int64) for i, n in enumerate(lengths.tolist())]

    def duration_scores(self):
        return self.crf.class_durations().detach()


def check_metadata(metadata: dict | None) -> None:
    """Refuse data the model's hard constraints would contradict (clear errors, not an infinite loss)."""
    if metadata is None:
        return
    cfg = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    C = metadata.get("num_classes", cfg.get("num_classes"))
    names = metadata.get("class_names")
    if cfg.get("source") == "imported":
        if (C is not None and int(C) != len(STRANDED_CLASSES)) or (names is not None
                                                                   and tuple(names) != STRANDED_CLASSES):
            raise ValueError(f"semicrf_gene reads imported genes in the importer's classes {list(STRANDED_CLASSES)}; "
                             f"this imported data set has C = {C}, classes {names}")
        inputs = cfg.get("inputs") or {}
        kinds = {d.get("kind") for split in inputs.values() if isinstance(split, list) for d in split
                 if isinstance(d, dict)}
        if kinds - {"genbank"}:
            raise ValueError("semicrf_gene expects each CDS to end before its stop codon (the stop codon labelled "
                             "intergenic right after the last exon), as in AUGUSTUS's GenBank training files; this "
                             "data set was imported from FASTA:GFF3, whose stop_codon lines the importer merges "
                             "into the last exon: import GenBank files whose CDS exclude the stop codon, or leave "
                             "semicrf_gene out of --models")
        return
    if C is not None and int(C) != NUM_CLASSES:
        raise ValueError(f"semicrf_gene on synthetic data labels intergenic, exon and intron (C = 3); this data set "
                         f"has C = {C} (UTRs are not modelled)")
    if "content" in cfg and cfg["content"] != "realistic":
        raise ValueError(f"semicrf_gene forbids in-frame stop codons in exons, which only the realistic content "
                         f"guarantees; this data set's content is {cfg['content']!r} (generate it with "
                         f"--content realistic, or leave semicrf_gene out of --models)")
    if cfg.get("splice_motifs") is False:
        raise ValueError("semicrf_gene reads a codon cut by an intron with the intron's last bases, which is "
                         "exact only when introns end in AG; this data set has no splice motifs")


def build_gene_model(config: ModelConfig, metadata: dict | None) -> GeneSemiCRFTagger:
    check_metadata(metadata)
    return GeneSemiCRFTagger(config)
