"""semicrf_gene against brute-force enumeration of gene structures, and as a benchmark model.

The enumerator below does not use the model's states: it walks every class
segmentation (and, for a sequence that starts inside a gene, every initial
frame) and applies the gene rules as written in the module docstring (grammar,
frame from the first exon's start moved by each intron's length, no stop codon
ending inside an exon segment in its frame), scoring with the class-level
parameters. The model's 16-state expansion must reproduce it.
"""

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from brute import logsumexp, path_labels, segmentations
from semicrf.genomics import gene_model as gm
from semicrf.genomics import gene_grammar as gg
from semicrf.paths import run_pieces
from semicrf.genomics.models import ModelConfig, build_model, parse_model_list
from semicrf.genomics.oracle import _stop_starts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

A, C, G, T = range(4)
STOPS = {(T, A, A), (T, A, G), (T, G, A)}
FORBIDDEN = {(gm.INTERGENIC, gm.INTRON), (gm.INTRON, gm.INTERGENIC)}
NEG = -math.inf
# Scores at or below this are the model's "-inf" (the finite stop / gold penalties are 1e4).
IMPOSSIBLE = -1000.0


# ----------------------------------------------------------------------------- the independent truth
def path_score(path, a0, codes, em, codon, start, end, trans, dur, init, final, tails=None, splice=None,
               exon_tails=False, exon_splice=None, intron_ends=False, score_cuts=True, exon_junctions=True,
               grid=None):
    """Score of one class segmentation [(s, e, c)] with initial frame a0 (None unless it opens in a gene).

    tails: None (no tail states), or a bool per segment, True for an intergenic or intron tail piece:
    only a tail piece continues a run of its class, and a tail piece is scored by the duration column
    3 (intergenic) or 4 (intron) instead of its class's; with exon_tails exon segments too (column 5).
    splice: None, or the two penalties a plain
    (whole) intron segment loses when its first two bases are not GT and its last two not AG (a base
    outside the sequence matches). exon_splice: None, or (donor, acceptor) penalties of whole (plain)
    exon segments with exon_tails: one after an intron or opening the sequence loses the acceptor's when
    the two bases before it are not AG (no donor check here: an exon may precede intergenic too).
    intron_ends: an intron tail piece is "first" (after an exon; only its first two bases are checked),
    "last" (before an exon; only its last two), or True (a middle piece: after a first or middle piece,
    or opening the sequence; before a middle or last piece, or ending it). score_cuts=False: a tail
    piece takes its class's start score only as a long intron's "first" piece and its end score only as
    its "last" (every other tail piece's ends are cuts inside its run). exon_junctions=False: an exon
    segment takes its start score only after intergenic (a gene's first exon) and never its end score
    (the synthetic layout has no state that closes a gene). grid: None, or K: intergenic runs have first
    and last pieces as introns do, and the pieces of a long run meet only at multiples of K (a first piece
    ends there, a middle one starts there and ends there or at the sequence's end, a last one starts there)."""
    total, prev, phase = 0.0, None, a0
    ended = (gm.INTRON, gm.INTERGENIC) if grid else (gm.INTRON,)  # the classes whose long runs have ends
    for i, (s, e, c) in enumerate(path):
        if tails is not None:
            if tails[i] and c == gm.EXON and not exon_tails:
                return NEG
            if isinstance(tails[i], str) and not (intron_ends and c in ended):
                return NEG
            if i > 0 and c == prev and (c != gm.EXON or exon_tails) and not (tails[i] and tails[i - 1]):
                return NEG
            if intron_ends and c in ended:
                after = "start" if prev is None else "run" if prev == c else "exon"
                may = {"exon": (False, "first"), "run": (True, "last"), "start": (False, True)}[after]
                if tails[i] not in may or (after == "run" and tails[i - 1] not in ("first", True)):
                    return NEG
                if i + 1 == len(path) and tails[i] in ("first", "last"):
                    return NEG
            if intron_ends and c == gm.EXON and prev in ended and tails[i - 1] not in (False, "last"):
                return NEG
            if grid and tails[i] is not False and c in ended:
                if tails[i] == "first" and e % grid:
                    return NEG
                if tails[i] in (True, "last") and s % grid:
                    return NEG
                if tails[i] is True and e % grid and e != len(codes):
                    return NEG
        if i == 0:
            total += init[c]
        else:
            if (prev, c) in FORBIDDEN:
                return NEG
            total += trans[prev, c]
        if c == gm.EXON:
            if prev == gm.INTERGENIC:
                phase = s % 3  # a gene's frame starts at its first base
            for t in range(s, e):
                total += em[t, gm.EXON] + codon[t, (t - phase) % 3]
            if exon_splice is not None and not tails[i] and prev != gm.INTERGENIC:
                total -= exon_splice[1] * (not all(codes[u] == b for u, b in ((s - 2, A), (s - 1, G)) if u >= 0))
            for u in range(max(0, s - 2), e - 2):  # codons whose third base lies in the segment
                if (u - phase) % 3 == 0 and tuple(codes[u:u + 3]) in STOPS:
                    return NEG
        elif c == gm.INTRON:
            total += em[s:e, gm.INTRON].sum()
            phase = (phase + e - s) % 3
            if splice is not None and tails[i] in (False, "first", "last"):
                L = len(codes)
                first_ok = all(codes[u] == b for u, b in ((s, G), (s + 1, T)) if u < L)
                last_ok = all(codes[u] == b for u, b in ((e - 2, A), (e - 1, G)) if u >= 0)
                total -= splice[0] * (not first_ok) * (tails[i] != "last") + splice[1] * (not last_ok) * (
                    tails[i] != "first")
        else:
            total += em[s:e, gm.INTERGENIC].sum()
            phase = None
        column = {gm.INTERGENIC: 3, gm.INTRON: 4, gm.EXON: 5}[c] if tails is not None and tails[i] else c
        tail = tails is not None and tails[i]
        total += dur[e - s - 1, column]
        gene_end_only = c == gm.EXON and not exon_junctions
        if (score_cuts or not tail or tail == "first") and (not gene_end_only or prev == gm.INTERGENIC):
            total += start[s, c]
        if (score_cuts or not tail or tail == "last") and not gene_end_only:
            total += end[e - 1, c]
        prev = c
    return total + final[prev]


def enumerate_paths(L, K):
    """Every (class path, initial frame)."""
    for cuts in segmentations(L, K):
        for labs in itertools.product(range(3), repeat=len(cuts)):
            path = [(s, e, c) for (s, e), c in zip(cuts, labs)]
            for a0 in ([None] if labs[0] == gm.INTERGENIC else range(3)):
                yield path, a0


def brute(codes, em, codon, start, end, trans, dur, init, final):
    L, K = len(codes), dur.shape[0]
    scored = ((path, path_score(path, a0, codes, em, codon, start, end, trans, dur, init, final))
              for path, a0 in enumerate_paths(L, K))
    return by_labelling(((p, sc) for p, sc in scored if sc != NEG), L)


def by_labelling(scored_paths, L):
    """(log Z, {labelling: log P(labelling)}, (best score, its labelling)) from (path, score) pairs."""
    by_labels, best = {}, (NEG, None)
    for path, sc in scored_paths:
        key = tuple(path_labels(path, L))
        by_labels.setdefault(key, []).append(sc)
        if sc > best[0]:
            best = (sc, key)
    log_z = logsumexp([v for vs in by_labels.values() for v in vs])
    return log_z, {k: logsumexp(v) - log_z for k, v in by_labels.items()}, best


# ----------------------------------------------------------------------------- helpers
def enumerate_tail_paths(L, K, exon_tails=False, intron_ends=False, grid=False):
    """Every (class path, initial frame, tail bits): each intergenic or intron segment (and exon segment
    with exon_tails) plain or tail; with intron_ends an intron segment (with grid an intergenic one too)
    also a first or last piece."""
    ended = (gm.INTRON, gm.INTERGENIC) if grid else (gm.INTRON,)
    for path, a0 in enumerate_paths(L, K):
        choices = [(False, True, "first", "last") if c in ended and intron_ends else
                   (False, True) if c != gm.EXON or exon_tails else (False,) for _, _, c in path]
        for tails in itertools.product(*choices):
            yield path, a0, tails


def random_problem(seed, L, K, backend="cpu", tails=False, splice=False, exon_tails=False, intron_ends=False,
                   score_cuts=True, exon_junctions=True, grid=False):
    g = torch.Generator().manual_seed(seed)
    grammar = gm.GeneGrammar(K, backend, tails=tails, splice_sites=splice, exon_tails=exon_tails,
                             intron_ends=intron_ends, score_cuts=score_cuts, exon_junctions=exon_junctions,
                             grid=grid).double()
    with torch.no_grad():
        for p in grammar.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    # Bases rich in T, A, G so that stop codons are frequent.
    codes = torch.multinomial(torch.tensor([0.3, 0.05, 0.25, 0.4]), L, replacement=True, generator=g)[None]
    em, codon, start, end = (torch.randn(1, L, 3, generator=g, dtype=torch.float64) for _ in range(4))
    return grammar, codes, em, codon, start, end


def numpy_args(grammar, codes, em, codon, start, end):
    n = lambda x: x.detach()[0].numpy() if x.dim() == 3 else x.detach().numpy()  # noqa: E731
    return (codes[0].numpy(), n(em), n(codon), n(start), n(end), grammar.transitions.detach().numpy(),
            grammar.durations.detach().numpy(), grammar.initial.detach().numpy(), grammar.final.detach().numpy())


def all_labellings(L):
    return torch.tensor(list(itertools.product(range(3), repeat=L)), dtype=torch.int64)


def _every_labelling(grammar, codes, em, codon, start, end, ys=None):
    """(every class labelling of the sequence (n, L), or the given ys, lengths (n,), the state scores for each)."""
    L = codes.shape[1]
    ys = all_labellings(L) if ys is None else ys
    n = ys.shape[0]
    lengths = torch.full((n,), L)
    with torch.no_grad():
        scores = grammar.state_scores(em.expand(n, -1, -1), codon.expand(n, -1, -1), codes.expand(n, -1), lengths,
                                      start.expand(n, -1, -1), end.expand(n, -1, -1))
    return ys, lengths, scores


