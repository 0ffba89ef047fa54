"""The generating model of the synthetic genomics benchmark.

A sequence is a chain of segments drawn from a small gene grammar::

    intergenic, gene, intergenic, gene, ...            (cut at the target length)
    gene (C = 3) = exon, (intron, exon) x (n - 1)      n ~ Uniform{2..8}
    gene (C = 5) = 5utr, exon, (intron, exon) x (n - 1), 3utr

Every segment length is an independent draw from its class's log-normal law,
rounded to the nearest integer and clipped to the class range. A sequence
starts at the first base of an intergenic spacer and ends where its target
length (drawn uniformly within +-10 % of ``seq_length``) falls: the segment
running there is cut, so the last segment of every sequence is right-censored
and may lie inside a gene. All other segments are complete, exact draws.

Bases are drawn after the labels from a separate random stream, so
``content`` and ``splice_motifs`` change bases only: the same seed gives the
same labels under every content setting.

Two content models:

``random`` (the spec)
    Independent bases at ``gc_content``; with splice motifs on, every intron
    starts with GT and every complete intron ends with AG. Nothing else
    carries a signal.

``realistic``
    The signals gene finders rely on: codon structure in coding exons (a
    per-codon-position composition, no in-frame stop codons, the frame carried
    across introns), per-class GC content, donor and acceptor consensus beyond
    GT/AG, and a polypyrimidine tract before each acceptor. The parameters are
    in :class:`RealisticContent`; their strengths are documented in the
    benchmark README.

Base codes are ``0..4 = A, C, G, T, N`` (the generator never emits N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

BASES = "ACGTN"
A, C, G, T, N = range(5)

INTERGENIC, EXON, INTRON, UTR5, UTR3 = range(5)
CLASS_NAMES: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        3: ("intergenic", "exon", "intron"),
        5: ("intergenic", "exon", "intron", "5utr", "3utr"),
    }
)
CONTENT_KINDS = ("random", "realistic")
STOP_CODONS = ("TAA", "TAG", "TGA")


def class_names(num_classes: int) -> tuple[str, ...]:
    """Class names by label id for C = 3 or 5."""
    if num_classes not in CLASS_NAMES:
        raise ValueError(f"num_classes (--num-classes) must be 3 or 5, got {num_classes!r}")
    return CLASS_NAMES[num_classes]


@dataclass(frozen=True)
class DurationModel:
    """Log-normal segment length: ``clip(rint(exp(Normal(ln median, sigma))), min, max)``.

    Clipping (not rejection) puts point masses at ``min`` and ``max``; the
    metadata records ``truncation: "clip"`` so the law can be rebuilt exactly.
    """

    median: float
    sigma: float
    min: int
    max: int

    def __post_init__(self):
        if not (self.median > 0 and math.isfinite(self.median)):
            raise ValueError(f"DurationModel.median must be a positive number, got {self.median!r}")
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ValueError(f"DurationModel.sigma must be >= 0, got {self.sigma!r}")
        if int(self.min) != self.min or int(self.max) != self.max or not 1 <= self.min <= self.max:
            raise ValueError(
                f"DurationModel bounds must be integers with 1 <= min <= max, got min={self.min!r}, max={self.max!r}"
            )

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` lengths, int64 of shape (size,)."""
        x = np.exp(rng.normal(math.log(self.median), self.sigma, size))
        return np.clip(np.rint(x), self.min, self.max).astype(np.int64)

    def to_dict(self) -> dict:
        return {
            "distribution": "lognormal",
            "median": float(self.median),
            "mu": math.log(self.median),
            "sigma": float(self.sigma),
            "min": int(self.min),
            "max": int(self.max),
            "rounding": "nearest",
            "truncation": "clip",
        }


