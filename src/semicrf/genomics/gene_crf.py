"""The learned tables of ``semicrf_gene`` and their expansion to the states of its gene grammar.

:class:`GeneGrammar` holds the class-level parameters (transitions, durations by kind, initial and
final scores, the splice penalties) and turns them, with the encoder's per-position scores and the
bases, into the engine's inputs over the states (:mod:`.gene_grammar` has the fixed structure);
it computes the training objective (the gold segmentation's likelihood), the class labelling's
likelihood and Viterbi's decoding. The design and its reasons are in :mod:`.gene_model`'s docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..paths import piece_tensors, segment_sums
from .models import position_mask
from .oracle import STOP_PENALTY
from .gene_grammar import (
    GOLD_PENALTY, LAYOUTS, NEG_INF, NUM_CLASSES, SPLICE_ENDS, START_MINUS, START_PLUS,
    STOP_MINUS, STOP_PLUS, STRANDED_CLASSES, codon_at, codon_starts, final_mask,
    grammar_mask, initial_mask, make_states, residue_mask, shift,
)

#: The splice penalties' starting value (nats, after softplus about 5.0: a non-canonical end weighs
#: e^-5 of a canonical one before training; the fly's training loci have 2 in 1 751 introns).
SPLICE_PENALTY_INIT = 5.0
#: With ``intron_ends``, the code of a long intron's tail piece by its place in the run (``GeneState.part``):
#: its first piece (after the donor), a middle one, its last (before the acceptor); 0 is no place.
PIECE_PLACE = {"first": 1, "": 2, "last": 3}


def long_run_states(mode: str) -> dict:
    """:class:`GeneGrammar`'s ``tails``, ``exon_tails``, ``intron_ends`` and ``grid`` for a ``--gene-long-runs``
    mode (``"pieces"``, ``"tail"``, ``"tail-ends"``, ``"tail-exons"`` or ``"grid"``)."""
    return {"tails": mode != "pieces", "exon_tails": mode == "tail-exons",
            "intron_ends": mode in ("tail-ends", "grid"), "grid": mode == "grid"}


class GeneGrammar(nn.Module):
    """The learned class-level tables and their expansion to the states of a layout.

    num_classes: 3 (synthetic layout, 16 states) or 5 (real layout, 43 states). tails: add the tail
    states of long runs (26 and 62 states; :func:`.gene_grammar.make_states`, and "Long runs" in the
    module docstring). intron_ends (needs tails): the first and last pieces of a long intron as states of
    their own (44 and 98 states), so that with ``splice_sites`` its donor and acceptor are checked too.
    score_cuts: every state's start and end take its class's start and end scores (True), or a tail
    piece's only where it is a run's outer end, a long intron's first piece's start or last piece's end
    (False: the cuts inside a long run are free of them; ``run --gene-inner-cuts free``).
    grid (needs intron_ends): the pieces of a run longer than K meet only at the multiples of K (a grid fixed
    to the sequence), so that every run has one cutting into pieces and the best state path is the best
    labelling's (up to a run of at most K that crosses the grid, which may also be a first and a last
    piece): the intergenic tail gets first and last copies as the introns' (46 and 100 states); a first
    piece ends, and a middle or last piece starts, only on the grid, and a middle piece ends on it or at
    the sequence's end (so it is K long but where the sequence cuts it). Without it a run of L > K bases
    has about 2^(L/K) cuttings into pieces, all in Z, and the single best path of the gold labelling took
    47 nats less than the labelling's probability on the spec's sequences (``docs/results.md``, round 22).
    exon_junctions: an exon state's start and end take the exon class's start and end scores everywhere
    (True), or only at a gene's outer ends (False, ``run --gene-exon-ends gene``): its start where it opens
    a gene (open, single), its end where it closes one (close, single; the synthetic layout has no such
    state, so there none); a splice junction is then scored by the intron's start and end scores alone.
    Parameters: ``transitions`` (C, C), ``durations`` (K, 3) -- by kind, intergenic / exon / intron,
    shared by the two strands; with tails (K, 5), the tail pieces' intergenic and intron laws after
    them -- ``initial`` and ``final`` (C,); with ``splice_sites`` (needs tails) ``splice_penalty`` (2,),
    the raw donor and acceptor penalties of whole introns, and with exon_tails as well
    ``exon_splice_penalty`` (2,), those of whole exons ("Splice sites" in the module docstring). The
    per-sequence scores come from the caller's heads (see :meth:`state_scores`).
    """

    def __init__(self, max_duration: int, backend: str = "auto", num_classes: int = NUM_CLASSES,
                 tails: bool = False, splice_sites: bool = False, exon_tails: bool = False,
                 intron_ends: bool = False, score_cuts: bool = True, exon_junctions: bool = True,
                 grid: bool = False):
        super().__init__()
        if grid and not intron_ends:
            raise ValueError("grid cuts a long run into a first, middle and last pieces: give intron_ends=True "
                             "as well (run --gene-long-runs grid sets both)")
        if isinstance(max_duration, bool) or not isinstance(max_duration, int) or max_duration < 1:
            raise ValueError(f"max_duration must be a positive integer, got {max_duration!r}")
        if splice_sites and not tails:
            raise ValueError("splice_sites scores the ends of whole introns, which only the tail states tell from "
                             "the pieces of a long one: use tails=True (run --gene-long-runs tail) or no "
                             "splice sites (--gene-splice-sites off)")
        if num_classes not in LAYOUTS:
            raise ValueError(f"the gene grammar has 3 classes (synthetic: intergenic, exon, intron) or 5 (real: "
                             f"{', '.join(STRANDED_CLASSES)}), got {num_classes!r}")
        self.max_duration, self.backend, self.num_classes = max_duration, backend, num_classes
        self.tails, self.exon_tails, self.intron_ends = bool(tails), bool(exon_tails), bool(intron_ends)
        self.layout = LAYOUTS[num_classes]
        self.grid = bool(grid)
        self.states = make_states(self.layout, self.tails, self.exon_tails, self.intron_ends, self.grid)
        C = num_classes
        self.transitions = nn.Parameter(torch.zeros(C, C))
        self.durations = nn.Parameter(torch.zeros(max_duration, 3 + 2 * self.tails + self.exon_tails))
        self.initial = nn.Parameter(torch.zeros(C))
        self.final = nn.Parameter(torch.zeros(C))
        st = self.states
        # Duration column of a class: its kind (intergenic 0, exon 1, intron 2); the strands share one law.
        kind_of_class = [0, 1, 2, 1, 2][:C]
        self.register_buffer("class_kind", torch.tensor(kind_of_class), persistent=False)
        # A state's duration column: its class's kind, or for a tail piece 3 (intergenic), 4 (intron), 5 (exon).
        self._kind_of_class, self._tail_col = kind_of_class, {0: 3, 2: 4, 1: 5}
        cols = [self.duration_column(s.cls, s.tail) for s in self.states]
        self.register_buffer("duration_col", torch.tensor(cols), persistent=False)
        self.register_buffer("is_tail", torch.tensor([s.tail for s in self.states]), persistent=False)
        # The states whose class has a tail copy: a gold piece picks the plain or the tail one.
        tailed = {s.cls for s in self.states if s.tail}
        self.register_buffer("has_tail", torch.tensor([s.cls in tailed for s in self.states]), persistent=False)
        # With intron_ends, which piece of a long intron (with grid, of a long intergenic run too) a tail state
        # is (PIECE_PLACE); 0 for every state that has no such place (a gold piece may take it whatever its place).
        placed = ("intron", "intergenic") if self.grid else ("intron",)
        self.register_buffer("tail_place", torch.tensor([PIECE_PLACE[s.part] if self.intron_ends and s.tail and
                                                         s.kind in placed else 0 for s in st]), persistent=False)
        self.register_buffer("state_class", torch.tensor([s.cls for s in st]), persistent=False)
        self.register_buffer("grammar_mask", torch.from_numpy(grammar_mask(st, self.layout)), persistent=False)
        self.register_buffer("initial_mask", torch.from_numpy(initial_mask(st)), persistent=False)
        self.register_buffer("final_mask", torch.from_numpy(final_mask(st)), persistent=False)
        self.register_buffer("residue_mask", torch.from_numpy(residue_mask(max_duration, st)), persistent=False)
        # Exon states read column strand_index * 3 + phase of the per-strand, per-phase exon tables.
        strand_index = {s: i for i, s in enumerate(self.layout.strands)}
        cols = [strand_index[s.strand] * 3 + s.phase if s.is_exon else 0 for s in st]
        self.register_buffer("exon_col", torch.tensor(cols), persistent=False)
        self.register_buffer("is_exon", torch.tensor([s.is_exon for s in st]), persistent=False)
        kinds = [s.kind for s in st]
        opens_gene = [k in ("open", "single") for k in kinds]
        closes_gene = [k in ("close", "single") for k in kinds]
        self.register_buffer("opens", torch.tensor(opens_gene), persistent=False)
        self.register_buffer("closes", torch.tensor(closes_gene), persistent=False)
        # Splice sites: a whole intron (a plain intron piece; with tails every intron of at most K bases)
        # loses softplus(splice_penalty) at each end that is not canonical (see "Splice sites"); with
        # intron_ends so do a long intron's first piece at its start and its last piece at its end.
        self.splice_sites = bool(splice_sites)
        if self.splice_sites:
            self.splice_penalty = nn.Parameter(torch.full((2,), SPLICE_PENALTY_INIT))
        # A state whose segment starts (ends) its run: every plain state, and a long intron's first (last) piece.
        opens_run = [not s.tail or s.part == "first" for s in st]
        closes_run = [not s.tail or s.part == "last" for s in st]
        intron_start = [s.kind == "intron" and o for s, o in zip(st, opens_run)]
        intron_end = [s.kind == "intron" and c for s, c in zip(st, closes_run)]
        # Which states' start (end) carries the class's start (end) scores: all of them with score_cuts; else
        # every state but a tail piece, whose start is a cut inside its run unless it is a long intron's
        # first piece (its end, unless it is the last), so that the arbitrary cuts of the gold pieces teach
        # the site tables and the boundary head nothing (see "Long runs").
        # Without exon_junctions an exon's start (end) carries them only where it opens (closes) a gene.
        self.score_cuts, self.exon_junctions = bool(score_cuts), bool(exon_junctions)
        outer_start = [(self.score_cuts or o) and (not s.is_exon or self.exon_junctions or g)
                       for s, o, g in zip(st, opens_run, opens_gene)]
        outer_end = [(self.score_cuts or c) and (not s.is_exon or self.exon_junctions or g)
                     for s, c, g in zip(st, closes_run, closes_gene)]
        self.register_buffer("outer_start", torch.tensor(outer_start), persistent=False)
        self.register_buffer("outer_end", torch.tensor(outer_end), persistent=False)
        self.register_buffer("intron_start", torch.tensor(intron_start), persistent=False)
        self.register_buffer("intron_end", torch.tensor(intron_end), persistent=False)
        # With exon tails as well, a plain exon piece is a whole exon, and its kind tells which of its
        # sides an intron is on (see "Splice sites"): its end is a donor (open, inner; real layout only,
        # since without codons they may precede intergenic too), its start an acceptor (inner, close).
        exon_side = self.splice_sites and self.exon_tails
        donor_kinds = ("open", "inner") if self.layout.codons else ()
        self.register_buffer("exon_donor", torch.tensor([exon_side and s.kind in donor_kinds and not s.tail
                                                         for s in st]), persistent=False)
        self.register_buffer("exon_acceptor", torch.tensor([exon_side and s.kind in ("inner", "close")
                                                            and not s.tail for s in st]), persistent=False)
        if exon_side:
            self.exon_splice_penalty = nn.Parameter(torch.full((2,), SPLICE_PENALTY_INIT))
        self.register_buffer("strand_col", torch.tensor([strand_index.get(s.strand, 0) for s in st]),
                             persistent=False)

    def duration_column(self, cls: int, long_run: bool) -> int:
        """The column of ``durations`` that scores a gold piece of class ``cls``: its kind's, or the tail
        law's when the piece is one of several of a run longer than K and the class has tail states."""
        kind = self._kind_of_class[cls]
        tailed = {0: self.tails, 2: self.tails, 1: self.exon_tails}[kind]
        return self._tail_col[kind] if long_run and tailed else kind

    @property
    def num_states(self) -> int:
        return len(self.states)

    def extra_repr(self) -> str:
        return (f"classes={self.num_classes}, states={self.num_states}, max_duration={self.max_duration}, "
                f"backend={self.backend!r}, tails={self.tails}, exon_tails={self.exon_tails}, "
                f"splice_sites={self.splice_sites}, intron_ends={self.intron_ends}, grid={self.grid}")

    def class_durations(self) -> Tensor:
        """(K, C) the duration table per class (the strands' columns are the same parameters); with
        tails, the law of the runs of at most K bases (one segment each)."""
        return self.durations[:, self.class_kind]

    def state_tables(self) -> dict:
        """The engine's sequence-independent inputs over the states: transitions (S, S), durations
        (K, S), initial (S,), final (S,), in the parameters' dtype."""
        cls = self.state_class
        dtype = self.transitions.dtype
        return dict(
            transitions=self.transitions[cls][:, cls] + self.grammar_mask.to(dtype),
            durations=self.durations[:, self.duration_col] + self.residue_mask.to(dtype),
            initial=self.initial[cls] + self.initial_mask.to(dtype),
            final=self.final[cls] + self.final_mask.to(dtype),
        )

    def _exon_rules(self, codes: Tensor, lengths: Tensor, T: int):
        """Per strand and phase (columns strand * 3 + a), bool (B, T, 3 * strands): ``bad`` positions an
        exon piece may not cover (the base of an in-frame stop codon that marks it), ``no_open`` where a
        gene's first piece (open / single) may not start, ``no_close`` where its last (close / single)
        may not end; and ``cpos`` (T, 3 * strands) the codon position of t."""
        dev = codes.device
        t = torch.arange(T, device=dev)[:, None]
        a = torch.arange(3, device=dev)[None, :]
        bad, no_open, no_close, cpos = [], [], [], []
        for strand in self.layout.strands:
            if strand == "+":
                pos = (t - a) % 3  # (T, 3)
                stop = codon_starts(codes, lengths, STOP_PLUS)
                # Third base u + 2 of an in-frame stop at u: a piece reads the codon with the bases before
                # it (exact inside a cut run; after an intron its last bases, AG for a canonical one, and no
                # stop begins with G or AG).
                bad.append(shift(stop, 2)[:, :, None] & (pos == 2)[None])
                ok_open = (pos == 0)[None]  # the frame starts at a gene's first base ...
                if self.layout.codons:
                    ok_open = ok_open & codon_at(codes, lengths, (START_PLUS,), 0)[:, :, None]  # ... with ATG
                    # A piece ending at t closes the gene when t is a codon's last base and a stop follows.
                    ok_close = (pos == 2)[None] & codon_at(codes, lengths, STOP_PLUS, 1)[:, :, None]
                    no_close.append(~ok_close)
            else:
                pos = (a - t) % 3  # a - gene is read right to left
                stop = codon_starts(codes, lengths, STOP_MINUS)
                # Leftmost base u of an in-frame stop (codon position 2 at u): a piece reads the codon with
                # the bases after it (exact inside a cut run; before a - intron, its first bases CT, and no
                # reverse-complemented stop TTA, CTA, TCA ends in C or CT).
                bad.append(stop[:, :, None] & (pos == 2)[None])
                # A - gene's 3' end is its leftmost base, codon position 2, right after its stop codon
                # (read on + as TTA, CTA or TCA, labelled intergenic); its 5' end the A of ATG (+: CAT).
                ok_open = (pos == 2)[None] & codon_at(codes, lengths, STOP_MINUS, -3)[:, :, None]
                ok_close = (pos == 0)[None] & codon_at(codes, lengths, (START_MINUS,), -2)[:, :, None]
                no_close.append(~ok_close)
            no_open.append(~ok_open.expand(codes.shape[0], T, 3))
            cpos.append(pos)
        cat = lambda xs: torch.cat(xs, dim=-1) if xs else None  # noqa: E731
        return cat(bad), cat(no_open), cat(no_close), torch.cat(cpos, dim=-1)

    def state_scores(self, class_scores: Tensor, codon_scores: Tensor, codes: Tensor, lengths: Tensor,
                     start_scores: Tensor | None = None, end_scores: Tensor | None = None,
                     stop_penalty: float = STOP_PENALTY, first_position: int = 0, at_end: bool = True):
        """Per-position engine inputs over the states: emissions, start_scores, end_scores, each (B, T, S).

        class_scores: (B, T, C) ``e_c(t)``. codon_scores: (B, T, 3 * strands) ``q_j(t)``, the score of
        codon position j at t, per strand (+ then -; used by exon states only). codes: (B, T) base
        codes (for start and stop codons). lengths: (B,). start_scores, end_scores: (B, T, C) per
        class, or None (zero). stop_penalty: what an exon state loses on the marked base of an in-frame
        stop codon (default the hard 1e4; training uses :data:`TRAIN_STOP_PENALTY`). first_position, at_end:
        with ``grid``, where in the whole sequence column 0 lies (the grid is counted from the whole
        sequence's start; a multiple of 3 keeps the frames too) and whether the columns reach its end (a
        middle piece may end at the last position only then); a block of a long sequence passes its own.
        """
        B, T, C = class_scores.shape
        n3 = 3 * len(self.layout.strands)
        if C != self.num_classes or codon_scores.shape[-1] != n3:
            raise ValueError(f"expected class scores (B, T, {self.num_classes}) and codon scores (B, T, {n3}), got "
                             f"{tuple(class_scores.shape)} and {tuple(codon_scores.shape)}")
        cls = self.state_class
        bad, no_open, no_close, cpos = self._exon_rules(codes, lengths, T)
        # Codon score of each exon table (strand, phase): q of that strand at its codon position.
        strand_of_col = torch.arange(n3, device=codes.device) // 3
        q_col = strand_of_col[None, :] * 3 + cpos  # (T, n3) column of codon_scores
        codon = codon_scores.gather(2, q_col[None].expand(B, T, n3))
        exon_add = codon - stop_penalty * bad.to(codon.dtype)  # (B, T, n3)
        col = self.exon_col
        emissions = class_scores[:, :, cls] + torch.where(self.is_exon, exon_add[:, :, col], 0.0)

        zeros = emissions.new_zeros(B, T, self.num_states)
        start = zeros if start_scores is None else torch.where(self.outer_start, start_scores[:, :, cls], 0.0)
        end = zeros if end_scores is None else torch.where(self.outer_end, end_scores[:, :, cls], 0.0)
        if self.splice_sites:
            start, end = self._splice_scores(start, end, codes, lengths)
        hard = bad[:, :, col] & self.is_exon
        start_hard = hard | (no_open[:, :, col] & self.opens)
        end_hard = hard
        if self.grid:
            off_start, off_end = self._off_grid(lengths, T, first_position, at_end)
            start_hard, end_hard = start_hard | off_start, end_hard | off_end
        if no_close is not None:
            end_hard = end_hard | (no_close[:, :, col] & self.closes)
        return emissions, start.masked_fill(start_hard, NEG_INF), end.masked_fill(end_hard, NEG_INF)

    def _off_grid(self, lengths: Tensor, T: int, first_position: int = 0,
                  at_end: bool = True) -> tuple[Tensor, Tensor]:
        """(B, T, S) bool each: where a tail piece may not start (a middle or last piece off the grid) and
        may not end (a first piece before a position off the grid; a middle piece too, unless at the
        sequence's last position), with ``grid``; column t is position first_position + t."""
        K = self.max_duration
        t = torch.arange(T, device=lengths.device)
        on_start = ((t + first_position) % K == 0)[None, :, None]  # (1, T, 1)
        before_grid = ((t + first_position + 1) % K == 0)[None, :, None]
        last = (t[None, :] == lengths[:, None] - 1)[:, :, None] & at_end
        place = self.tail_place
        starts_on = (place == PIECE_PLACE[""]) | (place == PIECE_PLACE["last"])
        first, middle = place == PIECE_PLACE["first"], place == PIECE_PLACE[""]
        off_start = starts_on & ~on_start
        off_end = (first & ~before_grid) | (middle & ~(before_grid | last))
        return off_start.expand(lengths.shape[0], T, -1), off_end

    def splice_penalties(self) -> Tensor:
        """(2,) what a whole intron loses for a non-canonical first and last two bases (softplus, > 0)."""
        return nn.functional.softplus(self.splice_penalty)

    def exon_splice_penalties(self) -> Tensor:
        """(2,) what a whole exon loses (``splice_sites`` with ``exon_tails``) when the two bases after it
        are not a donor (open, inner; real layout) and when the two before it are not an acceptor
        (inner, close): softplus, > 0. Zeros without exon-side checks."""
        if not hasattr(self, "exon_splice_penalty"):
            return self.transitions.new_zeros(2)
        return nn.functional.softplus(self.exon_splice_penalty)

    def _splice_scores(self, start: Tensor, end: Tensor, codes: Tensor, lengths: Tensor):
        """start and end less the splice penalties where a whole intron state's first (last) two bases
        are not its strand's canonical ends (:data:`.gene_grammar.SPLICE_ENDS`; bases past the
        sequence's ends match anything), and, with exon tails, where the two bases after a whole exon
        whose right side is an intron (before one whose left side is) are not those ends."""
        col = self.strand_col

        def off_site(end_kind: int, offset: int) -> Tensor:
            """(B, T, S): the two bases at t + offset, t + offset + 1 are not the state's strand's intron
            first (end_kind 0) or last (1) pair."""
            return torch.stack([~codon_at(codes, lengths, (SPLICE_ENDS[strand][end_kind],), offset)
                                for strand in self.layout.strands], -1)[:, :, col]

        pen = self.splice_penalties().to(start.dtype)
        start = start - pen[0] * (off_site(0, 0) & self.intron_start).to(start.dtype)  # an intron starting at t
        end = end - pen[1] * (off_site(1, -1) & self.intron_end).to(end.dtype)  # an intron ending at t
        if self.exon_tails:
            exon_pen = self.exon_splice_penalties().to(start.dtype)
            start = start - exon_pen[1] * (off_site(1, -2) & self.exon_acceptor).to(start.dtype)  # before it
            end = end - exon_pen[0] * (off_site(0, 1) & self.exon_donor).to(end.dtype)  # after it
        return start, end

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # A checkpoint of this configuration saved before the exon-side checks (2026-12-03) has no
        # exon_splice_penalty: load it with those checks off (softplus(-1e4) is exactly 0), so that it
        # predicts what it predicted when it was saved.
        key = prefix + "exon_splice_penalty"
        if hasattr(self, "exon_splice_penalty") and key not in state_dict and prefix + "splice_penalty" in state_dict:
            state_dict[key] = torch.full_like(self.exon_splice_penalty, -1.0e4)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def constrain(self, emissions: Tensor, start: Tensor, end: Tensor, labels: Tensor):
        """The scores restricted to the state paths whose classes are ``labels`` (B, T)."""
        off = self.state_class[None, None, :] != labels[:, :, None]  # (B, T, S)
        return (emissions - GOLD_PENALTY * off.to(emissions.dtype), start.masked_fill(off, NEG_INF),
                end.masked_fill(off, NEG_INF))

    def log_likelihood(self, emissions: Tensor, start: Tensor, end: Tensor, labels: Tensor,
                       lengths: Tensor) -> Tensor:
        """(B,) ``log P(labels)`` summed over the consistent state paths, from :meth:`state_scores`."""
        from .. import log_likelihood

        labels = torch.where(position_mask(lengths, labels.shape[1]), labels, 0)
        return log_likelihood(emissions, labels, lengths=lengths, start_scores=start, end_scores=end,
                              backend=self.backend, label_classes=self.state_class.to(emissions.device),
                              **self.state_tables())

    def path_log_likelihood(self, emissions: Tensor, start: Tensor, end: Tensor, labels: Tensor,
                            lengths: Tensor) -> Tensor:
        """(B,) ``log P(gold segmentation)``: the gold runs as segments (a run longer than K cut into
        equal pieces of at most K: :func:`semicrf.paths.run_pieces`), summed over the state paths on exactly
        these segments (the frames), minus the engine's ``log_partition`` over every state path. The
        training objective of :class:`GeneSemiCRFTagger` (see the module docstring, "Training")."""
        from .. import log_partition

        tables = self.state_tables()
        log_z = log_partition(emissions, lengths=lengths, start_scores=start, end_scores=end, backend=self.backend,
                              **tables)
        return self._pieces_log_score(emissions, start, end, labels, lengths, tables) - log_z

    def _pieces_log_score(self, emissions, start, end, labels, lengths, tables) -> Tensor:
        """(B,) logsumexp of the scores of the state paths whose segments are the gold pieces: a forward
        over the pieces (a handful per sequence) in probability space, rescaled at every step, so that
        states no path reaches are exact zeros (no -inf arithmetic, no NaN gradients)."""
        S = emissions.shape[2]
        dev, f64 = emissions.device, torch.float64
        seg_s, seg_e, seg_c, nseg = piece_tensors(labels, lengths, self.max_duration, self.grid)
        J = seg_s.shape[1]
        at = lambda x, idx: x.to(f64).gather(1, idx[:, :, None].expand(-1, -1, S))  # noqa: E731  (B, J, S)
        dur = tables["durations"].to(f64)[seg_e - seg_s - 1]  # (B, J, S)
        score = segment_sums(emissions, seg_s, seg_e) + at(start, seg_s) + at(end, seg_e - 1) + dur
        allowed = self.state_class.to(dev)[None, None, :] == seg_c[:, :, None]
        if self.tails:  # a piece of a run longer than K is a tail piece, a whole run a plain one
            j = torch.arange(J, device=dev)[None, :]
            same_prev = torch.cat([torch.zeros_like(seg_c[:, :1], dtype=torch.bool), seg_c[:, 1:] == seg_c[:, :-1]], 1)
            same_next = torch.cat([seg_c[:, :-1] == seg_c[:, 1:], torch.zeros_like(seg_c[:, :1], dtype=torch.bool)], 1)
            long_run = (same_prev & (j < nseg[:, None])) | (same_next & (j + 1 < nseg[:, None]))  # (B, J)
            allowed = allowed & (~self.has_tail | (self.is_tail == long_run[:, :, None]))
            if self.intron_ends:  # and its place in the run: first, last (next to an exon), or middle
                first = long_run & ~same_prev & (seg_s > 0)
                last = long_run & ~same_next & (seg_e < lengths[:, None])
                place = torch.where(first, PIECE_PLACE["first"], torch.where(last, PIECE_PLACE["last"],
                                                                            PIECE_PLACE[""]))
                allowed = allowed & ((self.tail_place == 0) | (self.tail_place == place[:, :, None]))
        score = torch.where(allowed, score, NEG_INF)
        trans = tables["transitions"].to(f64)
        t_max = trans.max()  # finite: every class pair of the grammar has an allowed state pair
        step = torch.exp(trans - t_max)  # (S, S), zeros where the grammar forbids
        first = tables["initial"].to(f64)[None] + score[:, 0]
        m = _finite_max(first)
        alpha = torch.exp(first - m[:, None])
        log_scale = m
        for j in range(1, J):
            live = (j < nseg)[:, None]
            sj = score[:, j]
            mj = _finite_max(sj)
            nxt = (alpha @ step) * torch.exp(sj - mj[:, None])
            norm = nxt.sum(1)
            alpha = torch.where(live, nxt / norm.clamp(min=1e-300)[:, None], alpha)
            # Padding steps keep alpha; their norm may be 0, so the log never sees it (no NaN gradient).
            step_log = torch.log(torch.where(live[:, 0], norm, 1.0)) + mj + t_max
            log_scale = log_scale + torch.where(live[:, 0], step_log, 0.0)
        fin = tables["final"].to(f64)
        f_max = _finite_max(fin[None])[0]
        return log_scale + torch.log((alpha * torch.exp(fin - f_max)[None]).sum(1)) + f_max

    def decode(self, emissions: Tensor, start: Tensor, end: Tensor, lengths: Tensor):
        """Viterbi over the states: (class labels (B, T) int64, -1 past each length; the engine's
        :class:`~semicrf.types.ViterbiResult` over the states)."""
        from .. import viterbi

        result = viterbi(emissions, lengths=lengths, start_scores=start, end_scores=end, backend=self.backend,
                         **self.state_tables())
        states = result.labels
        classes = torch.where(states >= 0, self.state_class.to(states.device)[states.clamp(min=0)], -1)
        return classes, result


def _finite_max(x: Tensor) -> Tensor:
    """Max over the last dim, 0 where every entry is -inf (a rescaling constant, never a result)."""
    m = x.max(-1).values
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