# ----------------------------------------------------------------------------- against brute force
@pytest.mark.parametrize("seed,L,K", [(0, 6, 4), (1, 7, 3), (2, 6, 6), (3, 7, 4)])
def test_likelihood_of_every_class_labelling_matches_enumeration(seed, L, K):
    grammar, codes, em, codon, start, end = random_problem(seed, L, K)
    log_z, label_ll, (best_score, best_labels) = brute(*numpy_args(grammar, codes, em, codon, start, end))
    ys, lengths, scores = _every_labelling(grammar, codes, em, codon, start, end)
    with torch.no_grad():
        ll = grammar.log_likelihood(*scores, ys, lengths).numpy()
    assert len(label_ll) > 1
    for y, value in zip(ys.tolist(), ll):
        truth = label_ll.get(tuple(y), NEG)
        if truth == NEG:
            assert value < IMPOSSIBLE, (y, value)
        else:
            assert value == pytest.approx(truth, abs=1e-9), y
    # The class labellings partition the state paths: their probabilities sum to one.
    assert torch.logsumexp(torch.from_numpy(ll), 0).item() == pytest.approx(0.0, abs=1e-9)
    # Viterbi: the best path's score and its classes.
    with torch.no_grad():
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
        classes, result = grammar.decode(e, s, t, torch.tensor([L]))
    assert result.score.item() == pytest.approx(best_score, abs=1e-9)
    assert tuple(classes[0].tolist()) == best_labels


def test_reference_and_cpu_backends_agree():
    out = []
    for backend in ("reference", "cpu"):
        grammar, codes, em, codon, start, end = random_problem(5, 9, 5, backend)
        y = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 1, 1]])
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([9]), start, end)
        ll = grammar.log_likelihood(e, s, t, y, torch.tensor([9]))
        ll.sum().backward()
        out.append((ll.item(), grammar.durations.grad.clone(), grammar.transitions.grad.clone()))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-9)
    assert torch.allclose(out[0][1], out[1][1], atol=1e-9) and torch.allclose(out[0][2], out[1][2], atol=1e-9)


def test_gradients_are_those_of_the_enumerated_likelihood():
    # d log P(y) / d theta by finite differences of the enumeration, for the class-level tables.
    L, K = 6, 4
    grammar, codes, em, codon, start, end = random_problem(11, L, K)
    y = (0, 1, 1, 2, 1, 1)
    e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
    grammar.log_likelihood(e, s, t, torch.tensor([y]), torch.tensor([L])).sum().backward()
    args = list(numpy_args(grammar, codes, em, codon, start, end))
    _assert_table_grads(args, brute, y, ((5, grammar.transitions.grad, [(1, 2), (2, 1), (0, 1)]),
                                         (6, grammar.durations.grad, [(0, 1), (1, 2), (2, 2), (3, 0)])))


def _assert_table_grads(args, brute_fn, y, cases, h=1e-6):
    """Each (argument index, autograd gradient, positions) of ``cases`` against central differences of
    ``brute_fn(*args)[1][y]``, the enumerated log-likelihood of labelling ``y``."""
    for idx, grad, positions in cases:
        base = args[idx].copy()
        for pos in positions:
            vals = []
            for sign in (1, -1):
                args[idx] = base.copy()
                args[idx][pos] += sign * h
                vals.append(brute_fn(*args)[1][y])
            args[idx] = base
            assert grad[pos].item() == pytest.approx((vals[0] - vals[1]) / (2 * h), abs=1e-5), (idx, pos)


# ----------------------------------------------------------------------------- the training objective
def test_gold_pieces_cut_long_runs_into_equal_pieces():
    # A run of 7 with K = 3: three pieces 3, 2, 2 (the fewest of at most K, the longer first).
    y = np.array([[0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 9, 9], [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]])
    s, e, c, n = run_pieces(y, np.array([10, 12]), 3)
    assert n.tolist() == [5, 4]
    assert list(zip(s[0], e[0], c[0]))[:5] == [(0, 3, 0), (3, 5, 0), (5, 7, 0), (7, 9, 1), (9, 10, 2)]
    # The second sequence's fifth column is padding: its last segment again.
    assert list(zip(s[1], e[1], c[1])) == [(0, 3, 2), (3, 6, 2), (6, 9, 2), (9, 12, 2), (9, 12, 2)]


def test_gold_pieces_on_the_grid_cut_long_runs_at_the_multiples_of_k():
    # K = 3: the run of 7 at 0..6 is cut at 3 and 6 (3, 3, 1); the run of 5 at 8..12 at 9 and 12 (1, 3, 1);
    # the runs of at most K stay whole, the one at 13..15 although it crosses 15.
    y = np.array([[0] * 7 + [1] * 1 + [2] * 5 + [0] * 3 + [1] * 2])
    s, e, c, n = run_pieces(y, np.array([18]), 3, grid=True)
    assert list(zip(s[0].tolist(), e[0].tolist(), c[0].tolist())) == [
        (0, 3, 0), (3, 6, 0), (6, 7, 0), (7, 8, 1), (8, 9, 2), (9, 12, 2), (12, 13, 2), (13, 16, 0), (16, 18, 1)]


@pytest.mark.parametrize("seed,L,K", [(0, 6, 4), (1, 7, 3), (2, 6, 6), (3, 7, 2)])
def test_path_likelihood_of_every_gold_segmentation_matches_enumeration(seed, L, K):
    # log P(gold segmentation): the enumerated paths whose segments are the gold pieces, summed over
    # their initial frames, against every path (split runs included) in the partition function.
    grammar, codes, em, codon, start, end = random_problem(seed, L, K)
    args = numpy_args(grammar, codes, em, codon, start, end)
    by_path, every = {}, []
    for path, a0 in enumerate_paths(L, K):
        sc = path_score(path, a0, *args)
        if sc > NEG:
            by_path.setdefault(tuple(path), []).append(sc)
            every.append(sc)
    log_z = logsumexp(every)
    ys, lengths, scores = _every_labelling(grammar, codes, em, codon, start, end)
    with torch.no_grad():
        ll = grammar.path_log_likelihood(*scores, ys, lengths).numpy()
    starts, ends, classes, counts = run_pieces(ys.numpy(), lengths.numpy(), K)
    feasible = 0
    for i, value in enumerate(ll):
        pieces = tuple(zip(starts[i, :counts[i]].tolist(), ends[i, :counts[i]].tolist(),
                           classes[i, :counts[i]].tolist()))
        if pieces in by_path:
            feasible += 1
            assert value == pytest.approx(logsumexp(by_path[pieces]) - log_z, abs=1e-9), ys[i].tolist()
        else:
            assert value == NEG, ys[i].tolist()
    assert feasible > 1
    # One path set per labelling, a subset of all paths: the probabilities sum to less than one
    # (the rest is the runs split elsewhere than the gold pieces).
    assert torch.logsumexp(torch.from_numpy(ll), 0).item() < 0


def test_path_likelihood_gradients_match_finite_differences_in_a_padded_batch():
    grammar, codes, em, codon, start, end = random_problem(5, 8, 3)
    y = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([8, 6])  # the second sequence has fewer pieces: padding steps

    def ll(em_, start_, end_, trans, dur):
        with torch.no_grad():
            grammar.transitions.copy_(trans)
            grammar.durations.copy_(dur)
        e, s, t = grammar.state_scores(em_, codon.expand(2, -1, -1), codes.expand(2, -1), lengths, start_, end_)
        return grammar.path_log_likelihood(e, s, t, y, lengths)

    inputs = [x.expand(2, -1, -1).clone().requires_grad_() for x in (em, start, end)]
    assert torch.isfinite(ll(*inputs, grammar.transitions.detach(), grammar.durations.detach())).all()
    assert torch.autograd.gradcheck(lambda *a: ll(*a, grammar.transitions.detach().clone(),
                                                  grammar.durations.detach().clone()).sum(), inputs, eps=1e-6, atol=1e-6)
    grammar.zero_grad()
    ll(*inputs, grammar.transitions.detach().clone(), grammar.durations.detach().clone()).sum().backward()
    for p in grammar.parameters():
        assert torch.isfinite(p.grad).all()
    # The table gradients against central differences of the same function.
    for table in (grammar.transitions, grammar.durations):
        base, grad = table.detach().clone(), table.grad.clone()
        for pos in [(1, 2), (0, 1)] if table is grammar.transitions else [(0, 0), (2, 1), (1, 2)]:
            vals = []
            for sign in (1, -1):
                with torch.no_grad():
                    table.copy_(base)
                    table[pos] += sign * 1e-6
                    e, s, t = grammar.state_scores(inputs[0], codon.expand(2, -1, -1), codes.expand(2, -1), lengths,
                                                   inputs[1], inputs[2])
                    vals.append(grammar.path_log_likelihood(e, s, t, y, lengths).sum().item())
            with torch.no_grad():
                table.copy_(base)
            assert grad[pos].item() == pytest.approx((vals[0] - vals[1]) / 2e-6, abs=1e-5), pos


# ----------------------------------------------------------------------------- tail states of long runs
def test_tail_states_double_only_intergenic_and_introns():
    for C, plain, tailed, all_tailed in ((3, 16, 26, 32), (5, 43, 62, 80)):
        states = gg.make_states(gg.LAYOUTS[C], tails=True)
        assert len(gg.make_states(gg.LAYOUTS[C])) == plain and len(states) == tailed
        tails = [s for s in states if s.tail]
        assert {s.kind for s in tails} == {"intergenic", "intron"}
        assert len({s.name for s in states}) == tailed  # every state named apart
        states = gg.make_states(gg.LAYOUTS[C], tails=True, exon_tails=True)
        assert len(states) == all_tailed == len({s.name for s in states})
        assert {s.kind for s in states if s.tail} == {"intergenic", "intron", "open", "inner"} | (
            {"close"} if C == 5 else set())  # a long one-exon gene is open .. close pieces: no single tail
    with pytest.raises(ValueError, match="tails=True"):
        gg.make_states(gg.LAYOUTS[5], exon_tails=True)
    with pytest.raises(ValueError, match="tails=True"):
        gg.make_states(gg.LAYOUTS[5], intron_ends=True)