# The spec's table for intergenic, exon and intron. The UTR laws put their
# median at a reported typical length: 150 nt for human 5' UTRs (BioNumbers
# 102575, mean 5' UTR length, Mazumder et al. 2003) and, for 3' UTRs, a
# median of 600 nt with sigma 1.0, whose log-normal mean (600 * e^0.5 ~ 990 nt)
# matches the ~1000 nt average of mammalian 3' UTRs (BioNumbers 107563,
# Hendrickson et al. 2009). Their spreads and ranges are our choice.
DEFAULT_DURATIONS: Mapping[str, DurationModel] = MappingProxyType(
    {
        "intergenic": DurationModel(5000, 0.8, 500, 20_000),
        "exon": DurationModel(150, 0.5, 30, 500),
        "intron": DurationModel(3000, 1.0, 100, 10_000),
        "5utr": DurationModel(150, 0.6, 20, 1000),
        "3utr": DurationModel(600, 1.0, 50, 5000),
    }
)


def _composition(gc: float) -> tuple[float, float, float, float]:
    """A, C, G, T probabilities of independent bases at GC fraction ``gc``."""
    return ((1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2)


@dataclass(frozen=True)
class RealisticContent:
    """Parameters of the ``realistic`` content model. Rows are (A, C, G, T) probabilities.

    The values are round numbers chosen to resemble human genes (purine-rich
    first and GC-rich third codon position, GC-rich 5' UTRs, the MAG|GTRAGT
    donor and (Y)nNCAG|G acceptor consensus); they are not fitted to a data set.
    Intergenic bases keep ``GeneratorConfig.gc_content``.
    """

    intron_gc: float = 0.38
    utr5_gc: float = 0.60
    utr3_gc: float = 0.40
    # Composition of codon positions 1, 2 and 3; codons are drawn from their
    # product with the three stop codons removed (renormalised).
    codon_positions: tuple = (
        (0.27, 0.23, 0.34, 0.16),
        (0.31, 0.24, 0.17, 0.28),
        (0.18, 0.32, 0.30, 0.20),
    )
    # Intron positions +3..+6 after the GT. The exon side of the consensus is
    # left to the codon model so that the reading frame stays free of stops.
    donor: tuple = (
        (0.60, 0.03, 0.34, 0.03),
        (0.70, 0.08, 0.12, 0.10),
        (0.08, 0.05, 0.80, 0.07),
        (0.15, 0.15, 0.18, 0.52),
    )
    # Intron position -3 (the base before the final AG).
    acceptor: tuple = ((0.06, 0.68, 0.01, 0.25),)
    # Polypyrimidine tract: intron positions -ppt_far..-ppt_near, counted back
    # from the last intron base (-1).
    ppt_near: int = 5
    ppt_far: int = 20
    ppt: tuple = (0.10, 0.35, 0.10, 0.45)

    def __post_init__(self):
        for name in ("intron_gc", "utr5_gc", "utr3_gc"):
            v = getattr(self, name)
            if not 0 < v < 1:
                raise ValueError(f"RealisticContent.{name} must lie in (0, 1), got {v!r}")
        for name in ("codon_positions", "donor", "acceptor"):
            rows = np.asarray(getattr(self, name), dtype=np.float64)
            if rows.ndim != 2 or rows.shape[1] != 4 or np.any(rows < 0) or not np.allclose(rows.sum(1), 1):
                raise ValueError(f"RealisticContent.{name} must be rows of 4 probabilities summing to 1")
        if len(self.codon_positions) != 3:
            raise ValueError("RealisticContent.codon_positions must have 3 rows")
        ppt = np.asarray(self.ppt, dtype=np.float64)
        if ppt.shape != (4,) or np.any(ppt < 0) or not np.isclose(ppt.sum(), 1):
            raise ValueError("RealisticContent.ppt must be 4 probabilities summing to 1")
        if not 3 + len(self.acceptor) <= self.ppt_near <= self.ppt_far:
            raise ValueError("RealisticContent needs 2 + len(acceptor) < ppt_near <= ppt_far")

    def codon_probabilities(self) -> np.ndarray:
        """(64,) probabilities of codons indexed ``16 b1 + 4 b2 + b3``; stops have 0."""
        p1, p2, p3 = (np.asarray(r, dtype=np.float64) for r in self.codon_positions)
        p = (p1[:, None, None] * p2[None, :, None] * p3[None, None, :]).ravel()
        for stop in STOP_CODONS:
            p[_codon_index(stop)] = 0.0
        return p / p.sum()

    def to_dict(self, gc_content: float) -> dict:
        gc = {"intergenic": gc_content, "intron": self.intron_gc, "5utr": self.utr5_gc, "3utr": self.utr3_gc}
        return {
            "gc": {k: float(v) for k, v in gc.items()},
            "base_order": "ACGT",
            "codon_positions": [list(r) for r in self.codon_positions],
            "stop_codons_excluded": list(STOP_CODONS),
            "frame": "starts at the first exon-labelled base of each gene, carried across introns",
            "donor_positions": [3, 4, 5, 6],
            "donor": [list(r) for r in self.donor],
            "acceptor_positions": [-3],
            "acceptor": [list(r) for r in self.acceptor],
            "polypyrimidine_tract": {"from": -self.ppt_far, "to": -self.ppt_near, "composition": list(self.ppt)},
        }


def _codon_index(codon: str) -> int:
    b = [BASES.index(ch) for ch in codon]
    return 16 * b[0] + 4 * b[1] + b[2]


@dataclass(frozen=True)
class GeneratorConfig:
    """Every setting of the generating model.

    ``durations`` maps class name to :class:`DurationModel` (defaults: the
    spec's table plus the UTR laws above); ``exons_per_gene`` is the inclusive
    range of the uniform exon count.
    """

    num_classes: int = 3
    seq_length: int = 20_000
    length_tolerance: float = 0.1
    gc_content: float = 0.42
    splice_motifs: bool = True
    content: str = "random"
    exons_per_gene: tuple[int, int] = (2, 8)
    durations: Mapping[str, DurationModel] = field(default_factory=lambda: dict(DEFAULT_DURATIONS))
    realistic: RealisticContent = field(default_factory=RealisticContent)

    def __post_init__(self):
        names = class_names(self.num_classes)
        if self.content not in CONTENT_KINDS:
            raise ValueError(f"content (--content) must be one of {CONTENT_KINDS}, got {self.content!r}")
        if not 0 < self.gc_content < 1:
            raise ValueError(f"gc_content must lie in (0, 1), got {self.gc_content!r}")
        if not 0 <= self.length_tolerance < 1:
            raise ValueError(f"length_tolerance must lie in [0, 1), got {self.length_tolerance!r}")
        lo, hi = self.exons_per_gene
        if int(lo) != lo or int(hi) != hi or not 1 <= lo <= hi:
            raise ValueError(f"exons_per_gene must be integers (lo, hi) with 1 <= lo <= hi, got {self.exons_per_gene!r}")
        missing = [n for n in names if n not in self.durations]
        if missing:
            raise ValueError(f"durations lacks a DurationModel for {missing}")
        if not isinstance(self.seq_length, (int, np.integer)) or isinstance(self.seq_length, bool):
            raise ValueError(f"seq_length (--seq-length) must be an integer, got {self.seq_length!r}")
        shortest = self.min_seq_length()
        if self.seq_length < shortest:
            raise ValueError(
                f"seq_length (--seq-length) = {self.seq_length} is too short for one gene: the shortest target "
                f"({1 - self.length_tolerance:g} x seq_length) must hold an intergenic spacer and a gene of "
                f"minimal lengths ({self.shortest_unit()} bp); use --seq-length {shortest} or more"
            )

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.num_classes)

    def shortest_unit(self) -> int:
        """Length of an intergenic spacer plus a gene, all at their minimal lengths."""
        d, lo = self.durations, self.exons_per_gene[0]
        n = d["intergenic"].min + lo * d["exon"].min + (lo - 1) * d["intron"].min
        if self.num_classes == 5:
            n += d["5utr"].min + d["3utr"].min
        return int(n)

    def min_seq_length(self) -> int:
        """Smallest ``seq_length`` whose shortest target holds :meth:`shortest_unit`."""
        return int(math.ceil(self.shortest_unit() / (1 - self.length_tolerance)))

    def target_range(self) -> tuple[int, int]:
        """Inclusive range of the per-sequence target length."""
        lo = int(math.ceil(self.seq_length * (1 - self.length_tolerance)))
        hi = int(math.floor(self.seq_length * (1 + self.length_tolerance)))
        return lo, max(lo, hi)

    def to_dict(self) -> dict:
        """JSON-ready description, complete enough to rebuild the generating laws."""
        names = self.class_names
        lo, hi = self.exons_per_gene
        unit = ["exon", "intron", "exon", "...", "exon"]
        if self.num_classes == 5:
            unit = ["5utr", *unit, "3utr"]
        content_model = (
            {"kind": "random", "composition": "independent bases", "gc_content": float(self.gc_content)}
            if self.content == "random"
            else {"kind": "realistic", **self.realistic.to_dict(self.gc_content)}
        )
        splice = {"enabled": bool(self.splice_motifs)}
        if self.splice_motifs:
            splice.update(
                donor="GT at the first two intron bases",
                acceptor="AG at the last two intron bases of every complete intron",
                extended_consensus=self.content == "realistic",
            )
        return {
            "num_classes": self.num_classes,
            "class_names": list(names),
            "seq_length": int(self.seq_length),
            "length_tolerance": float(self.length_tolerance),
            "target_length": {"distribution": "uniform integer", "min": self.target_range()[0], "max": self.target_range()[1]},
            "gc_content": float(self.gc_content),
            "splice_motifs": bool(self.splice_motifs),
            "content": self.content,
            "durations": {n: self.durations[n].to_dict() for n in names},
            "gene_grammar": {
                "sequence": ["intergenic", "gene", "intergenic", "gene", "..."],
                "gene": unit,
                "exons_per_gene": [int(lo), int(hi)],
                "exons_per_gene_distribution": "uniform integer",
                "start_probabilities": {n: float(n == "intergenic") for n in names},
                "start": "first base of an intergenic spacer",
                "end": "the segment running at the target length is cut there (right-censored)",
                "strand": "+",
            },
            "splice": splice,
            "content_model": content_model,
        }


