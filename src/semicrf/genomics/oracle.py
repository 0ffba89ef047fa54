"""The Bayes-optimal reference decoder: the synthetic data's generating model as a semi-CRF.

The generator (:mod:`semicrf.genomics.synthetic`) draws labels from a gene
grammar with independent, known segment lengths, and bases given the labels.
Written as a semi-CRF over *states* (sub-classes of the output classes), a
path's score is ``log P(labels, bases | L)`` up to a constant, so the engine's
Viterbi is the maximum-a-posteriori labelling and its marginals are the true
posteriors. Nothing is learned: this is the ceiling that every trained model
on the same data is read against.

States
======

``intergenic``; ``5utr``, ``3utr`` (C = 5);
``exon(k, a)``, the k-th exon of its gene (``k = 1 .. m``; level ``m`` means
"m-th or later") with absolute reading-frame phase ``a`` (realistic content
only); ``intron(j, a, r)``, an intron before exon level ``j`` that follows an
exon of phase ``a`` and whose length is ``r`` mod 3 (realistic content only);
and a *censored* copy of each kind, which only the last segment may use. Each
state maps back to its class (:attr:`OracleTables.state_class`).

What is exact
=============

- Durations: ``log P(D = d)`` of the rounded, clipped log-normal, including the
  point masses at ``min`` and ``max`` that clipping creates (:func:`duration_log_probs`);
  K is the longest ``max`` (20 000 by default), so every segment is covered.
- The first segment starts an intergenic spacer (``initial``); the last is
  right-censored: the censored states score ``log P(D >= d)``
  (:func:`duration_log_survival`), may only end at the last position, carry no
  acceptor, and are the only states allowed at the end (``final``). The
  uniform target length is independent of the labels, hence a constant.
- Grammar: intergenic -> (5utr ->) exon -> intron -> exon ... -> (3utr ->)
  intergenic, with the number of exons per gene uniform on ``exons_per_gene``.
  The exon count is carried in the exon levels: with ``m = hi`` levels the
  continuation probabilities ``P(n > k | n >= k)`` are exact.
- Bases: per-class composition as emissions; splice sites as start scores (GT
  and, realistic, the +3..+6 donor rows) and end scores (AG and, realistic, the
  -3 row and the polypyrimidine tract) of introns; in random content a segment
  that lacks GT/AG scores -inf.
- Reading frame (realistic): an exon of absolute phase ``a`` (its start minus
  the gene's coding bases before it, mod 3) emits ``log p_{(t - a) mod 3}(x_t)``
  at position t; a gene's first exon has phase ``start mod 3`` (start score
  -inf otherwise); an intron of length ``r`` mod 3 moves the phase by r, which
  the intron states ``(a, r)`` carry (their durations are ``log P(D = d)`` on
  ``d = r`` mod 3 only), so the phase of every exon is exact.
- Stop codons (realistic): a whole in-frame stop codon inside an exon segment
  scores ``-STOP_PENALTY`` (probability e^-10000, zero in float64): the
  penalty sits on the codon's third base and is refunded by the start score
  of a segment that begins inside the codon. Each coding base carries
  ``-log(1 - P(stop)) / 3``, the renormalisation of the stop-free codon law.

What is approximated (and why)
==============================

- Exon count under realistic content, or without splice motifs: the model
  keeps ``m = lo`` exon levels (levels below ``lo`` must continue) and makes
  the last level geometric, continuing with the probability that gives the
  true mean number of further exons. The exact count multiplies the intron
  states by the levels (63 states with phases), which the 10-minute budget
  cannot pay, and without AG-pinned intron ends every intron state costs a
  10 000-wide look-back at every position. :func:`build_tables` takes
  ``exon_levels`` to choose.
- A codon split by an intron is scored base by base (its stop-freeness is not
  checked: the bases before the intron would have to be carried in the
  state), and so is the incomplete last codon of a gene.
- Splice sites of introns shorter than the donor + acceptor span (26 bp)
  would overlap; the default minimum intron is 100 bp, so this never arises
  with the default laws.
- Base code N (never generated) is uninformative: every state scores it 0.

Decoding runs on the compiled CPU backend on any device: the Triton kernels
hold a K-wide tile, far beyond K = 20 000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .synthetic import (
    DEFAULT_DURATIONS,
    STOP_CODONS,
    DurationModel,
    GeneratorConfig,
    RealisticContent,
    _composition,
)

NEG_INF = -np.inf
#: Score of a path with an in-frame stop codon inside an exon (probability e^-10000).
STOP_PENALTY = 1.0e4
_STOP_IDS = tuple(16 * "ACGT".index(s[0]) + 4 * "ACGT".index(s[1]) + "ACGT".index(s[2]) for s in STOP_CODONS)

KINDS = ("intergenic", "exon", "intron", "5utr", "3utr")
_KIND_CLASS = {kind: c for c, kind in enumerate(KINDS)}  # the class ids of synthetic.CLASS_NAMES


# --------------------------------------------------------------------------- duration laws
def _log_ndtr(z: np.ndarray) -> np.ndarray:
    return torch.special.log_ndtr(torch.as_tensor(z, dtype=torch.float64)).numpy()


def _log_diff(log_hi: np.ndarray, log_lo: np.ndarray) -> np.ndarray:
    """log(exp(log_hi) - exp(log_lo)), -inf where they are equal."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = log_hi + np.log1p(-np.exp(log_lo - log_hi))
    return np.where(log_hi > log_lo, out, NEG_INF)