def test_intron_ends_split_only_the_intron_tails_and_keep_the_other_states_grammar():
    for C, n in ((3, 44), (5, 98)):
        layout = gg.LAYOUTS[C]
        tail, ends = gg.make_states(layout, tails=True), gg.make_states(layout, tails=True, intron_ends=True)
        assert len(ends) == n == len({s.name for s in ends})
        extra = [s for s in ends if s.part]
        assert len(extra) == n - len(tail) and {(s.kind, s.tail) for s in extra} == {("intron", True)}
        assert tail == tuple(s for s in ends if not s.part)  # the other states, in the same order
        m_tail, m_ends = gg.grammar_mask(tail, layout), gg.grammar_mask(ends, layout)
        keep = [i for i, s in enumerate(ends) if not s.part]
        index = {s: i for i, s in enumerate(ends)}
        for i, s in enumerate(ends):
            for j, t in enumerate(ends):
                ok = np.isfinite(m_ends[i, j])
                if s.is_exon and t.kind == "intron" and t.tail:
                    assert ok == (t.part == "first" and np.isfinite(m_tail[tail.index(s), tail.index(
                        gg.GeneState(t.kind, t.strand, t.phase, t.residue, t.cls, t.synthetic_names, True))])), (s, t)
                elif t.is_exon and s.kind == "intron" and s.tail:
                    assert ok == (s.part == "last" and np.isfinite(m_tail[tail.index(
                        gg.GeneState(s.kind, s.strand, s.phase, s.residue, s.cls, s.synthetic_names, True)),
                        tail.index(t)])), (s, t)
                elif s.kind == "intron" and s.tail and t.kind == "intron" and t.tail:
                    same_chain = np.isfinite(m_tail[tail.index(gg.GeneState(
                        "intron", s.strand, s.phase, s.residue, s.cls, s.synthetic_names, True)), tail.index(
                        gg.GeneState("intron", t.strand, t.phase, t.residue, t.cls, t.synthetic_names, True))])
                    assert ok == (same_chain and s.part in ("first", "") and t.part in ("", "last")), (s, t)
                elif not s.part and not t.part:
                    assert ok == np.isfinite(m_tail[tail.index(s), tail.index(t)]), (s, t)
        assert keep == [index[s] for s in tail]
        init, fin = gg.initial_mask(ends), gg.final_mask(ends)
        assert all(np.isneginf(init[i]) and np.isneginf(fin[i]) for i, s in enumerate(ends) if s.part)
    g = gm.GeneGrammar(5, "cpu", 5, tails=True)
    assert g.durations.shape == (5, 5) and g.class_durations().shape == (5, 5)


def gold_tail_bits(pieces, L, tailed, intron_ends=False, intron_classes=(gm.INTRON,)):
    """The state choice of each gold piece: False (plain) for a whole run, True (tail) for a piece of a run
    of several of a tailed class; with intron_ends an intron run's first piece "first" unless it opens the
    sequence, its last "last" unless it ends it."""
    cls = [c for _, _, c in pieces]
    n = len(cls)
    out = []
    for j, (s, e, c) in enumerate(pieces):
        prev_same, next_same = j > 0 and cls[j - 1] == c, j + 1 < n and cls[j + 1] == c
        bit = c in tailed and (prev_same or next_same)
        if bit and intron_ends and c in intron_classes:
            bit = "first" if not prev_same and s > 0 else "last" if not next_same and e < L else True
        out.append(bit)
    return tuple(out)


@pytest.mark.parametrize("seed,L,K,splice,exon_tails,ends,cuts,junctions", [c + (True,) for c in [
    (0, 6, 3, False, False, False, True), (1, 6, 2, False, False, False, True), (2, 5, 5, False, False, False, True),
    (3, 6, 3, True, False, False, True), (4, 7, 4, True, False, False, True), (5, 6, 3, False, True, False, True),
    (6, 6, 2, True, True, False, True), (7, 7, 3, True, True, False, True),
    (8, 7, 2, True, False, True, True), (9, 7, 3, True, False, True, True), (10, 6, 2, False, False, True, True),
    (11, 6, 2, False, False, False, False), (12, 7, 3, True, False, True, False), (13, 7, 2, True, False, True, False),
    (14, 6, 2, True, True, False, False)]] + [
    # An exon's ends scored only at a gene's ends (run --gene-exon-ends gene).
    (15, 6, 3, False, False, False, True, False), (16, 7, 3, True, False, True, False, False),
    (17, 7, 2, True, False, True, True, False), (18, 6, 2, True, True, False, False, False)])
def test_tail_states_match_enumeration(seed, L, K, splice, exon_tails, ends, cuts, junctions):
    # Z, every class labelling's likelihood, and every gold segmentation's likelihood with tail states
    # (and the splice penalties of whole introns; with intron ends, of a long intron's first and last
    # pieces; without cuts scored, a tail piece's start and end scores only at a long intron's outer ends;
    # without junctions, an exon's start score only after intergenic and no end score)
    # against the enumeration of (segmentation, initial frame, plain / tail (/ first / last) choice of each
    # intergenic and intron segment) scored by the class-level tables.
    _check_tail_enumeration(seed, L, K, splice, exon_tails, ends, cuts, junctions)


