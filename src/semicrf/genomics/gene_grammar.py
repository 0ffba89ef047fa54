"""The gene grammar of :mod:`.gene_model`: its states, which transitions it allows, and codon tests.

Two layouts (:data:`LAYOUTS`, by the data set's number of classes): the synthetic one (C = 3, one
strand, 16 states; 26 with the tail states of long runs) and the real one (C = 5, both strands,
ATG .. stop, 43 states; 62 with tails). Everything here
is fixed structure (masks over states, where codons start); the learned scores are in
:class:`.gene_crf.GeneGrammar`. The design is explained in :mod:`.gene_model`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import position_mask
from .synthetic import STOP_CODONS

# The synthetic layout's classes (C = 3); the real layout's are gene_structures.STRANDED_CLASSES (C = 5).
NUM_CLASSES = 3
INTERGENIC, EXON, INTRON = 0, 1, 2
#: Classes of the real layout: intergenic, exon+, intron+, exon-, intron-.
STRANDED_CLASSES = ("intergenic", "exon+", "intron+", "exon-", "intron-")
#: Added (negated) to the emission of a state whose class differs from the gold class (see the docstring).
GOLD_PENALTY = 1.0e4
NEG_INF = float("-inf")
_BASE = {b: i for i, b in enumerate("ACGT")}
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A"}


def reverse_complement(seq: str) -> str:
    return "".join(_COMPLEMENT[b] for b in reversed(seq))


def _codon_id(codon: str) -> int:
    return 16 * _BASE[codon[0]] + 4 * _BASE[codon[1]] + _BASE[codon[2]]


#: Codons as read on the + strand, left to right: a stop of a + gene; a stop / start of a - gene.
STOP_PLUS = tuple(STOP_CODONS)
STOP_MINUS = tuple(reverse_complement(c) for c in STOP_CODONS)  # TTA, CTA, TCA
START_PLUS, START_MINUS = "ATG", reverse_complement("ATG")  # CAT
#: An intron's canonical ends as read on the + strand, left to right: (first two bases, last two bases).
#: + introns GT .. AG; - introns, reverse-complemented, CT .. AC.
SPLICE_ENDS = {"+": ("GT", "AG"), "-": (reverse_complement("AG"), reverse_complement("GT"))}


@dataclass(frozen=True)
class Layout:
    """Which gene grammar: the classes, the strands, and whether genes begin and end with codons."""

    num_classes: int
    strands: tuple[str, ...]
    codons: bool  # a start codon opens and a stop codon follows every coding sequence (real data)

    def exon_class(self, strand: str) -> int:
        return 1 if strand == "+" else 3

    def intron_class(self, strand: str) -> int:
        return 2 if strand == "+" else 4


#: Synthetic data: 3 classes, + strand, no start / stop codons (the generator writes none): 16 states.
SYNTHETIC = Layout(3, ("+",), False)
#: Real data (the importer's 5 stranded classes): both strands, start and stop codons: 43 states.
REAL = Layout(5, ("+", "-"), True)
LAYOUTS = {3: SYNTHETIC, 5: REAL}


@dataclass(frozen=True)
class GeneState:
    """One hidden state.

    kind: ``intergenic``, or an exon piece: ``open`` (entered from intergenic), ``inner`` (after an
    intron or another piece of the same exon, or opening a sequence), ``close`` (followed by
    intergenic) and ``single`` (both: a whole one-exon gene), or ``intron``. Without codons (the
    synthetic layout) there is no close / single: any exon piece may precede intergenic, and open /
    inner keep their first names, first_exon / exon. strand: ``+`` or ``-`` (None for intergenic).
    phase: the absolute frame ``a`` (+ exons: codon position of t is ``(t - a) mod 3``; - exons:
    ``(a - t) mod 3``; introns: the frame they were entered with); residue: an intron piece's length
    mod 3. ``cls`` is set by the layout. part: with the ends of long introns told apart
    (:func:`make_states`' ``intron_ends``), an intron tail piece's place in its run: ``first`` (entered
    from an exon: its start is the intron's 5' splice site on +), ``last`` (followed by an exon) or ``""``
    (a middle piece, or a piece of a run cut by the sequence's end); ``""`` for every other state.
    """

    kind: str
    strand: str | None = None
    phase: int | None = None
    residue: int | None = None
    cls: int = INTERGENIC
    synthetic_names: bool = False
    tail: bool = False  # a piece of a run longer than K (see make_states)
    part: str = ""  # first / last piece of a long intron (intron_ends), else ""

    @property
    def is_exon(self) -> bool:
        return self.kind in ("open", "inner", "close", "single")

    @property
    def name(self) -> str:
        return self._base_name + ("/tail" if self.tail else "") + (f"-{self.part}" if self.part else "")

    @property
    def _base_name(self) -> str:
        if self.kind == "intergenic":
            return "intergenic"
        if self.synthetic_names:  # the 16 states' names of the first version
            kind = {"open": "first_exon", "inner": "exon"}.get(self.kind, self.kind)
            return f"intron/a{self.phase}/r{self.residue}" if kind == "intron" else f"{kind}/a{self.phase}"
        if self.kind == "intron":
            return f"intron{self.strand}/a{self.phase}/r{self.residue}"
        return f"{self.kind}{self.strand}/a{self.phase}"


def make_states(layout: Layout, tails: bool = False, exon_tails: bool = False,
                intron_ends: bool = False, intergenic_ends: bool = False) -> tuple[GeneState, ...]:
    """The states in engine order: intergenic, then per strand its exon kinds (phase minor) and its
    introns (phase major). For the synthetic layout: intergenic, first_exon(0..2), exon(0..2),
    intron(a, r), exactly the first version's 16 states.

    tails: add a *tail* copy of intergenic (after it) and of each intron(a, r) (after the strand's
    introns): 16 + 10 = 26 states (synthetic), 43 + 19 = 62 (real). A run of at most K bases is then
    one segment of the plain state, scored by its class's length law; a longer run is a chain of
    tail pieces, scored by a length law of their own (:class:`.gene_crf.GeneGrammar`), so that the
    pieces of long runs no longer shape the law of the short ones. exon_tails (needs tails): also a
    tail copy of the exon kinds a long exon run is made of (open, inner and, with codons, close; a
    one-exon gene longer than K is open .. close pieces), after the strand's exon kinds: 32 and 80
    states (see :mod:`.gene_model`, "Long runs"). intron_ends (needs tails): two more copies of each
    intron tail piece, the ``first`` and the ``last`` of a long intron, so that its two splice sites are
    told from the cuts between its pieces: 26 + 18 = 44 and 62 + 36 = 98 states. intergenic_ends (needs
    intron_ends): the same two copies of the intergenic tail piece, after it: 46 and 100 states (the
    ``grid`` layout of long runs, whose first and last pieces meet the grid differently from the middle
    ones: :class:`.gene_crf.GeneGrammar`)."""
    if intergenic_ends and not intron_ends:
        raise ValueError("intergenic_ends extends intron_ends to intergenic runs: give intron_ends=True as well")
    if exon_tails and not tails:
        raise ValueError("exon_tails extends the tail states: give tails=True as well")
    if intron_ends and not tails:
        raise ValueError("intron_ends splits the introns' tail states: give tails=True as well")
    syn = not layout.codons
    states = [GeneState("intergenic")] + ([GeneState("intergenic", tail=True)] if tails else [])
    if intergenic_ends:
        states += [GeneState("intergenic", tail=True, part=part) for part in ("first", "last")]
    kinds = ("open", "inner", "close", "single") if layout.codons else ("open", "inner")
    for strand in layout.strands:
        ec, ic = layout.exon_class(strand), layout.intron_class(strand)
        states += [GeneState(k, strand, a, None, ec, syn) for k in kinds for a in range(3)]
        if exon_tails:
            states += [GeneState(k, strand, a, None, ec, syn, True) for k in kinds if k != "single"
                       for a in range(3)]
        states += [GeneState("intron", strand, a, r, ic, syn) for a in range(3) for r in range(3)]
        if tails:
            states += [GeneState("intron", strand, a, r, ic, syn, True) for a in range(3) for r in range(3)]
        if intron_ends:
            states += [GeneState("intron", strand, a, r, ic, syn, True, part) for part in ("first", "last")
                       for a in range(3) for r in range(3)]
    return tuple(states)


#: The synthetic layout's states (the first version's module constants, kept for its users).
STATES: tuple[GeneState, ...] = make_states(SYNTHETIC)
NUM_STATES = len(STATES)
STATE_CLASS = np.array([s.cls for s in STATES], dtype=np.int64)


def grammar_mask(states=STATES, layout: Layout = SYNTHETIC) -> np.ndarray:
    """(S, S) float64: 0 where the grammar allows state j after state i, else -inf.

    With tail states (:func:`make_states`) a run continues into another piece only from a tail piece
    to a tail piece; whatever may follow or precede a plain piece may follow or precede its tail copy.
    Exon pieces without tail copies continue plain to plain, as in the first version. With the ends of
    long introns told apart, an exon enters an intron's plain or first piece, leaves its plain or last
    piece, and a long intron runs first, middle pieces, last (first -> last when it is two pieces)."""
    index = {s: i for i, s in enumerate(states)}
    mask = np.full((len(states), len(states)), NEG_INF)
    by = {(s.kind, s.strand, s.phase, s.residue, s.tail, s.part): s for s in states}
    tailed = {s.kind for s in states if s.tail}  # the kinds that have a tail copy
    tails = bool(tailed)
    exon_tails = "inner" in tailed
    ends = any(s.part for s in states)

    def allow(src, dst) -> None:
        """src -> dst, each (kind, strand, phase, residue, tail[, part])."""
        mask[index[by[tuple(src) + ("",) * (6 - len(src))]], index[by[tuple(dst) + ("",) * (6 - len(dst))]]] = 0.0

    def intron_copies(strand, a, r, side: str) -> list[tuple]:
        """The copies of intron(a, r) an exon may enter (side "in") or leave (side "out")."""
        plain = ("intron", strand, a, r, False, "")
        if not tails:
            return [plain]
        return [plain, ("intron", strand, a, r, True, ({"in": "first", "out": "last"}[side] if ends else ""))]

    ig = ("intergenic", None, None, None)
    ig_ends = any(s.part for s in states if s.kind == "intergenic")

    def copies(state, side: str = "") -> list[tuple]:
        """The plain and (if its kind has one) tail copy of (kind, strand, phase, residue); for intergenic
        with its ends told apart, the tail copy a gene enters (side "in": first) or leaves (side "out": last)."""
        if state == ig and ig_ends:
            return [(*ig, False, "")] + ([(*ig, True, {"in": "first", "out": "last"}[side])] if side else [])
        return [(*state, t) for t in ((False, True) if state[0] in tailed else (False,))]

    def allow_copies(src, dst) -> None:
        """src -> dst for every copy (plain, tail) of either end."""
        for a in copies(src, "out"):
            for b in copies(dst, "in"):
                allow(a, b)

    if ig_ends:  # a long run: first, middle pieces, last (first -> last when it is two pieces)
        for p, q in (("first", ""), ("first", "last"), ("", ""), ("", "last")):
            allow((*ig, True, p), (*ig, True, q))
    else:
        allow((*ig, tails), (*ig, tails))  # a run continues: plain to plain, or tail to tail
    for strand in layout.strands:
        # Left to right on either strand: a - gene is met from its 3' end, but its pieces chain the
        # same way (an intron moves the absolute phase by its length on both strands, see the docstring).
        for a in range(3):
            allow_copies(ig, ("open", strand, a, None))
            if layout.codons:
                allow_copies(ig, ("single", strand, a, None))
                allow_copies(("close", strand, a, None), ig)
                allow_copies(("single", strand, a, None), ig)
            for kind in ("open", "inner"):
                src = (kind, strand, a, None)
                # A cut exon run continues (keeping its absolute phase) into inner, or close before intergenic.
                allow((*src, exon_tails), ("inner", strand, a, None, exon_tails))
                if layout.codons:
                    allow((*src, exon_tails), ("close", strand, a, None, exon_tails))
                else:
                    allow_copies(src, ig)
                for r in range(3):
                    for dst in intron_copies(strand, a, r, "in"):
                        for exon in copies(src):
                            allow(exon, dst)
            for r in range(3):
                b = (a + r) % 3
                for src in intron_copies(strand, a, r, "out"):
                    for kind in ("inner", "close") if layout.codons else ("inner",):
                        for exon in copies((kind, strand, b, None)):
                            allow(src, exon)
                for r2 in range(3):
                    if not ends:
                        allow(("intron", strand, a, r, tails), ("intron", strand, b, r2, tails))
                        continue
                    for p, q in (("first", ""), ("first", "last"), ("", ""), ("", "last")):
                        allow(("intron", strand, a, r, True, p), ("intron", strand, b, r2, True, q))
    return mask


def initial_mask(states=STATES) -> np.ndarray:
    """(S,) 0 for the states that may open a sequence, else -inf: not open / single, whose start
    rules need the intergenic before them (a sequence opening inside a gene starts with an inner
    exon piece of a free frame, or an intron, or a close piece), nor the first or last piece of a long
    intron (a run the sequence's start cuts begins with middle pieces: its splice site is not there)."""
    return np.array([NEG_INF if s.kind in ("open", "single") or s.part else 0.0 for s in states])


def final_mask(states=STATES) -> np.ndarray:
    """(S,) 0 for the states that may end a sequence: not close / single (a sequence ending inside an
    exon ends with an open or inner piece, its stop codon and frame unchecked: it is cut), nor the first
    or last piece of a long intron (likewise cut: its last pieces are middle ones)."""
    return np.array([NEG_INF if s.kind in ("close", "single") or s.part else 0.0 for s in states])


def residue_mask(K: int, states=STATES) -> np.ndarray:
    """(K, S) 0, or -inf where an intron(a, r) state has a length d (row d - 1) with d mod 3 != r."""
    d = np.arange(1, K + 1)
    out = np.zeros((K, len(states)))
    for i, s in enumerate(states):
        if s.residue is not None:
            out[d % 3 != s.residue, i] = NEG_INF
    return out


def codon_starts(codes: Tensor, lengths: Tensor, codons) -> Tensor:
    """(B, T) bool: one of ``codons`` (strings, + strand, left to right) occupies t, t+1, t+2, all
    inside the sequence. codes: (B, T) base codes 0..4 (N = 4 is never part of a codon)."""
    B, T = codes.shape
    out = torch.zeros(B, T, dtype=torch.bool, device=codes.device)
    if T < 3:
        return out
    c = torch.where(position_mask(lengths, T), codes.long(), 4)
    ok = (c[:, :-2] < 4) & (c[:, 1:-1] < 4) & (c[:, 2:] < 4)
    ids = 16 * c[:, :-2] + 4 * c[:, 1:-1] + c[:, 2:]
    hit = torch.zeros_like(ok)
    for codon in codons:
        hit |= ids == _codon_id(codon)
    out[:, :-2] = ok & hit
    return out


def codon_at(codes: Tensor, lengths: Tensor, codons, offset: int) -> Tensor:
    """(B, T) bool: one of ``codons`` occupies t + offset .. t + offset + 2, a base outside the
    sequence matching any base (a start or stop codon cut by the sequence's end is taken as there: the
    flanks of a locus may cut one, and the grammar must not rule out such a gold labelling)."""
    B, T = codes.shape
    wild = 5
    c = torch.where(position_mask(lengths, T), codes.long(), wild)
    pad = torch.full((B, 3), wild, dtype=torch.long, device=codes.device)
    c = torch.cat([pad, c, pad], dim=1)  # padded index = t + 3
    hit = torch.zeros(B, T, dtype=torch.bool, device=codes.device)
    for codon in codons:
        match = torch.ones(B, T, dtype=torch.bool, device=codes.device)
        for j, base in enumerate(codon):
            lo = 3 + offset + j
            if lo < 0 or lo + T > T + 6:
                raise ValueError(f"codon offset {offset} reaches past the padding")
            x = c[:, lo:lo + T]
            match &= (x == _BASE[base]) | (x == wild)
        hit |= match
    return hit


def stop_codon_starts(codes: Tensor, lengths: Tensor) -> Tensor:
    """(B, T) bool: a (+ strand) stop codon occupies positions t, t+1, t+2, all inside the sequence."""
    return codon_starts(codes, lengths, STOP_PLUS)


def shift(x: Tensor, k: int) -> Tensor:
    """x moved k positions right along dim 1 (``out[:, t] = x[:, t - k]``), False where it falls off."""
    out = torch.zeros_like(x)
    T = x.shape[1]
    if abs(k) >= T:
        return out
    if k >= 0:
        out[:, k:] = x[:, :T - k]
    else:
        out[:, :T + k] = x[:, -k:]
    return out