@dataclass
class SyntheticSequence:
    """One generated sequence.

    codes: (L,) uint8 base codes 0..4. labels: (L,) int64 class ids.
    segments: (n, 3) int64 rows (start, end, label), end exclusive; they tile
    [0, L) and the last one is cut at the sequence end.
    """

    codes: np.ndarray
    labels: np.ndarray
    segments: np.ndarray


def sample_segments(rng: np.random.Generator, config: GeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels and lengths of one sequence's segments, each (n,) int64; the last is cut."""
    lo, hi = config.target_range()
    target = int(rng.integers(lo, hi + 1))
    labels, lengths, total = [], [], 0
    while total < target:
        unit_labels, unit_lengths = _sample_unit(rng, config)
        labels.append(unit_labels)
        lengths.append(unit_lengths)
        total += int(unit_lengths.sum())
    labels = np.concatenate(labels)
    lengths = np.concatenate(lengths)
    ends = np.cumsum(lengths)
    n = int(np.searchsorted(ends, target)) + 1  # first segment reaching the target
    labels, lengths = labels[:n], lengths[:n].copy()
    lengths[-1] -= ends[n - 1] - target
    return labels, lengths


def _sample_unit(rng: np.random.Generator, config: GeneratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """An intergenic spacer followed by one gene: (labels, lengths), each int64."""
    d = config.durations
    lo, hi = config.exons_per_gene
    n_exons = int(rng.integers(lo, hi + 1))
    spacer = d["intergenic"].sample(rng, 1)
    exons = d["exon"].sample(rng, n_exons)
    introns = d["intron"].sample(rng, n_exons - 1)
    gene_labels = np.full(2 * n_exons - 1, EXON, dtype=np.int64)
    gene_labels[1::2] = INTRON
    gene_lengths = np.empty(2 * n_exons - 1, dtype=np.int64)
    gene_lengths[0::2] = exons
    gene_lengths[1::2] = introns
    if config.num_classes == 5:
        utr5 = d["5utr"].sample(rng, 1)
        utr3 = d["3utr"].sample(rng, 1)
        gene_labels = np.concatenate(([UTR5], gene_labels, [UTR3]))
        gene_lengths = np.concatenate((utr5, gene_lengths, utr3))
    return np.concatenate(([INTERGENIC], gene_labels)), np.concatenate((spacer, gene_lengths))


def sample_bases(
    rng: np.random.Generator, config: GeneratorConfig, labels: np.ndarray, segments: np.ndarray
) -> np.ndarray:
    """Base codes (L,) uint8 for one sequence with the given labels and segments."""
    length = labels.shape[0]
    if config.content == "random":
        codes = _draw(rng.random(length, dtype=np.float32), np.asarray(_composition(config.gc_content)))
    else:
        codes = _realistic_background(rng, config, labels)
        _write_codons(rng, config.realistic, labels, codes)
    if config.splice_motifs:
        _write_splice_sites(rng, config, segments, codes)
    return codes


def _draw(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Categorical draws (uint8) from uniforms ``u``.

    probs: (4,) shared by all draws, or (len(u), 4) one row per draw.
    """
    return _draw_cdf(u, _cdf(probs))


def _cdf(probs) -> np.ndarray:
    """The first three cumulative sums of (..., 4) probabilities, float32 to match the uniforms."""
    return np.cumsum(np.asarray(probs, dtype=np.float64), axis=-1)[..., :3].astype(np.float32)


def _draw_cdf(u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    # Three comparisons against the cumulative sums replace a per-draw search.
    cdf = cdf.T  # (3,) or (3, n): one row of thresholds per comparison
    return (u >= cdf[0]).view(np.uint8) + (u >= cdf[1]).view(np.uint8) + (u >= cdf[2]).view(np.uint8)


def _realistic_background(rng: np.random.Generator, config: GeneratorConfig, labels: np.ndarray) -> np.ndarray:
    rc = config.realistic
    # Coding bases are overwritten by codons; their background value (0.5) is never used.
    gc_by_class = [config.gc_content, 0.5, rc.intron_gc, rc.utr5_gc, rc.utr3_gc]
    cdf = _cdf([_composition(gc) for gc in gc_by_class])
    return _draw_cdf(rng.random(labels.shape[0], dtype=np.float32), cdf[labels])


def _write_codons(rng: np.random.Generator, rc: RealisticContent, labels: np.ndarray, codes: np.ndarray) -> None:
    """Overwrite exon-labelled bases with codons whose frame runs through each gene."""
    coding = np.flatnonzero(labels == EXON)
    if coding.size == 0:
        return
    # Gene id of each position: a gene starts wherever a non-intergenic base follows an intergenic one.
    genic = labels != INTERGENIC
    gene_start = genic & np.concatenate(([True], ~genic[:-1]))
    gene = np.cumsum(gene_start)[coding]
    rank = np.arange(coding.size) - np.searchsorted(gene, gene, side="left")
    frame = rank % 3
    codon_id = np.cumsum(frame == 0) - 1
    cdf = np.cumsum(rc.codon_probabilities())
    cdf[-1] = 1.0
    codons = np.searchsorted(cdf, rng.random(int(codon_id[-1]) + 1), side="right")
    codons = np.minimum(codons, 63)
    codon_bases = np.stack([np.arange(64) // 16, np.arange(64) // 4 % 4, np.arange(64) % 4], axis=1).astype(np.uint8)
    codes[coding] = codon_bases[codons[codon_id], frame]


def _write_splice_sites(
    rng: np.random.Generator, config: GeneratorConfig, segments: np.ndarray, codes: np.ndarray
) -> None:
    """GT at every intron start and AG at every complete intron end (plus the consensus, if realistic)."""
    length = codes.shape[0]
    introns = segments[segments[:, 2] == INTRON]
    if introns.shape[0] == 0:
        return
    starts, ends = introns[:, 0], introns[:, 1]
    complete = ends < length  # an intron reaching the sequence end was cut: it has no acceptor
    realistic = config.content == "realistic"
    rc = config.realistic

    donor_rows = [np.eye(4)[G], np.eye(4)[T]] + (list(rc.donor) if realistic else [])
    _write_site(rng, codes, starts[:, None] + np.arange(len(donor_rows)), ends[:, None], np.array(donor_rows))

    acc_rows = [np.eye(4)[G], np.eye(4)[A]]  # positions -1, -2
    if realistic:
        acc_rows += list(rc.acceptor) + [np.full(4, np.nan)] * (rc.ppt_near - 3 - len(rc.acceptor))
        acc_rows += [rc.ppt] * (rc.ppt_far - rc.ppt_near + 1)
    acc_rows = np.array(acc_rows, dtype=np.float64)
    keep = ~np.isnan(acc_rows[:, 0])  # background positions between the consensus and the tract
    offsets = np.arange(1, len(acc_rows) + 1)[keep]
    pos = ends[complete][:, None] - offsets
    _write_site(rng, codes, pos, ends[complete][:, None], acc_rows[keep], floor=starts[complete][:, None])


def _write_site(rng, codes, pos, limit, rows, floor=None) -> None:
    """Draw bases at ``pos`` (n, k) from ``rows`` (k, 4), skipping positions outside [floor, limit)."""
    ok = pos < limit
    if floor is not None:
        ok &= pos >= floor
    probs = np.broadcast_to(rows, pos.shape + (4,))
    u = rng.random(pos.shape, dtype=np.float32)
    codes[pos[ok]] = _draw(u[ok], probs[ok])


def sequence_seed(seed: int, split_index: int, index: int) -> np.random.SeedSequence:
    """Seed of sequence ``index`` of split ``split_index``: independent of every other sequence."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed (--seed) must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(int(split_index), int(index)))


def generate_sequence(config: GeneratorConfig, seed: np.random.SeedSequence) -> SyntheticSequence:
    """One sequence from its own seed; labels come from one child stream, bases from another."""
    structure_seed, bases_seed = seed.spawn(2)
    seg_labels, seg_lengths = sample_segments(np.random.default_rng(structure_seed), config)
    ends = np.cumsum(seg_lengths)
    segments = np.stack([ends - seg_lengths, ends, seg_labels], axis=1)
    labels = np.repeat(seg_labels, seg_lengths)
    codes = sample_bases(np.random.default_rng(bases_seed), config, labels, segments)
    return SyntheticSequence(codes=codes, labels=labels, segments=segments)


def generate_sequences(config: GeneratorConfig, num_sequences: int, seed: int = 42, split_index: int = 0):
    """Yield ``num_sequences`` sequences of split ``split_index`` (0 train, 1 val, 2 test by convention).

    Sequence ``i`` depends only on (config, seed, split_index, i), so a larger
    count extends a split without changing its first sequences.
    """
    if isinstance(num_sequences, bool) or not isinstance(num_sequences, (int, np.integer)) or num_sequences < 0:
        raise ValueError(f"num_sequences must be a non-negative integer, got {num_sequences!r}")
    for i in range(num_sequences):
        yield generate_sequence(config, sequence_seed(seed, split_index, i))