def _several_cuttings(y, K) -> bool:
    """May the grid layout cut a run of y more than one way: a run of at most K positions across a multiple
    of K (also a first and a last piece), or an exon run of several positions (exons have no tail states:
    their pieces chain anywhere, at the price of the exon -> exon transition)?"""
    cuts = [0] + [i for i in range(1, len(y)) if y[i] != y[i - 1]] + [len(y)]
    return any((e - s <= K and (s // K) != ((e - 1) // K)) or (y[s] == gm.EXON and e - s > 1)
               for s, e in zip(cuts[:-1], cuts[1:]))


@pytest.mark.parametrize("seed,L,K,splice,cuts,junctions", [
    (40, 6, 2, True, False, True), (41, 6, 3, True, False, False), (42, 6, 2, False, True, True)])
def test_grid_cuts_match_enumeration_and_cut_each_run_once(seed, L, K, splice, cuts, junctions):
    # --gene-long-runs grid: intergenic runs get first / last pieces too, and the pieces of a long run meet
    # only on the multiples of K; against the enumeration with those rules (path_score's grid). And the
    # point of it: a labelling has one cutting, so its likelihood (summed over every state path) is its gold
    # segmentation's, but for a run of at most K across the grid (also a first and a last piece) and an exon
    # run of several positions (cut anywhere, each cut paying the exon -> exon transition).
    ys, ll, path_ll = _check_tail_enumeration(seed, L, K, splice, False, True, cuts, junctions, grid=True)
    unique = 0
    for y, a, b in zip(ys.tolist(), ll, path_ll):
        if a > IMPOSSIBLE and not _several_cuttings(y, K):
            unique += 1
            assert b == pytest.approx(a, abs=1e-9), y
    assert unique > 10


def _check_tail_enumeration(seed, L, K, splice, exon_tails, ends, cuts, junctions, grid=False):
    """The body of the two tests above; returns (every labelling (n, L), log P(labelling), log P(gold))."""
    grammar, codes, em, codon, start, end = random_problem(seed, L, K, tails=True, splice=splice,
                                                           exon_tails=exon_tails, intron_ends=ends, score_cuts=cuts,
                                                           exon_junctions=junctions, grid=grid)
    args = numpy_args(grammar, codes, em, codon, start, end)
    pens = tuple(grammar.splice_penalties().tolist()) if splice else None
    exon_pens = tuple(grammar.exon_splice_penalties().tolist()) if splice and exon_tails else None
    by_labels, by_gold, every = {}, {}, []
    for path, a0, tails in enumerate_tail_paths(L, K, exon_tails, ends, grid):
        sc = path_score(path, a0, *args, tails=tails, splice=pens, exon_tails=exon_tails, exon_splice=exon_pens,
                        intron_ends=ends, score_cuts=cuts, exon_junctions=junctions, grid=K if grid else None)
        if sc == NEG:
            continue
        every.append(sc)
        by_labels.setdefault(tuple(path_labels(path, L)), []).append(sc)
        by_gold.setdefault((tuple(path), tails), []).append(sc)
    log_z = logsumexp(every)
    ys, lengths, scores = _every_labelling(grammar, codes, em, codon, start, end)
    with torch.no_grad():
        ll = grammar.log_likelihood(*scores, ys, lengths).numpy()
        path_ll = grammar.path_log_likelihood(*scores, ys, lengths).numpy()
    starts, piece_ends, classes, counts = run_pieces(ys.numpy(), lengths.numpy(), K, grid)
    feasible = 0
    for i, y in enumerate(ys.tolist()):
        truth = by_labels.get(tuple(y))
        if truth is None:
            assert ll[i] < IMPOSSIBLE, y
        else:
            assert ll[i] == pytest.approx(logsumexp(truth) - log_z, abs=1e-9), y
        # The gold pieces: a run of more than one piece is tail pieces, a whole run a plain one.
        n = counts[i]
        pieces = tuple(zip(starts[i, :n].tolist(), piece_ends[i, :n].tolist(), classes[i, :n].tolist()))
        tailed = {gm.INTERGENIC, gm.INTRON} | ({gm.EXON} if exon_tails else set())
        ended = (gm.INTRON, gm.INTERGENIC) if grid else (gm.INTRON,)
        gold = by_gold.get((pieces, gold_tail_bits(pieces, L, tailed, ends, ended)))
        if gold is None:
            assert path_ll[i] == NEG, y
        else:
            feasible += 1
            assert path_ll[i] == pytest.approx(logsumexp(gold) - log_z, abs=1e-9), y
    assert feasible > 1 and any(len(p) > 1 and any(t) for (p, t) in by_gold)
    if ends:  # long introns entered from and left for an exon were among the paths
        assert any("first" in t and "last" in t for (_, t) in by_gold)
    assert torch.logsumexp(torch.from_numpy(ll), 0).item() == pytest.approx(0.0, abs=1e-9)
    # Viterbi's best path over the states against the best enumerated one.
    with torch.no_grad():
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
        classes_, result = grammar.decode(e, s, t, torch.tensor([L]))
    assert result.score.item() == pytest.approx(max(every), abs=1e-9)
    return ys, ll, path_ll


def test_tail_state_gradients_match_finite_differences():
    grammar, codes, em, codon, start, end = random_problem(7, 9, 3, tails=True)
    y = torch.tensor([[0, 0, 0, 0, 1, 2, 2, 2, 2]])  # an intergenic run and an intron run of 4 > K: tails
    lengths = torch.tensor([9])
    e, s, t = grammar.state_scores(em, codon, codes, lengths, start, end)
    value = grammar.path_log_likelihood(e, s, t, y, lengths)
    assert torch.isfinite(value).all()
    value.sum().backward()
    base, grad = grammar.durations.detach().clone(), grammar.durations.grad.clone()
    # Columns 3 and 4 (the tails' laws) get gradient from the gold; so does every plain column.
    for pos in [(1, 3), (1, 4), (0, 4), (0, 1), (2, 0), (1, 2)]:
        vals = []
        for sign in (1, -1):
            with torch.no_grad():
                grammar.durations.copy_(base)
                grammar.durations[pos] += sign * 1e-6
                e, s, t = grammar.state_scores(em, codon, codes, lengths, start, end)
                vals.append(grammar.path_log_likelihood(e, s, t, y, lengths).sum().item())
        assert grad[pos].item() == pytest.approx((vals[0] - vals[1]) / 2e-6, abs=1e-5), pos
    assert grad[1, 3].abs() > 0.1 and grad[1, 4].abs() > 0.1  # the gold's tail pieces are 2 long


def test_splice_penalties_match_the_enumeration_and_its_gradient():
    L, K = 6, 3
    grammar, codes, em, codon, start, end = random_problem(9, L, K, tails=True, splice=True)
    with torch.no_grad():
        grammar.splice_penalty.copy_(torch.tensor([0.7, -0.4], dtype=torch.float64))
    y = (0, 1, 1, 2, 2, 1)  # one whole intron of 2 bases
    e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
    value = grammar.log_likelihood(e, s, t, torch.tensor([y]), torch.tensor([L]))
    value.sum().backward()
    args = numpy_args(grammar, codes, em, codon, start, end)

    def enumerated(raw):
        pens = tuple(torch.nn.functional.softplus(torch.tensor(raw, dtype=torch.float64)).tolist())
        by = {}
        for path, a0, tails in enumerate_tail_paths(L, K):
            sc = path_score(path, a0, *args, tails=tails, splice=pens)
            if sc > NEG:
                by.setdefault(tuple(path_labels(path, L)), []).append(sc)
        log_z = logsumexp([v for vs in by.values() for v in vs])
        return logsumexp(by[y]) - log_z

    raw = [0.7, -0.4]
    assert value.item() == pytest.approx(enumerated(raw), abs=1e-9)
    for i in range(2):
        up, down = list(raw), list(raw)
        up[i] += 1e-6
        down[i] -= 1e-6
        fd = (enumerated(up) - enumerated(down)) / 2e-6
        assert grammar.splice_penalty.grad[i].item() == pytest.approx(fd, abs=1e-5)
    assert grammar.splice_penalty.grad.abs().sum() > 1e-3
    with pytest.raises(ValueError, match="tails"):
        gm.GeneGrammar(K, "cpu", tails=False, splice_sites=True)


def test_a_checkpoint_from_before_the_exon_side_checks_loads_with_them_off():
    # A tail-exons + splice-sites model saved before the exon-side checks has no exon_splice_penalty: it
    # loads with those penalties exactly 0, so its scores are what they were; a new one starts at 5 nats.
    old = gm.GeneGrammar(6, "cpu", 5, tails=True, splice_sites=True, exon_tails=True).double()
    assert old.exon_splice_penalties().min().item() > 4.9
    state = {k: v for k, v in old.state_dict().items() if k != "exon_splice_penalty"}
    old.load_state_dict(state)
    assert old.exon_splice_penalties().tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="splice_penalty"):  # a state without any splice table still fails
        old.load_state_dict({k: v for k, v in state.items() if k != "splice_penalty"})
    assert gm.GeneGrammar(6, "cpu", 5, tails=True, splice_sites=True).exon_splice_penalties().tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------- frame and stop codons
def _gene_sequence(intron_length, stop_at=None, total=30):
    """intergenic [0, 3), exon [3, 9), intron [9, 9 + d), exon to the end; bases C except a TAA at stop_at."""
    codes = torch.full((1, total), C)
    if stop_at is not None:
        codes[0, stop_at:stop_at + 3] = torch.tensor([T, A, A])
    y = torch.full((1, total), gm.EXON)
    y[0, :3] = gm.INTERGENIC
    y[0, 9:9 + intron_length] = gm.INTRON
    return codes, y


def _gold_ll(codes, y, K=12):
    grammar = gm.GeneGrammar(K, "cpu").double()
    L = torch.tensor([codes.shape[1]])
    z = torch.zeros(1, codes.shape[1], 3, dtype=torch.float64)
    with torch.no_grad():
        e, s, t = grammar.state_scores(z, z, codes, L, z, z)
        return grammar.log_likelihood(e, s, t, y, L).item()


@pytest.mark.parametrize("intron_length", [9, 10, 11])  # every length mod 3
def test_frame_is_carried_across_an_intron(intron_length):
    # The first exon starts at 3 (phase 0); the second starts at 9 + d and reads codon position
    # (t - d) mod 3. A TAA there is fatal in that frame only.
    s2 = 9 + intron_length
    in_frame = s2 + 3 + (intron_length - s2) % 3  # (u - d) mod 3 == 0, well inside the exon
    assert (in_frame - intron_length) % 3 == 0
    assert _gold_ll(*_gene_sequence(intron_length)) > IMPOSSIBLE
    assert _gold_ll(*_gene_sequence(intron_length, in_frame)) < IMPOSSIBLE
    for shift in (1, 2):
        assert _gold_ll(*_gene_sequence(intron_length, in_frame + shift)) > IMPOSSIBLE


def test_first_exon_frame_starts_at_its_first_base():
    # A stop at codon position 0 of the first exon (start 3) is fatal; at position 1 it is not.
    assert _gold_ll(*_gene_sequence(10, 3)) < IMPOSSIBLE
    assert _gold_ll(*_gene_sequence(10, 4)) > IMPOSSIBLE
    # A stop codon cut by the end of the first exon (bases 7, 8 | intron 9) is allowed.
    assert _gold_ll(*_gene_sequence(10, 7)) > IMPOSSIBLE


def test_stop_codons_match_the_oracle_helper():
    g = torch.Generator().manual_seed(3)
    codes = torch.randint(0, 5, (3, 200), generator=g)
    lengths = torch.tensor([200, 150, 3])
    got = gm.stop_codon_starts(codes, lengths)
    for i, n in enumerate(lengths.tolist()):
        assert np.array_equal(got[i, :n].numpy(), _stop_starts(codes[i, :n].numpy()))
        assert not got[i, n:].any()


def _valid_frame_exists(codes, labels):
    """Does some initial frame make the class labelling (runs as segments) a valid gene structure?"""
    runs, s = [], 0
    for e in range(1, len(labels) + 1):
        if e == len(labels) or labels[e] != labels[s]:
            runs.append((s, e, int(labels[s])))
            s = e
    z3 = np.zeros((len(labels), 3))
    dur = np.zeros((len(labels), 3))
    zc = np.zeros((3, 3))
    return any(path_score(runs, a0, codes, z3, z3, z3, z3, zc, dur, np.zeros(3), np.zeros(3)) > NEG
               for a0 in ([None] if runs[0][2] == gm.INTERGENIC else range(3)))


def test_decoding_never_reads_an_in_frame_stop():
    # Emissions that want exons everywhere, on stop-rich sequences: Viterbi must still obey the
    # frame and the stops (and the grammar), whatever the scores.
    g = torch.Generator().manual_seed(7)
    B, L, K = 6, 120, 20
    grammar = gm.GeneGrammar(K, "cpu").double()
    codes = torch.multinomial(torch.tensor([0.3, 0.05, 0.25, 0.4]), B * L, replacement=True, generator=g).view(B, L)
    em = torch.randn(B, L, 3, generator=g, dtype=torch.float64)
    em[:, :, gm.EXON] += 3.0
    codon = torch.randn(B, L, 3, generator=g, dtype=torch.float64)
    lengths = torch.tensor([120, 100, 77, 120, 50, 9])
    with torch.no_grad():
        classes, _ = grammar.decode(*grammar.state_scores(em, codon, codes, lengths), lengths)
    assert (classes == gm.EXON).sum() > 0
    for i, n in enumerate(lengths.tolist()):
        assert _valid_frame_exists(codes[i, :n].numpy(), classes[i, :n].numpy())
        assert (classes[i, n:] == -1).all()


def _padded_generated(seqs):
    """(codes (B, L) padded with N, labels (B, L), lengths (B,)) of generated sequences."""
    L = max(len(s.codes) for s in seqs)
    codes = torch.full((len(seqs), L), 4)
    y = torch.zeros(len(seqs), L, dtype=torch.int64)
    for i, s in enumerate(seqs):
        codes[i, :len(s.codes)] = torch.from_numpy(s.codes.astype(np.int64))
        y[i, :len(s.labels)] = torch.from_numpy(s.labels)
    return codes, y, torch.tensor([len(s.codes) for s in seqs])


def test_synthetic_realistic_truth_is_never_ruled_out():
    # The hard constraints (stops, frame, AG-read split codons) never forbid a generated gene.
    from semicrf.genomics import synthetic as syn

    config = syn.GeneratorConfig(content="realistic", seq_length=6000)
    seqs = list(syn.generate_sequences(config, 4, seed=5))
    codes, y, lengths = _padded_generated(seqs)
    L = codes.shape[1]
    assert (y == gm.INTRON).any()
    grammar = gm.GeneGrammar(600, "cpu").double()
    z = torch.zeros(4, L, 3, dtype=torch.float64)
    with torch.no_grad():
        ll = grammar.log_likelihood(*grammar.state_scores(z, z, codes, lengths, z, z), y, lengths)
    assert (ll > -50 * lengths).all() and (ll <= 1e-9).all(), ll


# ----------------------------------------------------------------------------- the benchmark model
CONFIG = ModelConfig(input_dim=256, num_classes=3, encoder="bilstm", hidden_dim=8, num_layers=1, max_duration=10,
                     backend="cpu")


def _onehot_batch(seed, lengths):
    g = torch.Generator().manual_seed(seed)
    T_ = max(lengths)
    codes = torch.randint(0, 4, (len(lengths), T_), generator=g)
    x = torch.nn.functional.one_hot(codes, 5).double()
    # A gene-shaped labelling: intergenic, exon, intron, exon, intergenic ...
    unit = [0] * 5 + [1] * 7 + [2] * 6 + [1] * 5
    y = torch.tensor((unit * (T_ // len(unit) + 1))[:T_]).repeat(len(lengths), 1)
    return x, y, torch.tensor(lengths)


def test_inner_cuts_reach_the_grammar_and_old_configs_keep_them_scored():
    # ModelConfig without gene_inner_cuts (a checkpoint's config from before it) builds the scored
    # grammar; free clears the start (end) scores of the tail pieces that are no run's first (last).
    old = build_model("semicrf_gene", CONFIG)
    assert old.crf.score_cuts and bool(old.crf.outer_start.all()) and bool(old.crf.outer_end.all())
    new = build_model("semicrf_gene", dataclasses.replace(CONFIG, gene_inner_cuts="free"))
    for state, s, e in zip(new.crf.states, new.crf.outer_start.tolist(), new.crf.outer_end.tolist()):
        assert s == (not state.tail or state.part == "first") and e == (not state.tail or state.part == "last")
    assert any(st.part == "first" for st in new.crf.states)  # the default layout tells the ends apart
    with pytest.raises(ValueError, match="gene_inner_cuts"):
        dataclasses.replace(CONFIG, gene_inner_cuts="none")


def test_exon_ends_reach_the_grammar_and_old_configs_keep_every_exon_end():
    # ModelConfig without gene_exon_ends (a checkpoint's config from before it) scores every exon end;
    # "gene" leaves an exon state's start score to the states that open a gene and its end score to those
    # that close one (none in the synthetic layout), and every other state as it was.
    old = build_model("semicrf_gene", CONFIG)
    assert old.crf.exon_junctions
    new = build_model("semicrf_gene", dataclasses.replace(CONFIG, gene_exon_ends="gene"))
    assert not new.crf.exon_junctions
    for state, s0, e0, s1, e1 in zip(new.crf.states, old.crf.outer_start.tolist(), old.crf.outer_end.tolist(),
                                     new.crf.outer_start.tolist(), new.crf.outer_end.tolist()):
        assert s1 == (s0 and (not state.is_exon or state.kind == "open"))
        assert e1 == (e0 and not state.is_exon)
    assert any(st.kind == "open" for st in new.crf.states)
    with pytest.raises(ValueError, match="gene_exon_ends"):
        dataclasses.replace(CONFIG, gene_exon_ends="junctions")


def test_registry_builds_the_model_and_it_reads_one_hot_bases():
    assert "semicrf_gene" in parse_model_list("semicrf_gene,softmax")
    torch.manual_seed(0)
    model = build_model("semicrf_gene", CONFIG)
    assert model.model_name == "semicrf_gene" and model.feature_kind == "onehot"
    assert model.config.input_dim == 5  # whatever --features says, it reads bases
    assert model.duration_scores().shape == (10, 3) and model.max_duration == 10
    assert any(n.startswith("crf.") for n, _ in model.named_parameters())  # the runner's CRF learning rate
    with pytest.raises(ValueError, match="one-hot"):
        model.double().loss(torch.zeros(1, 8, 4, dtype=torch.float64), torch.zeros(1, 8, dtype=torch.int64),
                            torch.tensor([8]))


@pytest.mark.parametrize("meta,match", [
    ({"num_classes": 3, "config": {"content": "random", "splice_motifs": True}}, "realistic"),
    ({"num_classes": 3, "config": {"content": "realistic", "splice_motifs": False}}, "AG"),
    ({"num_classes": 5, "config": {"content": "realistic", "splice_motifs": True}}, "C = 3"),
    ({"num_classes": 3, "config": {"source": "imported"}}, "imported"),
])
def test_unsupported_data_is_refused_clearly(meta, match):
    with pytest.raises(ValueError, match=match):
        build_model("semicrf_gene", CONFIG, meta)
    build_model("semicrf_gene", CONFIG, {"num_classes": 3, "config": {"content": "realistic", "splice_motifs": True}})


def test_loss_and_predictions_ignore_padding():
    torch.manual_seed(1)
    model = build_model("semicrf_gene", CONFIG).double()
    x, y, lengths = _onehot_batch(2, (30, 22, 9))
    x[1, 22:] = 1e3  # garbage past the length
    y[1, 22:] = 2
    with torch.no_grad():
        whole = model.loss(x, y, lengths).item()
        parts = [model.loss(x[i:i + 1, :n], y[i:i + 1, :n], lengths[i:i + 1]).item()
                 for i, n in enumerate(lengths.tolist())]
        preds = model.predict(x, lengths)
        singles = [model.predict(x[i:i + 1, :n], lengths[i:i + 1])[0] for i, n in enumerate(lengths.tolist())]
    assert math.isfinite(whole)
    assert whole == pytest.approx(sum(p * n for p, n in zip(parts, lengths.tolist())) / lengths.sum().item(),
                                  rel=1e-9)
    for a, b, n in zip(preds, singles, lengths.tolist()):
        assert a.dtype == np.int64 and len(a) == n and np.array_equal(a, b)


def _adam_losses(model, x, y, lengths, lr: float, steps: int) -> list[float]:
    """The training loss of each of ``steps`` Adam steps of ``model`` on one batch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model.loss(x, y, lengths)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_it_trains_on_tiny_realistic_data():
    from semicrf.genomics import synthetic as syn

    small = {"intergenic": syn.DurationModel(40, 0.3, 20, 80), "exon": syn.DurationModel(30, 0.3, 15, 60),
             "intron": syn.DurationModel(40, 0.3, 25, 70)}
    config = syn.GeneratorConfig(content="realistic", seq_length=300, durations={**syn.DEFAULT_DURATIONS, **small})
    seqs = list(syn.generate_sequences(config, 4, seed=1))
    codes, y, lengths = _padded_generated(seqs)
    L = codes.shape[1]
    x = torch.nn.functional.one_hot(codes, 5).float() * (torch.arange(L)[None, :, None] < lengths[:, None, None])
    torch.manual_seed(0)
    model = build_model("semicrf_gene", ModelConfig(input_dim=5, num_classes=3, encoder="bilstm", hidden_dim=16,
                                                    num_layers=1, max_duration=64, backend="cpu"))
    losses = _adam_losses(model, x, y, lengths, lr=0.03, steps=15)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
    with torch.no_grad():
        preds = model.predict(x, lengths)
    assert [len(p) for p in preds] == lengths.tolist()


# ============================================================================= real data: both strands
# Classes of imported genes: 0 intergenic, 1 exon+, 2 intron+, 3 exon-, 4 intron-. The truth below
# is written from the gene, not from the model's 43 states: a + gene reads left to right from an ATG
# at its first exon's first base to the last base before a stop codon (labelled intergenic); a - gene
# is the reverse complement of one, so on + coordinates it runs from a stop codon read as TTA, CTA or
# TCA (intergenic, left of its leftmost exon) to a CAT ending its rightmost exon. The frame pins
# codon positions (+: (t - a) mod 3, - : (a - t) mod 3 with an absolute phase a) and an intron moves
# it by its length. A codon cut by a segment end is read from the raw sequence (the model's documented
# reading: + codons marked at their third base, - codons at their leftmost base).
XP, NP_, XM, NM = 1, 2, 3, 4
STRAND_OF = {XP: "+", NP_: "+", XM: "-", NM: "-"}
STOPS_MINUS = {(T, T, A), (C, T, A), (T, C, A)}
ATG, CAT = (A, T, G), (C, A, T)
NEXT = {0: {0, XP, XM}, XP: {XP, NP_, 0}, NP_: {XP, NP_}, XM: {XM, NM, 0}, NM: {XM, NM}}
KIND = [0, 1, 2, 1, 2]  # duration column: the strands share one law


def codon_at(codes, u):
    return tuple(int(x) for x in codes[u:u + 3]) if 0 <= u and u + 3 <= len(codes) else None


def codon_in(codes, u, codons):
    """Is the codon at u, u+1, u+2 one of ``codons``? A base past either end of the sequence is
    unknown and matches anything (the locus's flank may cut a gene's start or stop codon)."""
    return any(all(not 0 <= u + j < len(codes) or codes[u + j] == b for j, b in enumerate(cod)) for cod in codons)


SPLICE = {"+": ((G, T), (A, G)), "-": ((C, T), (A, C))}  # an intron's first and last two bases, read on +


def enumerate_genes(codes, em, codon, start, end, trans, dur, init, final, tails=False, exon_tails=False,
                    splice=None, exon_splice=None, with_tails=False, intron_ends=False, exon_junctions=True):
    """Yield (class path [(s, e, c)], score) for every valid gene structure, pruning as soon as a
    rule fails. codon: (L, 6) codon-position scores, + strand's 3 then - strand's 3.

    tails: every intergenic and intron segment is also tried as a *tail* piece (and every exon segment
    with exon_tails): only a tail piece continues a run of its class (exons without exon_tails
    continue plain to plain), a tail piece is scored by duration column 3 (intergenic), 4 (intron) or
    5 (exon), and a lone tail exon piece cannot be a whole one-exon gene. splice: (donor, acceptor)
    penalties of a plain intron whose first / last two bases are not its strand's (a base outside the
    sequence matches). exon_splice: the same for a plain exon with exon_tails, on the two bases after
    it when an intron follows, and before it when an intron precedes it or it opens the sequence.
    with_tails: yield (path, score, the tail bit of each segment) instead. intron_ends: an intron tail
    piece is also "first" (after an exon: only its first two bases checked) or "last" (before an exon:
    only its last two); True is then a middle piece (after a first or middle piece or opening the
    sequence, before a middle or last piece or ending it). exon_junctions=False: an exon segment takes its
    start score only after intergenic and its end score only before it (a gene's outer ends)."""
    L, K = len(codes), dur.shape[0]
    tailed = {0, NP_, NM} | ({XP, XM} if exon_tails else set()) if tails else set()

    def canonical(u, pair):  # are the bases u, u + 1 the pair? (a base outside the sequence matches)
        return all(not 0 <= u + j < L or codes[u + j] == b for j, b in enumerate(pair))

    def exon_ok(s, e, strand, a):
        for u in range(max(0, s - 2), e):
            if strand == "+" and s <= u + 2 < e and (u - a) % 3 == 0 and codon_at(codes, u) in STOPS:
                return False
            if strand == "-" and s <= u < e and (a - u) % 3 == 2 and codon_at(codes, u) in STOPS_MINUS:
                return False
        return True

    def closes(e, strand, a):  # may an exon run ending at e be followed by intergenic?
        if strand == "+":
            return (e - a) % 3 == 0 and codon_in(codes, e, STOPS)
        return (a - (e - 1)) % 3 == 0 and codon_in(codes, e - 3, [CAT])

    def walk(s, path, phase, score, bits=()):
        if s == L:
            c = path[-1][2]
            if bits and bits[-1] in ("first", "last"):
                return  # a long intron's first or last piece never ends a sequence
            yield (list(path), score + final[c]) + ((bits,) if with_tails else ())
            return
        prev_tail = bool(bits) and bits[-1]
        prev = path[-1][2] if path else None
        choices = (False, True, "first", "last") if intron_ends else (False, True)
        for d, tail in itertools.product(range(1, min(K, L - s) + 1), choices):
            e = s + d
            for c in (range(5) if prev is None else NEXT[prev]):
                if tail and c not in tailed:
                    continue
                if c == prev and c in tailed and not (tail and prev_tail):
                    continue  # only a tail piece continues a run
                if isinstance(tail, str) and c not in (NP_, NM):
                    continue
                if intron_ends and c in (NP_, NM):
                    after = "exon" if prev in (XP, XM) else "run" if prev == c else "start"
                    may = {"exon": (False, "first"), "run": (True, "last"), "start": (False, True)}[after]
                    if tail not in may or (after == "run" and prev_tail not in ("first", True)):
                        continue
                if intron_ends and c in (XP, XM) and prev in (NP_, NM) and prev_tail not in (False, "last"):
                    continue
                strand = STRAND_OF.get(c)
                col = ({0: 3, NP_: 4, NM: 4, XP: 5, XM: 5}[c] if tail else KIND[c])
                sc = score + (init[c] if prev is None else trans[prev, c]) + dur[d - 1, col]
                gene_end_only = not exon_junctions and c in (XP, XM)
                sc += em[s:e, c].sum() + (0.0 if gene_end_only and prev != 0 else start[s, c])
                sc += 0.0 if gene_end_only else end[e - 1, c]
                if c == 0 and prev in (XP, XM) and not exon_junctions:
                    sc += end[s - 1, prev]  # the exon before closed its gene
                if prev in (XP, XM) and c == 0 and not closes(s, STRAND_OF[prev], phase):
                    continue
                if prev in (XP, XM) and c == 0 and prev_tail and len(path) > 1 and path[-2][2] == 0:
                    continue  # one tail exon piece between intergenic: a one-exon gene has no tail copy
                if c in (NP_, NM) and tail in (False, "first", "last") and splice is not None:
                    first, last = SPLICE[strand]
                    sc -= (splice[0] * (not canonical(s, first)) * (tail != "last")
                           + splice[1] * (not canonical(e - 2, last)) * (tail != "first"))
                if exon_splice is not None:
                    if c in (NP_, NM) and prev in (XP, XM) and not prev_tail:  # a whole exon before an intron
                        sc -= exon_splice[0] * (not canonical(s, SPLICE[strand][0]))
                    if c in (XP, XM) and not tail and prev in (None, NP_, NM):  # a whole exon after one
                        sc -= exon_splice[1] * (not canonical(s - 2, SPLICE[strand][1]))
                if c == 0:
                    yield from walk(e, path + [(s, e, c)], None, sc, bits + (tail,))
                    continue
                if prev is None:
                    phases = range(3)  # the sequence opens inside a gene: its frame is free
                elif prev == 0:  # a gene's first segment (left to right): an exon that opens the gene
                    if c in (NP_, NM):
                        continue
                    if strand == "+":
                        if not codon_in(codes, s, [ATG]):
                            continue
                        phases = [s % 3]
                    else:
                        if not codon_in(codes, s - 3, STOPS_MINUS):
                            continue
                        phases = [(s + 2) % 3]  # s is the last base of a codon, read right to left
                else:
                    phases = [phase]
                for a in phases:
                    if c in (XP, XM):
                        if not exon_ok(s, e, strand, a):
                            continue
                        j = 0 if strand == "+" else 3
                        pos = [(t - a) % 3 if strand == "+" else (a - t) % 3 for t in range(s, e)]
                        extra = sum(codon[t, j + p] for t, p in zip(range(s, e), pos))
                        yield from walk(e, path + [(s, e, c)], a, sc + extra, bits + (tail,))
                    else:
                        yield from walk(e, path + [(s, e, c)], (a + d) % 3, sc, bits + (tail,))

    yield from walk(0, [], None, 0.0)


def brute5(codes, em, codon, start, end, trans, dur, init, final, exon_junctions=True):
    return by_labelling(enumerate_genes(codes, em, codon, start, end, trans, dur, init, final,
                                        exon_junctions=exon_junctions), len(codes))


MOTIFS = ["ATG", "CAT", "TAA", "TGA", "TAG", "TTA", "CTA", "TCA", "A", "C", "G", "T", "GT", "AG", "CT", "AC"]


def motif_sequence(g, L):
    """Random bases made of start / stop motifs (both strands) and splice dinucleotides, so that short
    sequences hold genes on both strands."""
    out = ""
    while len(out) < L:
        out += MOTIFS[int(torch.randint(len(MOTIFS), (1,), generator=g))]
    return torch.tensor(["ACGT".index(b) for b in out[:L]])[None]


def random_problem5(seed, L, K, backend="cpu", codes=None, **grammar_options):
    g = torch.Generator().manual_seed(seed)
    grammar = gm.GeneGrammar(K, backend, 5, **grammar_options).double()
    with torch.no_grad():
        for p in grammar.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    codes = motif_sequence(g, L) if codes is None else codes
    em, start, end = (torch.randn(1, L, 5, generator=g, dtype=torch.float64) for _ in range(3))
    codon = torch.randn(1, L, 6, generator=g, dtype=torch.float64)
    return grammar, codes, em, codon, start, end


def numpy_args5(grammar, codes, em, codon, start, end):
    n = lambda x: x.detach()[0].numpy()  # noqa: E731
    return (codes[0].numpy(), n(em), n(codon), n(start), n(end), grammar.transitions.detach().numpy(),
            grammar.durations.detach().numpy(), grammar.initial.detach().numpy(), grammar.final.detach().numpy())


def model_ll5(grammar, codes, em, codon, start, end, ys):
    n, L = ys.shape
    lengths = torch.full((n,), L)
    with torch.no_grad():
        e, s, t = grammar.state_scores(em.expand(n, -1, -1), codon.expand(n, -1, -1), codes.expand(n, -1), lengths,
                                       start.expand(n, -1, -1), end.expand(n, -1, -1))
        return grammar.log_likelihood(e, s, t, ys, lengths).numpy()


def grammatical_labellings(L):
    """Every class labelling whose runs follow the class grammar (others are impossible on any sequence)."""
    out = [[c] for c in range(5)]
    for _ in range(L - 1):
        out = [y + [c] for y in out for c in range(5) if c == y[-1] or c in NEXT[y[-1]]]
    return torch.tensor(out, dtype=torch.int64)


def test_two_strand_grid_cuts_each_run_once():
    # --gene-long-runs grid on real data (both strands, 100 states): a labelling's likelihood, summed over
    # every state path, is its gold segmentation's (cut on the multiples of K), but where a run of at most K
    # crosses the grid or an exon run is longer than K (exons chain pieces anywhere; the exon -> exon
    # transitions are set to -200 here so that splitting a short exon costs e^-200). Against each other:
    # the engine's constrained sweep and the forward over the gold pieces.
    L, K = 9, 3
    grammar, codes, em, codon, start, end = random_problem5(31, L, K, splice_sites=True, score_cuts=False,
                                                            **gm.long_run_states("grid"))
    assert grammar.num_states == 100
    with torch.no_grad():
        grammar.transitions[XP, XP] = grammar.transitions[XM, XM] = -200.0
    ys = grammatical_labellings(L)
    n = ys.shape[0]
    lengths = torch.full((n,), L)
    with torch.no_grad():
        e, s_, t = grammar.state_scores(em.expand(n, -1, -1), codon.expand(n, -1, -1), codes.expand(n, -1), lengths,
                                        start.expand(n, -1, -1), end.expand(n, -1, -1))
        ll = grammar.log_likelihood(e, s_, t, ys, lengths).numpy()
        path_ll = grammar.path_log_likelihood(e, s_, t, ys, lengths).numpy()
    checked = 0
    for y, a, b in zip(ys.tolist(), ll, path_ll):
        cuts = [0] + [i for i in range(1, L) if y[i] != y[i - 1]] + [L]
        runs = list(zip(cuts[:-1], cuts[1:]))
        leak = any((y[s] in (0, NP_, NM) and e_ - s <= K and s // K != (e_ - 1) // K) or
                   (y[s] in (XP, XM) and e_ - s > K) for s, e_ in runs)
        if a > IMPOSSIBLE and not leak:
            checked += 1
            assert b == pytest.approx(a, abs=1e-9), y
    assert checked > 20, checked


DESIGNED = ["CATGTAAC", "TTACATGC", "GTTACATC", "CATGCTAA"]  # + gene, - gene, - gene, + gene / - stop
# Genes with splice dinucleotides in reach: + ATG GT.AG, - CT.AC around short introns, and mixed.
SPLICED = ["ATGTAGCT", "TTACTACA", "ATGTAGTA", "TTAGTCAT"]


@pytest.mark.parametrize("seed,L,K,design,junctions", [
    (0, 8, 4, 0, True), (1, 8, 3, 1, True), (2, 8, 4, None, True), (3, 9, 3, None, True), (4, 8, 8, 2, True),
    (5, 8, 4, 3, True), (6, 8, 4, 0, False), (7, 8, 3, 1, False), (8, 9, 3, None, False)])
def test_two_strand_likelihoods_match_enumeration(seed, L, K, design, junctions):
    # junctions=False: an exon's start and end scores only at a gene's outer ends (--gene-exon-ends gene).
    codes = None if design is None else torch.tensor(["ACGT".index(b) for b in DESIGNED[design]])[None]
    grammar, codes, em, codon, start, end = random_problem5(seed, L, K, codes=codes, exon_junctions=junctions)
    assert grammar.num_states == 43
    log_z, label_ll, (best_score, best_labels) = brute5(*numpy_args5(grammar, codes, em, codon, start, end),
                                                        exon_junctions=junctions)
    ys = grammatical_labellings(L)
    ll = model_ll5(grammar, codes, em, codon, start, end, ys)
    for y, value in zip(ys.tolist(), ll):
        truth = label_ll.get(tuple(y), NEG)
        if truth == NEG:
            assert value < IMPOSSIBLE, (y, value)
        else:
            assert value == pytest.approx(truth, abs=1e-9), y
    assert len(label_ll) > 1
    # Every feasible labelling is grammatical, so the model's probabilities over them sum to one.
    assert set(label_ll) <= {tuple(y) for y in ys.tolist()}
    assert torch.logsumexp(torch.from_numpy(ll), 0).item() == pytest.approx(0.0, abs=1e-9)
    # Some labellings off the grammar are impossible too.
    for y in ([0, 2] + [0] * (L - 2), [1, 3] + [0] * (L - 2), [4] * (L - 1) + [0]):
        assert model_ll5(grammar, codes, em, codon, start, end, torch.tensor([y]))[0] < IMPOSSIBLE
    with torch.no_grad():
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
        classes, result = grammar.decode(e, s, t, torch.tensor([L]))
    assert result.score.item() == pytest.approx(best_score, abs=1e-9)
    assert tuple(classes[0].tolist()) == best_labels
    if design is not None:  # the designed sequence holds a whole gene (it opens and closes in it)
        assert any(0 in y[:3] and 0 in y[-2:] and (XP in y or XM in y) for y in label_ll)


@pytest.mark.slow
@pytest.mark.parametrize("seed,L,K,design,exon_tails,ends", [
    (30, 8, 3, 0, False, False), (31, 8, 4, 1, False, False), (32, 8, 3, 2, True, False),
    (33, 8, 4, 3, True, False), (34, 7, 3, None, True, False), (35, 8, 2, 0, False, True),
    (36, 8, 2, 1, False, True), (37, 7, 3, None, False, True)])
def test_two_strand_tail_states_and_splice_sites_match_enumeration(seed, L, K, design, exon_tails, ends):
    # The 62 (80) states with the splice checks on both strands: every class labelling's likelihood,
    # every gold segmentation's (the training objective) and Viterbi's best path, against the enumeration
    # of every gene structure with every plain / tail choice, scored with the class-level tables and the
    # splice rules as the module docstring writes them (intron side; with exon tails, exon side too).
    codes = None if design is None else torch.tensor(["ACGT".index(b) for b in SPLICED[design]])[None]
    grammar, codes, em, codon, start, end = random_problem5(seed, L, K, codes=codes, tails=True, splice_sites=True,
                                                            exon_tails=exon_tails, intron_ends=ends)
    assert grammar.num_states == (80 if exon_tails else 98 if ends else 62)
    pens = tuple(grammar.splice_penalties().tolist())
    exon_pens = tuple(grammar.exon_splice_penalties().tolist()) if exon_tails else None
    assert exon_tails == (exon_pens is not None and min(exon_pens) > 0.01)
    found = list(enumerate_genes(*numpy_args5(grammar, codes, em, codon, start, end), tails=True,
                                 exon_tails=exon_tails, splice=pens, exon_splice=exon_pens, with_tails=True,
                                 intron_ends=ends))
    log_z, label_ll, (best_score, _) = by_labelling(((p, sc) for p, sc, _ in found), L)
    by_gold = {}
    for path, sc, bits in found:
        by_gold.setdefault((tuple(path), bits), []).append(sc)
    ys, lengths, scores = _every_labelling(grammar, codes, em, codon, start, end, grammatical_labellings(L))
    with torch.no_grad():
        ll = grammar.log_likelihood(*scores, ys, lengths).numpy()
        path_ll = grammar.path_log_likelihood(*scores, ys, lengths).numpy()
    starts, piece_ends, classes, counts = run_pieces(ys.numpy(), lengths.numpy(), K)
    tailed = {0, NP_, NM} | ({XP, XM} if exon_tails else set())
    whole_gold = 0
    for i, y in enumerate(ys.tolist()):
        truth = label_ll.get(tuple(y), NEG)
        if truth == NEG:
            assert ll[i] < IMPOSSIBLE, y
        else:
            assert ll[i] == pytest.approx(truth, abs=1e-9), y
        m = counts[i]
        pieces = tuple(zip(starts[i, :m].tolist(), piece_ends[i, :m].tolist(), classes[i, :m].tolist()))
        gold = by_gold.get((pieces, gold_tail_bits(pieces, L, tailed, ends, (NP_, NM))))
        if gold is None:
            assert path_ll[i] < IMPOSSIBLE, y
        else:
            whole_gold += 1
            assert path_ll[i] == pytest.approx(logsumexp(gold) - log_z, abs=1e-9), y
    assert whole_gold > 1 and len(label_ll) > 1
    if ends:  # long introns between exons were among the gene structures
        assert any("first" in b and "last" in b for (_, b) in by_gold)
    assert torch.logsumexp(torch.from_numpy(ll), 0).item() == pytest.approx(0.0, abs=1e-9)
    with torch.no_grad():
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
        _, result = grammar.decode(e, s, t, torch.tensor([L]))
    assert result.score.item() == pytest.approx(best_score, abs=1e-9)


def test_two_strand_gradients_are_those_of_the_enumerated_likelihood():
    # The duration table is shared by the strands: its gradient sums both strands' use of it.
    L, K = 8, 4
    codes = torch.tensor(["ACGT".index(b) for b in "TTACATGA"])[None]
    grammar, codes, em, codon, start, end = random_problem5(21, L, K, codes=codes)
    y = (0, 0, 0, 3, 3, 3, 0, 0)
    e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
    grammar.log_likelihood(e, s, t, torch.tensor([y]), torch.tensor([L])).sum().backward()
    args = list(numpy_args5(grammar, codes, em, codon, start, end))
    _assert_table_grads(args, brute5, y, ((5, grammar.transitions.grad, [(0, 3), (3, 0), (0, 1)]),
                                          (6, grammar.durations.grad, [(2, 1), (0, 0), (2, 0), (1, 2)])))


# ----------------------------------------------------------------------------- start, stop, frame by strand
TO_MINUS = {0: 0, XP: XM, NP_: NM}


def plus_locus(exons, introns=(), flank="CC", stop="TAA", right=None):
    """A + gene: flank, exons (sense strings, the first starting with ATG) joined by introns, the stop
    codon (intergenic), the right flank. Returns (bases, labels)."""
    right = flank if right is None else right
    seq, lab = flank, [0] * len(flank)
    for i, ex in enumerate(exons):
        seq, lab = seq + ex, lab + [XP] * len(ex)
        if i < len(introns):
            seq, lab = seq + introns[i], lab + [NP_] * len(introns[i])
    seq += stop + right
    return seq, lab + [0] * (len(stop) + len(right))


def to_minus(locus):
    """The same gene on the other strand: reverse complement, labels reversed, + classes made -."""
    seq, lab = locus
    rc = "".join({"A": "T", "C": "G", "G": "C", "T": "A"}[b] for b in reversed(seq))
    return rc, [TO_MINUS[c] for c in reversed(lab)]


def feasible(locus, K=6):
    """Is the labelling a gene structure the hard rules allow? Best consistent path at zero scores:
    0 when one exists, at most -1e4 (or -inf) when none does (a max, so exact at any length)."""
    seq, lab = locus
    L = len(seq)
    grammar = gm.GeneGrammar(K, "cpu", 5).double()
    codes = torch.tensor([["ACGT".index(b) for b in seq]])
    y = torch.tensor([lab])
    z5, z6 = torch.zeros(1, L, 5, dtype=torch.float64), torch.zeros(1, L, 6, dtype=torch.float64)
    with torch.no_grad():
        e, s, t = grammar.state_scores(z5, z6, codes, torch.tensor([L]), z5, z5)
        _, result = grammar.decode(*grammar.constrain(e, s, t, y), torch.tensor([L]))
    return result.score.item() > IMPOSSIBLE


@pytest.mark.parametrize("strand", ["+", "-"])
def test_start_and_stop_codons_are_required_on_both_strands(strand):
    flip = (lambda x: x) if strand == "+" else to_minus
    good = plus_locus(["ATGCCC", "GCC"], ["GTCCAG"])
    assert feasible(flip(good))
    assert feasible(flip(plus_locus(["ATGCCCGCC"])))  # a one-exon gene
    for stop in ("TAG", "TGA"):
        assert feasible(flip(plus_locus(["ATGCCC", "GCC"], ["GTCCAG"], stop=stop)))
    assert not feasible(flip(plus_locus(["ATCCCC", "GCC"], ["GTCCAG"])))  # no ATG
    assert not feasible(flip(plus_locus(["ATGCCC", "GCC"], ["GTCCAG"], stop="TAC")))  # no stop codon
    assert not feasible(flip(plus_locus(["ATGCCCGCCC"])))  # the stop codon out of frame
    assert not feasible(flip(plus_locus(["ATGCCC", "GCCC"], ["GTCCAG"])))  # a coding length not a multiple of 3
    # The stop codon belongs to the intergenic label: inside the last exon it is an in-frame stop.
    seq, lab = plus_locus(["ATGCCCGCCTAA"], stop="")
    assert not feasible(flip((seq, lab)))


@pytest.mark.parametrize("strand", ["+", "-"])
def test_in_frame_stops_are_forbidden_on_both_strands(strand):
    flip = (lambda x: x) if strand == "+" else to_minus
    assert not feasible(flip(plus_locus(["ATGTAGCCC"])))  # in frame
    assert feasible(flip(plus_locus(["ATGCTAGCC"])))  # TAG out of frame (shift 1)
    assert feasible(flip(plus_locus(["ATGCCTAGC"])))  # and shift 2


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("intron", ["GTCCAG", "GTCCCAG", "GTCCCCAG"])  # every length mod 3
def test_frame_is_carried_across_introns_on_both_strands(strand, intron):
    # Spliced: ATG CC|C TAA GCC holds an in-frame stop; ATG CC|C CTA AGC does not. The second exon's
    # absolute phase moves with the intron's length, the frame of the coding sequence does not.
    flip = (lambda x: x) if strand == "+" else to_minus
    assert not feasible(flip(plus_locus(["ATGCC", "CTAAGCC"], [intron])))
    assert feasible(flip(plus_locus(["ATGCC", "CCTAAGC"], [intron])))
    assert feasible(flip(plus_locus(["ATGCC", "CCTAAGC", "CCA"], [intron, "GTACCCCAG"])))  # two introns
    assert not feasible(flip(plus_locus(["ATGCC", "CCTAAGC", "TAA"], [intron, "GTACCCCAG"])))


@pytest.mark.parametrize("strand", ["+", "-"])
def test_a_sequence_may_open_or_end_inside_a_gene(strand):
    flip = (lambda x: x) if strand == "+" else to_minus
    seq, lab = plus_locus(["ATGCCC", "GCCGCC"], ["GTCCCAG"])
    for cut in range(1, 9):  # the gene's start (ATG, first exon, intron) cut off: its frame is free
        assert feasible(flip((seq[cut:], lab[cut:]))), cut
    for cut in range(1, 9):  # its end (stop codon, last exon) cut off
        assert feasible(flip((seq[:-cut], lab[:-cut]))), cut
    assert feasible(flip((seq[4:-6], lab[4:-6])))  # both
    # A cut gene still obeys its frame: an in-frame stop after the cut is still fatal.
    seq, lab = plus_locus(["ATGCCCTAAGCC"], stop="TAG")
    assert not feasible(flip((seq[:-5], lab[:-5])))


def _feasible_batch(codes, ys, K=4):
    n, L = ys.shape
    grammar = gm.GeneGrammar(K, "cpu", 5).double()
    z5, z6 = torch.zeros(n, L, 5, dtype=torch.float64), torch.zeros(n, L, 6, dtype=torch.float64)
    lengths = torch.full((n,), L)
    with torch.no_grad():
        e, s, t = grammar.state_scores(z5, z6, codes.expand(n, -1), lengths, z5, z5)
        _, result = grammar.decode(*grammar.constrain(e, s, t, ys), lengths)
    return result.score > IMPOSSIBLE


@pytest.mark.parametrize("seed", [0, 1])
def test_the_minus_strand_mirrors_the_plus_strand(seed):
    # Reverse-complementing a sequence and mirroring its labels (exon+ <-> exon-, reversed) keeps
    # exactly the same labellings feasible: the rules of the two strands are each other's mirror.
    g = torch.Generator().manual_seed(seed)
    L = 9
    codes = motif_sequence(g, L)
    rc = (3 - codes).flip(1)
    ys = grammatical_labellings(L)
    swap = torch.tensor([0, XM, NM, XP, NP_])
    mirrored = swap[ys].flip(1)
    ok, ok_rc = _feasible_batch(codes, ys), _feasible_batch(rc, mirrored)
    assert ok.sum() > 100 and bool(((ys == XP).any(1) & ok).any()) and bool(((ys == XM).any(1) & ok).any())
    assert torch.equal(ok, ok_rc)


# ----------------------------------------------------------------------------- the fly loci
FLY = "/usr/share/doc/augustus/tutorial/results/genes.gb"


@pytest.fixture(scope="module")
def fly(tmp_path_factory):
    """The AUGUSTUS tutorial's fly loci, imported as ``semicrf-bench import`` does (no validation split)."""
    import os

    from semicrf.genomics import dataset, importer

    if not (os.path.exists(FLY + ".train") and os.path.exists(FLY + ".test")):
        pytest.skip(f"{FLY}.train / .test missing (apt-get install augustus-doc)")
    out = tmp_path_factory.mktemp("fly")
    meta = importer.import_dataset(out, [FLY + ".train"], [FLY + ".test"], val_fraction=0.0)
    return meta, dataset.load_split(out, "train"), dataset.load_split(out, "test")


def _gold_feasible(seqs, labels, K=3):
    """Per locus: does a state path with the gold classes obey every hard rule? (Constrained Viterbi at
    zero scores: 0 if so, <= -1e4 otherwise; K is irrelevant to the answer, runs are cut into pieces.)"""
    grammar = gm.GeneGrammar(K, "cpu", 5).double()
    out = []
    for x, y in zip(seqs, labels):
        L = len(x)
        codes, yy = torch.from_numpy(x.astype(np.int64))[None], torch.from_numpy(y.astype(np.int64))[None]
        z5, z6 = torch.zeros(1, L, 5, dtype=torch.float64), torch.zeros(1, L, 6, dtype=torch.float64)
        with torch.no_grad():
            e, s, t = grammar.state_scores(z5, z6, codes, torch.tensor([L]), z5, z5)
            _, result = grammar.decode(*grammar.constrain(e, s, t, yy), torch.tensor([L]))
        out.append(result.score.item())
    return np.array(out)


@pytest.mark.slow  # about 40 s on one shared core: 586 loci, 3.3 Mbp
def test_every_fly_locus_is_a_valid_gene_structure(fly):
    meta, train, test = fly
    assert len(train) == 486 and len(test) == 100
    gm.check_metadata(meta)  # the model accepts the imported data set
    for split in (train, test):
        scores = _gold_feasible(split.sequences, split.labels)
        rejected = [n for n, v in zip(split.names, scores) if not v > IMPOSSIBLE]
        assert rejected == [] and np.all(scores == 0.0)


def test_a_broken_fly_gene_is_rejected(fly):
    # The check above is not vacuous: remove a start codon, a stop codon, or put an in-frame stop in.
    _, train, _ = fly
    i = next(k for k, y in enumerate(train.labels) if (y == XP).any() and (y == NP_).any())
    x, y = train.sequences[i].copy(), train.labels[i]
    exon = np.flatnonzero(y == XP)
    first, last = exon[0], exon[-1]
    broken = [x.copy() for _ in range(3)]
    broken[0][first + 1] = C  # ATG -> ACG
    broken[1][last + 2] = C  # the stop codon's middle base: TAA, TAG, TGA -> TCA, TCG, TCA
    broken[2][first + 3:first + 6] = (T, A, A)  # TAA as the second codon
    scores = _gold_feasible([x] + broken, [y] * 4)
    assert scores[0] == 0.0 and np.all(scores[1:] < IMPOSSIBLE), scores


@pytest.mark.parametrize("long_runs,states", [("tail", 62), ("tail-exons", 80), ("tail-ends", 98), ("grid", 100)])
def test_the_model_trains_on_a_fly_locus(fly, long_runs, states):
    meta, train, _ = fly
    i = next(k for k, y in enumerate(train.labels) if len(y) < 3000 and (y == XM).any() and (y == NM).any())
    x, y = train.sequences[i], train.labels[i]
    L = len(x)
    feats = torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), 5).float()[None]
    labels, lengths = torch.from_numpy(y.astype(np.int64))[None], torch.tensor([L])
    torch.manual_seed(0)
    model = build_model("semicrf_gene", ModelConfig(input_dim=5, num_classes=5, encoder="bilstm", hidden_dim=8,
                                                    num_layers=1, max_duration=32, backend="cpu",
                                                    gene_long_runs=long_runs), meta)
    assert model.crf.num_states == states and model.duration_scores().shape == (32, 5)
    assert torch.equal(model.duration_scores()[:, 1], model.duration_scores()[:, 3])  # exon+ and exon- share
    losses = _adam_losses(model, feats, labels, lengths, lr=0.05, steps=6)
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0], losses
    with torch.no_grad():
        pred = model.predict(feats, lengths)[0]
    assert len(pred) == L and set(np.unique(pred).tolist()) <= set(range(5))


@pytest.mark.parametrize("meta,match", [
    ({"num_classes": 5, "class_names": list(gm.STRANDED_CLASSES),
      "config": {"source": "imported", "inputs": {"train": [{"kind": "fasta+gff3"}]}}}, "stop codon"),
    ({"num_classes": 3, "config": {"source": "imported", "inputs": {}}}, "imported"),
    ({"num_classes": 5, "config": {"content": "realistic", "splice_motifs": True}}, "UTR"),
])
def test_real_data_that_breaks_the_rules_is_refused(meta, match):
    with pytest.raises(ValueError, match=match):
        build_model("semicrf_gene", ModelConfig(input_dim=5, num_classes=5, hidden_dim=8, max_duration=10), meta)


def test_two_strand_reference_and_cpu_backends_agree():
    out = []
    for backend in ("reference", "cpu"):
        # A + gene with an intron, then a - gene with one (a valid labelling, 52 bases).
        seq1, lab1 = plus_locus(["ATGCC", "CCTAAGC"], ["GTCCAG"])
        seq2, lab2 = to_minus(plus_locus(["ATGCCC", "GCC"], ["GTCCCAG"], flank="C"))
        seq, lab = seq1 + seq2, lab1 + lab2
        L = len(seq)
        codes = torch.tensor([["ACGT".index(b) for b in seq]])
        grammar, codes, em, codon, start, end = random_problem5(9, L, 5, backend, codes=codes)
        em.requires_grad_(True)
        y = torch.tensor([lab])
        e, s, t = grammar.state_scores(em, codon, codes, torch.tensor([L]), start, end)
        ll = grammar.log_likelihood(e, s, t, y, torch.tensor([L]))
        assert ll.item() > IMPOSSIBLE
        ll.sum().backward()
        out.append((ll.item(), grammar.durations.grad.clone(), grammar.transitions.grad.clone(), em.grad.clone()))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-9)
    for a, b in zip(out[0][1:], out[1][1:]):
        assert torch.allclose(a, b, atol=1e-9)


def test_the_gene_model_benchmark_runs_on_the_cpu():
    """benchmarks/gene_model_gpu.py at a small size on the CPU: a finite likelihood <= 0 and finite gradients
    for the generator's realistic sequences (the GPU run of the same script measures the speed target)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gene_model_gpu.py"
    spec = importlib.util.spec_from_file_location("gene_model_gpu", path)
    gm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gm)
    for long_runs, states in (("tail", 26), ("pieces", 16), ("tail-exons", 32)):
        row = gm.measure(2, 3000, 200, 1, torch.device("cpu"), long_runs=long_runs)
        assert row["states"] == states and row["all_finite"]
        assert row["log_likelihood_per_position"] < 0
        parts = [row[k] for k in ("state_scores_s", "log_partition_fwd_s", "gold_pieces_fwd_s", "backward_s")]
        assert all(t > 0 for t in parts) and row["warm_up_step_s"] > 0


def test_the_fly_step_benchmark_runs_on_the_cpu(tmp_path):
    """benchmarks/real_genes/gene_step_gpu.py on a made-up imported GenBank data set, on the CPU: every part
    of the step timed for each batch (the encoder, then benchmarks/step_parts.py's four), and the JSON
    written."""
    import importlib.util
    import json
    from pathlib import Path

    from semicrf.genomics.importer import import_dataset

    def genbank(path, records):
        out = []
        for name, seq, loc in records:
            out += [f"LOCUS       {name}   {len(seq)} bp  DNA\n", "FEATURES             Location/Qualifiers\n",
                    f"     source          1..{len(seq)}\n", f"     CDS             {loc}\n", "ORIGIN\n"]
            out += [f"{i + 1:>9} {seq[i:i + 60]}\n" for i in range(0, len(seq), 60)] + ["//\n"]
        path.write_text("".join(out))
        return str(path)

    seq = "ACGTTGCAAGCTTACGGATC" * 8  # 160 bases
    train = [(f"tr{i}", seq[:120 + 10 * i], "join(11..40,61..90)" if i % 2 else "complement(21..50)")
             for i in range(4)]
    data = tmp_path / "data"
    import_dataset(data, train=[genbank(tmp_path / "tr.gb", train)],
                   val=[genbank(tmp_path / "va.gb", [("va1", seq[:100], "21..50")])],
                   test=[genbank(tmp_path / "te.gb", [("te1", seq[:100], "complement(6..35)")])])
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "gene_step_gpu.py"
    spec = importlib.util.spec_from_file_location("gene_step_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "step.json"
    assert mod.main(["--data-dir", str(data), "--batch", "1", "--hidden-dim", "8", "--num-layers", "1",
                     "--max-duration", "20", "--repeat", "1", "--device", "cpu", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["batch"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert all(r[k] >= 0 for k in ("encoder_s", "state_scores_s", "log_partition_fwd_s", "gold_pieces_fwd_s",
                                        "backward_s"))
        assert r["exact_rows"] is None  # counted on a GPU only