def _log_interval(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log P(a <= Z < b) of a standard normal Z, accurate in both tails."""
    upper = a > 0  # both bounds in the upper tail: use the mirror image
    return np.where(upper, _log_diff(_log_ndtr(-a), _log_ndtr(-b)), _log_diff(_log_ndtr(b), _log_ndtr(a)))


def duration_log_probs(model: DurationModel, K: int) -> np.ndarray:
    """(K,) ``log P(D = d)``, d = 1..K, of ``clip(rint(exp(Normal(ln median, sigma))), min, max)``.

    ``rint(X) = d`` is ``d - 1/2 <= X < d + 1/2``; clipping piles the mass below
    ``min`` (above ``max``) onto ``min`` (``max``). -inf outside [min, max].
    """
    d = np.arange(1, K + 1, dtype=np.float64)
    out = np.full(K, NEG_INF)
    lo, hi = int(model.min), int(model.max)
    if model.sigma == 0:
        point = min(max(int(np.rint(model.median)), lo), hi)
        if point <= K:
            out[point - 1] = 0.0
        return out
    mu, sigma = math.log(model.median), float(model.sigma)
    with np.errstate(divide="ignore"):
        z_lo = (np.log(d - 0.5) - mu) / sigma  # log(0.5) is finite: d >= 1
        z_hi = (np.log(d + 0.5) - mu) / sigma
    z_lo = np.where(d == lo, -np.inf, z_lo)
    z_hi = np.where(d == hi, np.inf, z_hi)
    inside = (d >= lo) & (d <= hi)
    out[inside] = _log_interval(z_lo[inside], z_hi[inside])
    return out


def duration_log_survival(model: DurationModel, K: int) -> np.ndarray:
    """(K,) ``log P(D >= d)``, d = 1..K: the score of a segment cut at the sequence end after d bases."""
    logp = duration_log_probs(model, K)
    # Reverse cumulative log-sum-exp; the mass beyond K is zero when K >= max.
    finite = np.isfinite(logp)
    if not finite.any():
        return logp
    m = logp[finite].max()
    with np.errstate(divide="ignore"):
        tail = np.log(np.cumsum(np.exp(logp - m)[::-1])[::-1]) + m
    d = np.arange(1, K + 1)
    # Every length reaches its law's minimum: exactly log 1 there (not a rounded sum).
    return np.where(d <= model.min, 0.0, np.where(d <= model.max, np.minimum(tail, 0.0), NEG_INF))


# --------------------------------------------------------------------------- generator config
def config_from_metadata(meta: dict) -> GeneratorConfig:
    """The :class:`GeneratorConfig` recorded in a data set's metadata (``dataset.load_metadata``)."""
    if isinstance(meta.get("config"), dict) and meta["config"].get("source") == "imported":
        raise ValueError("the oracle is the generating model of a synthetic data set, and this data set was "
                         "imported from annotated real sequence (it has none); leave oracle and "
                         "oracle_posterior out of --models (e.g. --models softmax,semicrf)")
    try:
        cfg = meta["config"]
        durations = {name: DurationModel(float(d["median"]), float(d["sigma"]), int(d["min"]), int(d["max"]))
                     for name, d in cfg["durations"].items()}
        if d_bad := [n for n, d in cfg["durations"].items()
                     if d.get("distribution", "lognormal") != "lognormal" or d.get("truncation", "clip") != "clip"]:
            raise ValueError(f"durations {d_bad} are not clipped log-normal laws")
        grammar = cfg["gene_grammar"]
        content = cfg["content"]
        realistic = RealisticContent()
        if content == "realistic":
            cm = cfg["content_model"]
            ppt = cm["polypyrimidine_tract"]
            realistic = RealisticContent(
                intron_gc=cm["gc"]["intron"], utr5_gc=cm["gc"]["5utr"], utr3_gc=cm["gc"]["3utr"],
                codon_positions=tuple(tuple(r) for r in cm["codon_positions"]),
                donor=tuple(tuple(r) for r in cm["donor"]), acceptor=tuple(tuple(r) for r in cm["acceptor"]),
                ppt_near=-int(ppt["to"]), ppt_far=-int(ppt["from"]), ppt=tuple(ppt["composition"]),
            )
        return GeneratorConfig(
            num_classes=int(cfg["num_classes"]), seq_length=int(cfg["seq_length"]),
            length_tolerance=float(cfg["length_tolerance"]), gc_content=float(cfg["gc_content"]),
            splice_motifs=bool(cfg["splice_motifs"]), content=content,
            exons_per_gene=tuple(int(v) for v in grammar["exons_per_gene"]),
            durations={**DEFAULT_DURATIONS, **durations}, realistic=realistic,
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"metadata: the generator config is incomplete ({type(e).__name__}: {e}); "
                         "regenerate the data set with the generate command") from None


# --------------------------------------------------------------------------- states
@dataclass(frozen=True)
class State:
    """One state of the oracle: a sub-class of an output class.

    kind: one of :data:`KINDS`. level: exon level k (exons), the next exon's
    level j (introns), else 0. phase: absolute reading-frame phase (realistic
    exons and introns) or None. residue: intron length mod 3 (realistic, not
    censored) or None. censored: the cut last segment of a sequence.
    """

    kind: str
    level: int = 0
    phase: int | None = None
    residue: int | None = None
    censored: bool = False

    @property
    def name(self) -> str:
        text = self.kind + (str(self.level) if self.level else "")
        text += "" if self.phase is None else f"/a{self.phase}"
        text += "" if self.residue is None else f"/r{self.residue}"
        return text + ("*" if self.censored else "")


@dataclass
class OracleTables:
    """The oracle's sequence-independent scores over S states.

    durations (K, S), transitions (S, S), initial (S,), final (S,): log-probabilities
    (-inf where impossible). state_class (S,) int64: the output class of each state.
    """

    config: GeneratorConfig
    states: tuple[State, ...]
    exon_levels: int
    durations: np.ndarray
    transitions: np.ndarray
    initial: np.ndarray
    final: np.ndarray
    state_class: np.ndarray

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def max_duration(self) -> int:
        return self.durations.shape[0]

    def class_durations(self) -> np.ndarray:
        """(K, C) true ``log P(D = d)`` of each output class (the money plot's prior)."""
        names = self.config.class_names
        return np.stack([duration_log_probs(self.config.durations[n], self.max_duration) for n in names], axis=1)

    def scores(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-position scores of one sequence: emissions, start_scores, end_scores, each (L, S) float64.

        codes: (L,) base codes 0..4 (A, C, G, T, N). Emissions are finite; start
        and end scores may be -inf (a segment that cannot start / end there).
        """
        return _sequence_scores(self, np.asarray(codes))


def default_exon_levels(config: GeneratorConfig) -> int:
    """Exact exon counting where it is cheap (random content with splice motifs), else ``lo`` levels."""
    lo, hi = config.exons_per_gene
    return int(hi) if config.content == "random" and config.splice_motifs else int(lo)


def _continuation(config: GeneratorConfig, levels: int) -> np.ndarray:
    """(levels + 1,) P(another exon follows the level-k exon), index k = 1..levels."""
    lo, hi = config.exons_per_gene
    n = np.arange(lo, hi + 1)
    out = np.zeros(levels + 1)
    for k in range(1, levels + 1):
        if k < levels or levels >= hi:
            at_least = np.sum(n >= k)
            out[k] = np.sum(n > k) / at_least if at_least else 0.0
        else:
            # Geometric last level: continue with q such that the mean number of further exons,
            # q / (1 - q), is the true E[n - k | n >= k].
            mean_more = float(np.mean(n[n >= k] - k))
            out[k] = mean_more / (1.0 + mean_more)
    return out


def build_tables(config: GeneratorConfig, exon_levels: int | None = None) -> OracleTables:
    """The oracle's states and their sequence-independent scores for ``config``.

    exon_levels: how many exon levels carry the exon count (``exons_per_gene[1]`` is
    exact; fewer make the last level geometric); default :func:`default_exon_levels`.
    """
    if not isinstance(config, GeneratorConfig):
        raise ValueError(f"config must be a GeneratorConfig, got {type(config).__name__}")
    lo, hi = config.exons_per_gene
    m = default_exon_levels(config) if exon_levels is None else exon_levels
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"exon_levels must be a positive integer, got {exon_levels!r}")
    m = int(min(m, hi))
    phased = config.content == "realistic"
    phases = (0, 1, 2) if phased else (None,)
    residues = (0, 1, 2) if phased else (None,)
    five = config.num_classes == 5
    cont = _continuation(config, m)

    states: list[State] = [State("intergenic")]
    if five:
        states += [State("5utr"), State("3utr")]
    states += [State("exon", k, a) for k in range(1, m + 1) for a in phases]
    intron_levels = sorted({min(k + 1, m) for k in range(1, m + 1) if cont[k] > 0})
    states += [State("intron", j, a, r) for j in intron_levels for a in phases for r in residues]
    base = list(states)
    # Censored copies: the emissions of a state depend on its kind, phase and whether it is a
    # gene's first exon, not on the rest, so those are all a censored copy keeps.
    cens_key = {s: (s.kind, s.phase if s.kind == "exon" else None, s.kind == "exon" and s.level == 1) for s in base}
    censored: dict[tuple, State] = {}
    for s in base:
        key = cens_key[s]
        if key not in censored:
            censored[key] = State(s.kind, 1 if key[2] else (0 if s.kind != "exon" else 2), key[1], None, True)
    states += list(censored.values())
    index = {s: i for i, s in enumerate(states)}
    S = len(states)

    trans = np.full((S, S), NEG_INF)

    def link(src: State, dst: State, logp: float) -> None:
        # The censored copy of dst gets the same grammar probability (assigned, not summed: the
        # intron residues split one grammar choice by duration, not by probability).
        trans[index[src], index[dst]] = logp
        trans[index[src], index[censored[cens_key[dst]]]] = logp

    with np.errstate(divide="ignore"):
        log_cont = np.log(cont)
        log_stop = np.log1p(-cont)
    gene_entry = State("5utr") if five else None
    gene_exit = State("3utr") if five else State("intergenic")
    first_exons = [State("exon", 1, a) for a in phases]
    for dst in ([gene_entry] if five else first_exons):
        link(State("intergenic"), dst, 0.0)
    if five:
        for dst in first_exons:
            link(gene_entry, dst, 0.0)
        link(gene_exit, State("intergenic"), 0.0)
    for k in range(1, m + 1):
        for a in phases:
            src = State("exon", k, a)
            if cont[k] < 1:
                link(src, gene_exit, float(log_stop[k]))
            if cont[k] > 0:
                for r in residues:
                    link(src, State("intron", min(k + 1, m), a, r), float(log_cont[k]))
    for s in base:
        if s.kind == "intron":
            link(s, State("exon", s.level, None if s.phase is None else (s.phase + s.residue) % 3), 0.0)

    K = max(int(config.durations[n].max) for n in config.class_names)
    dur = np.empty((K, S))
    for i, s in enumerate(states):
        law = config.durations[s.kind]
        dur[:, i] = duration_log_survival(law, K) if s.censored else duration_log_probs(law, K)
        if s.residue is not None:
            dur[(np.arange(1, K + 1) % 3) != s.residue, i] = NEG_INF
    initial = np.full(S, NEG_INF)
    initial[[index[State("intergenic")], index[censored[cens_key[State("intergenic")]]]]] = 0.0
    final = np.array([0.0 if s.censored else NEG_INF for s in states])
    state_class = np.array([_KIND_CLASS[s.kind] for s in states], dtype=np.int64)
    return OracleTables(config, tuple(states), m, dur, trans, initial, final, state_class)


# --------------------------------------------------------------------------- per-sequence scores
def _log_table(rows, background) -> np.ndarray:
    """(J, 5) log(rows / background) per base, 0 for N (code 4)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    with np.errstate(divide="ignore"):
        out = np.log(rows) - np.log(np.asarray(background, dtype=np.float64))[None, :]
    return np.concatenate([out, np.zeros((out.shape[0], 1))], axis=1)


def _site_scores(codes: np.ndarray, table: np.ndarray, offsets) -> np.ndarray:
    """(L,) sum_j table[j, codes[t + offsets[j]]]; positions outside the sequence add 0."""
    L = codes.shape[0]
    out = np.zeros(L)
    for row, off in zip(table, offsets):  # over the site's few rows, not over positions
        lo, hi = max(0, -off), min(L, L - off)
        if lo < hi:
            out[lo:hi] += row[codes[lo + off:hi + off]]
    return out


def _compositions(config: GeneratorConfig) -> dict[str, np.ndarray]:
    rc = config.realistic
    gc = {"intergenic": config.gc_content, "exon": config.gc_content, "intron": config.gc_content,
          "5utr": config.gc_content, "3utr": config.gc_content}
    if config.content == "realistic":
        gc.update(intron=rc.intron_gc, **{"5utr": rc.utr5_gc, "3utr": rc.utr3_gc})
    return {k: np.asarray(_composition(v)) for k, v in gc.items()}


def _emission_table(tables: OracleTables) -> np.ndarray:
    """(S, 3, 5) log-probability of each base code at positions t with t mod 3 = 0, 1, 2."""
    config = tables.config
    comp = _compositions(config)
    S = tables.num_states
    out = np.zeros((S, 3, 5))
    rc = config.realistic
    codon_pos = np.log(np.asarray(rc.codon_positions, dtype=np.float64))
    p_stop = 0.0
    for stop in _STOP_IDS:
        p_stop += math.prod(rc.codon_positions[f][(stop >> (4 - 2 * f)) & 3] for f in range(3))
    renorm = -math.log1p(-p_stop) / 3.0
    for i, s in enumerate(tables.states):
        if s.kind == "exon" and s.phase is not None:
            for tm in range(3):
                out[i, tm, :4] = codon_pos[(tm - s.phase) % 3] + renorm
        else:
            out[i, :, :4] = np.log(comp[s.kind])[None, :]
    return out


def _splice_tables(config: GeneratorConfig):
    """Donor and acceptor (log-ratio table, offsets) against the intron background, or None."""
    if not config.splice_motifs:
        return None, None
    bg = _compositions(config)["intron"]
    eye = np.eye(4)
    donor_rows = [eye[2], eye[3]]  # G, T at intron positions +1, +2
    acc_rows, acc_off = [eye[2], eye[0]], [0, -1]  # G at the last base, A before it
    if config.content == "realistic":
        rc = config.realistic
        donor_rows += [np.asarray(r) for r in rc.donor]
        acc_rows += [np.asarray(r) for r in rc.acceptor]
        acc_off += [-2 - i for i in range(len(rc.acceptor))]
        acc_rows += [np.asarray(rc.ppt)] * (rc.ppt_far - rc.ppt_near + 1)
        acc_off += [-(p - 1) for p in range(rc.ppt_near, rc.ppt_far + 1)]
    donor = (_log_table(donor_rows, bg), list(range(len(donor_rows))))
    acceptor = (_log_table(acc_rows, bg), acc_off)
    return donor, acceptor


def _stop_starts(codes: np.ndarray) -> np.ndarray:
    """(L,) bool: a stop codon starts at t (bases t, t + 1, t + 2)."""
    L = codes.shape[0]
    out = np.zeros(L, dtype=bool)
    if L >= 3:
        c = codes.astype(np.int64)
        ok = (c[:-2] < 4) & (c[1:-1] < 4) & (c[2:] < 4)
        ids = 16 * c[:-2] + 4 * c[1:-1] + c[2:]
        out[:-2] = ok & np.isin(ids, _STOP_IDS)
    return out


def _sequence_scores(tables: OracleTables, codes: np.ndarray):
    if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer) or codes.size == 0:
        raise ValueError(f"codes must be a non-empty 1-D integer array of base codes, got shape {codes.shape}")
    if codes.min() < 0 or codes.max() > 4:
        raise ValueError("codes must lie in 0..4 (A, C, G, T, N)")
    codes = codes.astype(np.int64)
    L, S = codes.shape[0], tables.num_states
    t = np.arange(L)
    em_table = _emission_table(tables)
    emissions = em_table[:, t % 3, codes].T.copy()  # (L, S)
    start = np.zeros((L, S))
    end = np.zeros((L, S))
    donor, acceptor = _splice_tables(tables.config)
    donor_score = _site_scores(codes, *donor) if donor else np.zeros(L)
    acceptor_score = _site_scores(codes, *acceptor) if acceptor else np.zeros(L)
    stops = _stop_starts(codes)
    for i, s in enumerate(tables.states):
        if s.kind == "intron":
            start[:, i] = donor_score
            if not s.censored:
                end[:, i] = acceptor_score
        if s.censored:
            end[:L - 1, i] = NEG_INF  # the cut last segment ends at the sequence end, without an acceptor
        if s.kind == "exon" and s.phase is not None:
            if s.level == 1:
                start[(t - s.phase) % 3 != 0, i] = NEG_INF  # the frame starts at a gene's first coding base
            # An in-frame stop codon wholly inside the segment makes it impossible: penalise the
            # codon's third base, refund segments that start after its first base.
            codon = np.flatnonzero(stops & ((t - s.phase) % 3 == 0))
            emissions[codon + 2, i] -= STOP_PENALTY
            for shift in (1, 2):
                start[codon + shift, i] += STOP_PENALTY
    return emissions, start, end


# --------------------------------------------------------------------------- decoding
def _batch_scores(tables: OracleTables, codes_list: list[np.ndarray]):
    """Padded (B, T, S) float64 tensors of the sequences' scores, and their lengths (B,)."""
    lengths = np.array([c.shape[0] for c in codes_list], dtype=np.int64)
    B, T, S = len(codes_list), int(lengths.max()), tables.num_states
    em, st, en = (np.zeros((B, T, S)) for _ in range(3))
    for b, codes in enumerate(codes_list):
        e, s, n = tables.scores(codes)
        L = codes.shape[0]
        em[b, :L], st[b, :L], en[b, :L] = e, s, n
    return torch.from_numpy(em), torch.from_numpy(st), torch.from_numpy(en), torch.from_numpy(lengths)


def _engine_args(tables: OracleTables):
    return dict(transitions=torch.from_numpy(tables.transitions), durations=torch.from_numpy(tables.durations),
                initial=torch.from_numpy(tables.initial), final=torch.from_numpy(tables.final))


def decode(tables: OracleTables, codes_list: list[np.ndarray], method: str = "viterbi",
           batch_size: int | None = None) -> list[np.ndarray]:
    """Oracle labels (L_i,) int64 of each sequence of base codes.

    method: ``"viterbi"`` (the most probable labelling: the expanded states map
    one-to-one to label sequences, so this is the MAP labelling) or
    ``"posterior"`` (per position the class of highest posterior probability,
    from the marginals). batch_size: sequences per engine call (default: the
    number of torch threads, at least 2).
    """
    if method not in ("viterbi", "posterior"):
        raise ValueError(f"method must be 'viterbi' or 'posterior', got {method!r}")
    if batch_size is None:
        batch_size = max(2, torch.get_num_threads())
    from .. import marginals, viterbi

    out: list[np.ndarray] = []
    C = tables.config.num_classes
    onehot = torch.from_numpy(np.eye(C)[tables.state_class])  # (S, C)
    for lo in range(0, len(codes_list), batch_size):
        chunk = codes_list[lo:lo + batch_size]
        em, st, en, lengths = _batch_scores(tables, chunk)
        if method == "viterbi":
            result = viterbi(em, lengths=lengths, start_scores=st, end_scores=en, backend="cpu",
                             **_engine_args(tables))
            labels = result.labels.numpy()
            out += [tables.state_class[labels[i, :n]] for i, n in enumerate(lengths.tolist())]
        else:
            post = marginals(em, lengths=lengths, start_scores=st, end_scores=en, backend="cpu",
                             **_engine_args(tables)) @ onehot  # (B, T, C)
            best = post.argmax(-1).numpy()
            out += [best[i, :n].astype(np.int64) for i, n in enumerate(lengths.tolist())]
    return out


# --------------------------------------------------------------------------- the runner's model
class OracleTagger(nn.Module):
    """The oracle as a benchmark model: no parameters, no training; decodes from base codes.

    ``predict(features, lengths)`` takes one-hot features (B, T, 5) (the base
    codes are their argmax, N its own dimension) and returns the labels of each
    sequence. ``duration_scores()`` is the true (K, C) ``log P(D = d)``.
    """

    trainable = False
    # It scores bases, which k-mer frequencies do not hand back: the runner gives it one-hot
    # features whatever --features says.
    feature_kind = "onehot"

    def __init__(self, model_config, generator: GeneratorConfig, method: str = "viterbi",
                 exon_levels: int | None = None):
        super().__init__()
        self.config = model_config
        self.tables = build_tables(generator, exon_levels)
        self.method = method
        self.max_duration = self.tables.max_duration
        exact = self.tables.exon_levels >= generator.exons_per_gene[1]
        self.description = (
            f"Bayes-optimal oracle: the generating model as a semi-CRF over {self.tables.num_states} states "
            f"(K={self.max_duration}, exon count {'exact' if exact else 'geometric past level ' + str(self.tables.exon_levels)}), "
            f"{'Viterbi (MAP labelling)' if method == 'viterbi' else 'maximum-posterior labels (marginals)'}"
        )

    def loss(self, features, labels, lengths):
        raise ValueError("the oracle has nothing to train; the runner only evaluates it")

    def predict(self, features: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
        if features.dim() != 3 or features.shape[-1] != 5:
            raise ValueError(
                f"the oracle reads base codes from one-hot features (B, T, 5), got shape {tuple(features.shape)}; "
                "run it with --features onehot")
        codes = features.detach().argmax(-1).cpu().numpy()
        return decode(self.tables, [codes[i, :n] for i, n in enumerate(lengths.tolist())], self.method)

    def duration_scores(self) -> torch.Tensor:
        return torch.from_numpy(self.tables.class_durations())
