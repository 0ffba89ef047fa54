"""``semicrf_gene``'s start from counts: the training split's labels turned into its content, site and
length scores, as a gene finder's generative model would estimate them.

A gene finder such as AUGUSTUS or SNAP is a generalized HMM whose parts are estimated by counting on
annotated genes: Markov chains of the bases in each reading frame of coding sequence and in introns and
intergenic sequence (content sensors), position weight matrices around splice sites and gene ends
(signal sensors), and length distributions. ``semicrf_gene`` has a learned table for each of these
(:class:`.gene_model.GeneSemiCRFTagger`: ``content``, ``sites``, the grammar's ``durations``); with
``run --gene-start counts`` they begin at the counting estimates below and are then trained end to end
with the encoder, through the exact semi-CRF likelihood, like every other parameter. The start is a
model a gene finder would recognise; training moves it where the discriminative objective wants.

- **Content** (:func:`content_log_odds`): for each column of the emission head (the C classes, and per
  strand the three codon positions of an exon base), ``log P(x_t | the k - 1 bases before t)`` under a
  Markov chain of order k - 1 counted on the training positions of that column, less the same under the
  chain of all positions (the background; a per-position constant shared by every state, so it changes
  no path's probability, only the scale of the numbers). The exon classes' own columns are 0: an exon
  state reads the codon column of its frame, whose chain is counted on the exon bases of that codon
  position. Indexed by the k-mer ending at t (:func:`kmer_index`).
- **Sites** (:func:`site_log_odds`): for each class, position weight matrices of the bases from
  ``left`` before to ``right`` after the first base of its runs (start scores) and their last base (end
  scores), as log-odds against the composition of the classes around such a site, so that they count
  what the content scores do not: donors and acceptors from the introns' side and the exons', start
  and stop codon contexts. The model adds them at a run's ends: every segment's with ``run
  --gene-inner-cuts scored``, so that a cut inside a long run, where the bases look like no site, costs
  the log-odds of a site there; with ``free`` (the default) not at the cuts between a long run's tail
  pieces, whose places the gold sets arbitrarily (``gene_model``, "Long runs"). Scoring them at only
  whole introns and gene ends, an earlier trial, left the junctions of long introns unscored and exon
  sensitivity on the fly loci fell from 0.644 to 0.500 and 0.515 (two seeds).
  With ``run --gene-exon-ends gene`` an exon's own start and end sites are counted, and added, only at
  a gene's outer ends: an intron's 41-base windows read both sides of its junctions, and with ``all``
  (the default) an exon's windows at the same junctions count the donor and acceptor a second time (a
  model started from such tables, untrained, put 1 983 segments where the spec's first 50 test
  sequences have 416; docs/results.md, round 21).
- **Lengths** (:func:`duration_log_laws`): the law of the gold pieces' lengths per duration column of
  the grammar (:func:`semicrf.paths.run_pieces` cuts the runs longer than K as training does), lightly
  smoothed over neighbouring lengths, as log probabilities.
- **Transitions** (:func:`transition_log_probabilities`): ``log P(class of the next gold piece | class
  of this one)``, and the first and last pieces' classes, as a semi-Markov chain's embedded chain: how
  often a gene begins in intergenic sequence, an intron follows an exon, a long run continues. Without
  them every segment boundary is free, and a model started from the other tables alone cuts genes
  into many short pieces (measured on synthetic data: 1 733 segments for 171).

The content chains back off to shorter contexts where a context is rare, as strongly as predicts
held-out data best; every other count gets a pseudocount; so no score is infinite. The codon position of an exon base comes from
the gold labels (:func:`codon_columns`): on + the rank of the base among its gene's exon bases, left
to right, mod 3; on - the same from the right (a - gene is read right to left).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..paths import run_pieces
from .gene_grammar import INTERGENIC, LAYOUTS, Layout
from .models import position_mask

#: The content chains' k-mer: the base at t and the 5 before it (order 5, the dicodon statistics
#: coding-region gene finders use).
CONTENT_KMER = 6
#: Bases before and after a segment's first (last) base that its start (end) site scores read.
SITE_LEFT, SITE_RIGHT = 20, 20
#: How many observations a context's own estimate must outweigh before it leaves the shorter context's
#: (the content chains' interpolation, :func:`interpolated_chain`): the default, and the choices that
#: :func:`content_log_odds` picks from per column by held-out likelihood.
CONTENT_SMOOTHING = 8.0
CONTENT_SMOOTHING_CHOICES = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
#: Pseudocounts: per base and offset of the sites, and per transition.
SITE_PSEUDOCOUNT, TRANSITION_PSEUDOCOUNT = 0.5, 0.5
#: The length laws' pseudocount: one observation in all, spread evenly over the K lengths (0.5 at every
#: length gave a law of 1 500 synthetic exons a quarter of its mass spread flat over 1..1000, and a model
#: started from it called 20-base exons inside introns).
DURATION_PSEUDOCOUNT = 1.0
#: Weights of the smoothing over neighbouring lengths (d - 2 .. d + 2).
DURATION_SMOOTHING = (1.0, 2.0, 3.0, 2.0, 1.0)


def kmer_index(codes: Tensor, lengths: Tensor, k: int) -> Tensor:
    """(B, T) int64: the k bases t - k + 1 .. t as a number in 0 .. 4^k - 1 (the first base most
    significant), or 4^k where one of them is N, padding, or before the sequence's start.

    codes: (B, T) base codes 0..3 (A, C, G, T), 4 for N; lengths: (B,)."""
    B, T = codes.shape
    c = torch.where(position_mask(lengths, T), codes.long(), 4)
    c = torch.cat([torch.full((B, k - 1), 4, dtype=torch.long, device=codes.device), c], dim=1)
    index = torch.zeros(B, T, dtype=torch.long, device=codes.device)
    unknown = torch.zeros(B, T, dtype=torch.bool, device=codes.device)
    for j in range(k):
        base = c[:, j:j + T]
        unknown |= base >= 4
        index = index * 4 + base.clamp(max=3)
    return torch.where(unknown, 4 ** k, index)


def codon_columns(labels: np.ndarray, layout: Layout) -> np.ndarray:
    """(L,) int64: for each exon base of a gold labelling, its column ``strand * 3 + codon position`` of
    the emission head's codon scores (strands in ``layout.strands`` order), -1 elsewhere.

    A gene is a maximal run of one strand's exon and intron labels. On + the codon position of an exon
    base is its rank among the gene's exon bases from the left, mod 3; on - from the right. (A gene cut
    by the sequence's start or end is counted from its visible end: on synthetic data, whose genes are +
    and whose frame the generator starts at the first visible base, that is exact.)"""
    labels = np.asarray(labels)
    out = np.full(labels.shape[0], -1, np.int64)
    for i, strand in enumerate(layout.strands):
        exon, intron = layout.exon_class(strand), layout.intron_class(strand)
        genic = np.concatenate(([0], ((labels == exon) | (labels == intron)).astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(genic))
        for s, e in zip(edges[0::2], edges[1::2]):
            where = s + np.flatnonzero(labels[s:e] == exon)
            rank = np.arange(where.size)
            out[where] = 3 * i + (rank[::-1] if strand == "-" else rank) % 3
    return out


def _exon_classes(layout: Layout) -> list[int]:
    return [layout.exon_class(s) for s in layout.strands]


def interpolated_chain(counts: np.ndarray, k: int, smoothing: float = CONTENT_SMOOTHING) -> np.ndarray:
    """(4^k, columns) ``log P(x_t | the k - 1 bases before t)`` from ``counts`` (4^k, columns) of the
    k-mers ending at t (row: :func:`kmer_index`), each order's estimate shrunk towards the one below:
    ``P_m(x | c) = (N(c, x) + smoothing * P_{m-1}(x | c without its first base)) / (N(c) + smoothing)``
    from order 0 (``P_{-1}`` uniform) up to order k - 1, an interpolated Markov chain: a context seen
    often keeps its own estimate, a rare one falls back on the shorter context."""
    columns = counts.shape[1]
    p = np.full((4, columns), 0.25)  # order -1: uniform over x
    for m in range(k):
        # counts of the (m + 1)-mers (an m-base context, then x): the k-mers summed over their first k - m - 1 bases
        n = counts.reshape(4 ** (k - m - 1), 4 ** (m + 1), columns).sum(0).reshape(4 ** m, 4, columns)
        # the order below at the same x and the context less its first (most significant) base
        below = (np.tile(p, (4, 1)) if m else p).reshape(4 ** m, 4, columns)
        p = ((n + smoothing * below) / (n.sum(1, keepdims=True) + smoothing)).reshape(4 ** (m + 1), columns)
    return np.log(p)


def held_out_smoothing(halves: np.ndarray, k: int, choices=CONTENT_SMOOTHING_CHOICES) -> np.ndarray:
    """(columns,) the smoothing of :func:`interpolated_chain` that predicts each column best across two
    halves of the data: for each choice, the chain of one half scores the other's k-mers (log-likelihood,
    both ways summed), and the best choice is kept per column. halves: (2, 4^k, columns) k-mer counts."""
    scores = []
    for smoothing in choices:
        total = 0.0
        for fit, held in ((0, 1), (1, 0)):
            total = total + (halves[held] * interpolated_chain(halves[fit], k, smoothing)).sum(0)
        scores.append(total)
    return np.asarray(choices, float)[np.argmax(np.stack(scores), axis=0)]


def content_log_odds(split, layout: Layout, k: int = CONTENT_KMER) -> tuple[np.ndarray, np.ndarray]:
    """(table (4^k + 1, C + 3 * strands), smoothing (C + 3 * strands + 1,)): the content scores per k-mer
    (row :func:`kmer_index`) and column of the emission head, ``log P_column(x_t | k - 1 bases before) -
    log P_all(x_t | same)``, both :func:`interpolated_chain` with the smoothing that predicts held-out
    data best (:func:`held_out_smoothing`, over the sequences split in two by their parity; the last entry
    is the background's); the last row (a k-mer with N or reaching before the start) and the exon
    classes' columns are 0. A column with little data (the codon positions of 60 synthetic sequences)
    gets a strong smoothing, falling back on short contexts; one with much, its long contexts.

    split: anything with ``sequences`` and ``labels`` (lists of (L,) arrays), e.g. a :class:`.dataset.Split`."""
    C = layout.num_classes
    n, columns = 4 ** k, C + 3 * len(layout.strands)
    halves = np.zeros((2, n + 1, columns + 1))  # the last column: every position (the background)
    for i, (codes, labels) in enumerate(zip(split.sequences, split.labels)):
        counts = halves[i % 2]
        codes = torch.from_numpy(np.asarray(codes, np.int64))[None]
        index = kmer_index(codes, torch.tensor([codes.shape[1]]), k)[0].numpy()
        labels = np.asarray(labels, np.int64)
        np.add.at(counts, (index, labels), 1.0)
        np.add.at(counts, (index, columns), 1.0)
        col = codon_columns(labels, layout)
        coding = col >= 0
        np.add.at(counts, (index[coding], C + col[coding]), 1.0)
    smoothing = held_out_smoothing(halves[:, :n], k)
    counts = halves[:, :n].sum(0)
    chains = np.stack([interpolated_chain(counts[:, [j]], k, smoothing[j])[:, 0] for j in range(columns + 1)], 1)
    table = np.zeros((n + 1, columns))
    table[:n] = chains[:, :columns] - chains[:, columns:]
    table[:, _exon_classes(layout)] = 0.0
    return table, smoothing


def segment_ends(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and the last position of every run of one label."""
    cuts = np.flatnonzero(np.diff(labels)) + 1
    return np.r_[0, cuts], np.r_[cuts, labels.shape[0]] - 1


def site_positions(labels: np.ndarray, gene_end_classes=()) -> tuple[np.ndarray, np.ndarray]:
    """The (class, position) rows of every run's first base (start sites) and last base (end sites),
    but the sequence's own first and last base (a run cut by the sequence's end has no site there).
    A run of a class in ``gene_end_classes`` gives a start site only after intergenic sequence and an
    end site only before it (the exon classes, where an exon's ends are scored only at a gene's ends)."""
    labels = np.asarray(labels, np.int64)
    firsts, lasts = segment_ends(labels)
    firsts, lasts = firsts[firsts > 0], lasts[lasts < labels.shape[0] - 1]
    if len(gene_end_classes):
        only = np.asarray(gene_end_classes)
        firsts = firsts[~np.isin(labels[firsts], only) | (labels[firsts - 1] == INTERGENIC)]
        lasts = lasts[~np.isin(labels[lasts], only) | (labels[lasts + 1] == INTERGENIC)]
    return np.stack([labels[firsts], firsts], 1), np.stack([labels[lasts], lasts], 1)


def site_log_odds(split, num_classes: int, left: int = SITE_LEFT, right: int = SITE_RIGHT,
                  pseudocount: float = SITE_PSEUDOCOUNT, exon_junctions: bool = True) -> np.ndarray:
    """(2, C, left + right + 1, 4) float64: for the start (0) and end (1) sites of each class's runs
    (:func:`site_positions`), ``log P(base at offset o | a site here) - log P_around(base at offset o)``
    for o = -left .. right around the site's base, where ``P_around`` is the composition that the
    classes at that offset (as the training sites have them) give on their own: the mixture over the
    classes found at t + o of each class's base composition. So a site scores what its bases say beyond
    the content of the segments on either side, which the content scores already count (against the
    plain background composition, the 41 bases of a window summed the two classes' content differences
    again: on synthetic data every stretch where the composition changed scored as a site, and a model
    started from such tables cut its introns with dozens of exons of 10 to 60 bases). 0 for a class and
    side with no site. Bases past the ends and N are not counted. Without ``exon_junctions`` an exon
    class's sites are its runs' ends beside intergenic sequence alone (:func:`site_positions`), where
    the model adds them (``run --gene-exon-ends gene``): a splice junction is the intron's site."""
    width = left + right + 1
    C = num_classes
    gene_end_classes = () if exon_junctions else _exon_classes(LAYOUTS[C])
    counts = np.full((2, C, width, 4), pseudocount)
    around = np.zeros((2, C, width, C))  # the classes at each offset of each kind of site
    seen = np.zeros((2, C), bool)
    composition = np.full((C, 4), pseudocount)  # each class's bases
    for codes, labels in zip(split.sequences, split.labels):
        codes, labels = np.asarray(codes, np.int64), np.asarray(labels, np.int64)
        L = codes.shape[0]
        known = codes < 4
        np.add.at(composition, (labels[known], codes[known]), 1.0)
        for side, rows in enumerate(site_positions(labels, gene_end_classes)):
            cls, where = rows[:, 0], rows[:, 1]
            seen[side, cls] = True
            for o in range(-left, right + 1):
                at = where + o
                inside = (at >= 0) & (at < L)
                base, kind = codes[at[inside]], cls[inside]
                np.add.at(around, (side, kind, o + left, labels[at[inside]]), 1.0)
                ok = base < 4
                np.add.at(counts, (side, kind[ok], o + left, base[ok]), 1.0)
    composition /= composition.sum(-1, keepdims=True)
    share = around / np.maximum(around.sum(-1, keepdims=True), 1.0)
    reference = share @ composition  # (2, C, width, 4)
    reference = np.where(around.sum(-1, keepdims=True) > 0, reference, 0.25)
    odds = np.log(counts / counts.sum(-1, keepdims=True)) - np.log(reference)
    return np.where(seen[:, :, None, None], odds, 0.0)


def _gold_pieces(labels: np.ndarray, max_duration: int, grid: bool = False):
    """(starts, ends, classes) of one labelling's gold pieces (:func:`semicrf.paths.run_pieces`; with grid
    a long run cut on the multiples of K)."""
    labels = np.asarray(labels, np.int64)
    s, e, c, n = run_pieces(labels[None], np.array([labels.shape[0]]), int(max_duration), grid)
    return s[0, :n[0]], e[0, :n[0]], c[0, :n[0]]


def transition_log_probabilities(split, num_classes: int, max_duration: int,
                                 pseudocount: float = TRANSITION_PSEUDOCOUNT, grid: bool = False):
    """(transitions (C, C), initial (C,), final (C,)) float64: ``log P(next piece's class | this piece's
    class)`` over consecutive gold pieces (a run longer than K is several pieces of its class, so the
    diagonal is how often such a run goes on), and the log frequencies of the first and last pieces'
    classes. Every entry gets the pseudocount; the grammar forbids what never happens (-inf), whatever
    these say."""
    C = num_classes
    pairs, first, last = np.full((C, C), pseudocount), np.full(C, pseudocount), np.full(C, pseudocount)
    for labels in split.labels:
        _, _, c = _gold_pieces(labels, max_duration, grid)
        np.add.at(pairs, (c[:-1], c[1:]), 1.0)
        first[c[0]] += 1.0
        last[c[-1]] += 1.0
    with np.errstate(divide="ignore"):  # without a pseudocount, what never happened is -inf
        return (np.log(pairs / pairs.sum(1, keepdims=True)), np.log(first / first.sum()),
                np.log(last / last.sum()))


def duration_log_laws(split, max_duration: int, duration_col_of_piece, columns: int,
                      pseudocount: float = DURATION_PSEUDOCOUNT, grid: bool = False) -> np.ndarray:
    """(K, columns) float64: per duration column, the log of the smoothed law of the gold pieces'
    lengths (each column sums to 1 in probability).

    duration_col_of_piece(cls, long_run) -> column: which column scores a gold piece of class ``cls``
    that is (``long_run``) or is not one of several pieces of a run longer than K (the grammar's
    choice: :meth:`.gene_crf.GeneGrammar.duration_column`)."""
    K = int(max_duration)
    counts = np.zeros((K, columns))
    for labels in split.labels:
        s, e, c = _gold_pieces(labels, K, grid)
        same = c[1:] == c[:-1]
        long_run = np.r_[False, same] | np.r_[same, False]
        for d, cls, lr in zip((e - s).tolist(), c.tolist(), long_run.tolist()):
            counts[d - 1, duration_col_of_piece(cls, lr)] += 1.0
    kernel = np.asarray(DURATION_SMOOTHING) / sum(DURATION_SMOOTHING)
    half = len(kernel) // 2
    padded = np.pad(counts + pseudocount / K, ((half, half), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(columns)], axis=1)
    with np.errstate(divide="ignore"):  # a length never seen, without a pseudocount: -inf
        return np.log(smooth / smooth.sum(axis=0, keepdims=True))


def geometric_tails(split, max_duration: int, duration_col_of_piece, columns: int) -> dict[int, tuple]:
    """For each tail column of the grammar (a class's law of the pieces of runs longer than K): (log P(a run
    is at most K bases), lam, beta) counted on the runs of the classes it scores that neither sequence end
    cuts, with ``lam * L + beta`` the log of a geometric law fitted to the runs longer than K,
    ``P(L) = P(L > K) (1 - p) p^(L - K - 1)``, ``lam = log p``, p from their mean length beyond K.

    The start of the ``grid`` layout (:func:`grid_start`): there every run longer than K is cut one way, so a
    tail law linear in the piece's length, with each continuation refunding its offset, scores the whole run
    ``lam * L + beta`` wherever the grid falls."""
    K = int(max_duration)
    short, long_excess = {}, {}
    for labels in split.labels:
        labels = np.asarray(labels, np.int64)
        firsts, lasts = segment_ends(labels)
        for s, e in zip(firsts.tolist(), lasts.tolist()):
            if s == 0 or e == labels.shape[0] - 1:
                continue  # cut by a sequence end: its length is not a run's
            col = duration_col_of_piece(int(labels[s]), True)
            if col == duration_col_of_piece(int(labels[s]), False):
                continue  # a class without tail states
            n = e - s + 1
            short[col] = short.get(col, 0) + (n <= K)
            long_excess.setdefault(col, [])
            if n > K:
                long_excess[col].append(n - K)
    out = {}
    for col in range(columns):
        if col not in short:
            continue
        runs = short[col] + len(long_excess[col])
        share = (short[col] + TRANSITION_PSEUDOCOUNT) / (runs + 2 * TRANSITION_PSEUDOCOUNT)
        mean_excess = (sum(long_excess[col]) + K) / (len(long_excess[col]) + 1)  # one pseudo-run of 2K
        p = 1.0 - 1.0 / max(mean_excess, 1.0 + 1e-9)
        lam = float(np.log(p))
        beta = float(np.log1p(-share) + np.log1p(-p) - (K + 1) * lam)
        out[col] = (float(np.log(share)), lam, beta)
    return out


def grid_start(split, max_duration: int, num_classes: int, duration_col_of_piece, columns: int):
    """(durations (K, columns), transitions (C, C), initial (C,), final (C,)) float64: the counting start of the
    ``grid`` layout, a semi-Markov chain of runs. A run of at most K bases scores ``log P(L = d)`` (its class's
    law of the runs of at most K, times their share, :func:`geometric_tails`), a longer one ``lam * L + beta``:
    each tail piece of d bases scores ``lam * d + beta`` and each continuation between two pieces ``-beta``. The
    transitions between classes are those of consecutive runs (not pieces), which is what the run chain is."""
    K = int(max_duration)
    durations = duration_log_laws(split, K, duration_col_of_piece, columns, grid=True)
    transitions, initial, final = transition_log_probabilities(split, num_classes, K, grid=True)
    run_pairs = np.full((num_classes, num_classes), TRANSITION_PSEUDOCOUNT)
    for labels in split.labels:
        labels = np.asarray(labels, np.int64)
        firsts, _ = segment_ends(labels)
        c = labels[firsts]
        np.add.at(run_pairs, (c[:-1], c[1:]), 1.0)
    d = np.arange(1, K + 1, dtype=np.float64)
    tails = geometric_tails(split, K, duration_col_of_piece, columns)
    laws = durations.copy()
    for cls in range(num_classes):
        tail, plain = duration_col_of_piece(cls, True), duration_col_of_piece(cls, False)
        if tail == plain or tail not in tails:
            continue
        log_short, lam, beta = tails[tail]
        durations[:, plain] = laws[:, plain] + log_short
        durations[:, tail] = lam * d + beta
        row = run_pairs[cls].copy()
        row[cls] = 0.0
        with np.errstate(divide="ignore"):
            transitions[cls] = np.log(row / row.sum())
        transitions[cls, cls] = -beta
    return durations, transitions, initial, final
