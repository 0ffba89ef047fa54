"""Protein-coding gene structures on both strands, and their per-position labels.

A gene here is its coding part only: the coding exons (the parts of one CDS)
of one transcript on one strand. Its introns are the gaps between consecutive
coding exons; everything outside genes is intergenic (UTRs included).
Coordinates are 0-based, end exclusive, exons sorted by start whatever the
strand.

The five stranded classes of imported (real) data::

    0 intergenic   1 exon+   2 intron+   3 exon-   4 intron-

The models never see the strand (their features are the bases); the classes
only record which strand the annotation is on, so a prediction can be turned
back into genes (:func:`labels_to_genes`) and scored like a gene finder's.

GFF3 (:func:`write_genes_gff3`) has, per gene, a ``gene``, an ``mRNA`` and, for
each coding exon, an ``exon`` and a ``CDS`` line (with its phase), and an
``intron`` line per gap; :func:`read_genes_gff3` reads the coding part back
from any GFF3 that groups CDS lines under a parent transcript.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

STRANDED_CLASSES = ("intergenic", "exon+", "intron+", "exon-", "intron-")
INTERGENIC, EXON_PLUS, INTRON_PLUS, EXON_MINUS, INTRON_MINUS = range(5)
_EXON = {"+": EXON_PLUS, "-": EXON_MINUS}
_INTRON = {"+": INTRON_PLUS, "-": INTRON_MINUS}


class GeneStructureError(ValueError):
    """Gene structures that cannot be labelled or read; the message names the gene and what to change."""


@dataclass(frozen=True)
class Gene:
    """The coding part of one transcript.

    strand: "+" or "-". exons: ((start, end), ...) 0-based, end exclusive,
    sorted, non-overlapping. name: its name in the source (may be empty).
    complete: False for a prediction that lacks its start or stop (cut at a
    sequence end); such a gene never counts as correct at the gene level.
    """

    strand: str
    exons: tuple[tuple[int, int], ...]
    name: str = ""
    complete: bool = True

    @property
    def start(self) -> int:
        return self.exons[0][0]

    @property
    def end(self) -> int:
        return self.exons[-1][1]

    @property
    def coding_length(self) -> int:
        return sum(e - s for s, e in self.exons)


def make_gene(strand: str, parts: Iterable[tuple[int, int]], name: str = "", complete: bool = True) -> Gene:
    """A :class:`Gene` from CDS parts in any order; touching parts are merged (no intron between them).

    Raises GeneStructureError for a bad strand, an empty or reversed part, or overlapping parts.
    """
    label = f"gene {name!r}" if name else "a gene"
    if strand not in ("+", "-"):
        raise GeneStructureError(f"{label}: strand must be '+' or '-', got {strand!r}")
    rows = sorted((int(s), int(e)) for s, e in parts)
    if not rows:
        raise GeneStructureError(f"{label} has no coding exon")
    merged: list[list[int]] = []
    for s, e in rows:
        if s < 0 or e <= s:
            raise GeneStructureError(f"{label}: coding exon {s + 1}..{e} (1-based) is empty or reversed")
        if merged and s < merged[-1][1]:
            raise GeneStructureError(f"{label}: coding exons {merged[-1][0] + 1}..{merged[-1][1]} and "
                                     f"{s + 1}..{e} (1-based) overlap; each base can be coded once")
        if merged and s == merged[-1][1]:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    return Gene(strand, tuple((s, e) for s, e in merged), name, bool(complete))


def genes_to_labels(length: int, genes: Sequence[Gene], where: str = "sequence") -> np.ndarray:
    """(length,) uint8 stranded labels of ``genes`` (see the module docstring).

    Raises GeneStructureError when a gene reaches outside ``0 .. length`` or two
    genes overlap (on any strand: one label per position cannot show both).
    """
    labels = np.zeros(int(length), dtype=np.uint8)
    order = sorted(genes, key=lambda g: (g.start, g.end))
    for g in order:
        if g.start < 0 or g.end > length:
            raise GeneStructureError(f"{where}: gene {g.name or '?'} spans {g.start + 1}..{g.end} (1-based) but "
                                     f"the sequence has {length} bases; fix the coordinates or the sequence")
    for a, b in zip(order, order[1:]):
        if b.start < a.end:
            raise GeneStructureError(
                f"{where}: genes {a.name or '?'} ({a.strand}, {a.start + 1}..{a.end}) and {b.name or '?'} "
                f"({b.strand}, {b.start + 1}..{b.end}) overlap; one label per base cannot show both: keep one "
                "transcript per locus (e.g. the longest isoform) or drop one of the genes")
    for g in order:
        labels[g.start:g.end] = _INTRON[g.strand]
        for s, e in g.exons:
            labels[s:e] = _EXON[g.strand]
    return labels


def labels_to_genes(labels) -> list[Gene]:
    """Genes of one (L,) stranded label array, sorted by start.

    A gene of strand s is a maximal run of exon-s / intron-s positions; its
    coding exons are the maximal runs of exon-s inside it (a run without any is
    no gene). Two genes of one strand with no intergenic base between them
    read as one.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 4):
        raise ValueError(f"labels must lie in 0..4 {STRANDED_CLASSES}, got {labels.min()}..{labels.max()}")
    genes = []
    for strand in ("+", "-"):
        exon, intron = _EXON[strand], _INTRON[strand]
        for gs, ge in _runs((labels == exon) | (labels == intron)):
            parts = [(gs + s, gs + e) for s, e in _runs(labels[gs:ge] == exon)]
            if parts:
                genes.append(Gene(strand, tuple(parts)))
    return sorted(genes, key=lambda g: (g.start, g.end, g.strand))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the maximal runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return [(int(s), int(e)) for s, e in zip(edges[0::2], edges[1::2])]


# ----------------------------------------------------------------------------
# GFF3

_ESCAPE = {c: f"%{ord(c):02X}" for c in ";=&,%\t\n\r"}
_SEQID = re.compile(r"[a-zA-Z0-9.:^*$@!+_?|-]+")


def _escape(value: str) -> str:
    return "".join(_ESCAPE.get(c, c) for c in value)


def _unescape(value: str) -> str:
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def cds_phases(gene: Gene) -> list[int]:
    """GFF3 phase of each coding exon (in ``gene.exons`` order): bases to skip to the next codon start.

    Counted from the gene's 5' end: ascending exons on +, descending on -.
    """
    order = range(len(gene.exons)) if gene.strand == "+" else range(len(gene.exons) - 1, -1, -1)
    phases = [0] * len(gene.exons)
    done = 0
    for i in order:
        phases[i] = (3 - done % 3) % 3
        done += gene.exons[i][1] - gene.exons[i][0]
    return phases


def gff3_gene_lines(seqid: str, genes: Sequence[Gene], source: str = "semicrf") -> list[str]:
    """GFF3 feature lines of ``genes`` on ``seqid`` (IDs ``<seqid>.g<k>``, source names kept as Name)."""
    lines = []
    for k, g in enumerate(sorted(genes, key=lambda x: (x.start, x.end, x.strand)), 1):
        gid = f"{seqid}.g{k}"
        tid = f"{gid}.t1"
        name = f";Name={_escape(g.name)}" if g.name else ""
        row = f"{seqid}\t{source}\t{{}}\t{{}}\t{{}}\t.\t{g.strand}\t{{}}\t{{}}\n".format
        lines.append(row("gene", g.start + 1, g.end, ".", f"ID={gid}{name}"))
        lines.append(row("mRNA", g.start + 1, g.end, ".", f"ID={tid};Parent={gid}"))
        children = []
        for i, ((s, e), phase) in enumerate(zip(g.exons, cds_phases(g))):
            children.append((s, 0, row("exon", s + 1, e, ".", f"ID={tid}.exon{i + 1};Parent={tid}")))
            children.append((s, 1, row("CDS", s + 1, e, phase, f"ID={tid}.cds;Parent={tid}")))
        for i, ((_, a), (b, _)) in enumerate(zip(g.exons, g.exons[1:])):
            children.append((a, 2, row("intron", a + 1, b, ".", f"ID={tid}.intron{i + 1};Parent={tid}")))
        lines.extend(line for _, _, line in sorted(children))
    return lines


def write_genes_gff3(path, sequences: Sequence[tuple[str, int, Sequence[Gene]]], source: str = "semicrf") -> None:
    """GFF3 of genes: ``sequences`` is [(seqid, length, genes)], written in that order, atomically."""
    from .formats import atomic_output

    bad = [name for name, _, _ in sequences if not _SEQID.fullmatch(str(name))]
    if bad:
        raise ValueError(f"sequence names must use only [a-zA-Z0-9.:^*$@!+_?|-] (GFF3 seqid), got {bad[:3]}")
    if not source or any(ch in source for ch in "\t\n\r"):
        raise ValueError(f"source must be a non-empty string without tabs or newlines, got {source!r}")
    with atomic_output(path, "w") as f:
        f.write("##gff-version 3\n")
        f.write("".join(f"##sequence-region {n} 1 {int(length)}\n" for n, length, _ in sequences))
        for name, _, genes in sequences:
            f.write("".join(gff3_gene_lines(name, genes, source)))


def open_text(path):
    """A text stream of ``path``, gunzipped when the file starts with the gzip magic bytes."""
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_genes_gff3(path, coding_types=("CDS", "stop_codon")) -> tuple[dict[str, list[Gene]], dict[str, int]]:
    """Genes of a GFF3 file, and the lengths its ``##sequence-region`` lines give.

    Returns ({seqid: [Gene, ...]} in order of first appearance, {seqid: length}).
    A gene's coding part is the union of the ``coding_types`` lines (CDS and
    stop_codon: some tools leave the stop codon out of the CDS) that share a
    Parent, i.e. one gene per transcript. A transcript is incomplete (a
    prediction cut at a sequence end) when the file has start_codon or
    stop_codon lines for some transcripts but lacks one of them for it.
    Raises GeneStructureError naming the file and line.
    """
    from .formats import gff3_span  # here, as atomic_output above: formats imports torch (via features)

    path = Path(path)
    parts: dict[tuple[str, str], list[tuple[int, int]]] = {}
    strands: dict[tuple[str, str], tuple[str, int]] = {}
    signals: dict[tuple[str, str], set[str]] = {}
    lengths: dict[str, int] = {}
    order: dict[str, None] = {}
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if line.startswith("##FASTA"):
                break
            if line.startswith("##sequence-region"):
                cols = line.split()
                if len(cols) == 4 and cols[2].isdigit() and cols[3].isdigit():
                    lengths[cols[1]] = int(cols[3])
                continue
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 9:
                raise GeneStructureError(f"{path}:{lineno}: a GFF3 feature line needs 9 tab-separated columns, "
                                         f"got {len(cols)}")
            seqid, ftype, strand = cols[0], cols[2], cols[6]
            if ftype not in coding_types and ftype not in ("start_codon", "stop_codon"):
                continue
            start, end = gff3_span(cols, f"{path}:{lineno}", GeneStructureError)
            attrs = dict(kv.split("=", 1) for kv in cols[8].strip().strip(";").split(";") if "=" in kv)
            parent = attrs.get("Parent")
            if not parent:
                raise GeneStructureError(f"{path}:{lineno}: {ftype} line without a Parent attribute; GFF3 CDS "
                                         "lines must name their transcript (Parent=<mRNA ID>)")
            key = (seqid, _unescape(parent.split(",")[0]))
            if strand not in ("+", "-"):
                raise GeneStructureError(f"{path}:{lineno}: {ftype} of {key[1]!r} has strand {strand!r}; "
                                         "coding features need '+' or '-'")
            if key in strands and strands[key][0] != strand:
                raise GeneStructureError(f"{path}:{lineno}: transcript {key[1]!r} has parts on both strands "
                                         f"(first at line {strands[key][1]}); trans-splicing is not supported")
            strands.setdefault(key, (strand, lineno))
            order.setdefault(seqid, None)
            if ftype in ("start_codon", "stop_codon"):
                signals.setdefault(key, set()).add(ftype)
            if ftype in coding_types:
                parts.setdefault(key, []).append((start - 1, end))
    check_signals = bool(signals)
    genes: dict[str, list[Gene]] = {s: [] for s in order}
    for (seqid, tid), rows in parts.items():
        rows = merge_intervals(rows)
        complete = not check_signals or signals.get((seqid, tid), set()) == {"start_codon", "stop_codon"}
        try:
            genes[seqid].append(make_gene(strands[(seqid, tid)][0], rows, tid, complete))
        except GeneStructureError as e:
            raise GeneStructureError(f"{path}: {e}") from None
    for seqid in genes:
        genes[seqid].sort(key=lambda g: (g.start, g.end, g.strand))
    return genes, lengths


def merge_intervals(rows: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of half-open intervals ``(start, end)``, as sorted disjoint intervals; touching
    ones merge (a stop codon next to a CDS line joins it)."""
    out: list[list[int]] = []
    for s, e in sorted(rows):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def genes_by_sequence(names: Sequence[str], labels: Sequence[np.ndarray]) -> dict[str, list[Gene]]:
    """{name: labels_to_genes(labels)} for parallel lists of names and stranded label arrays."""
    if len(names) != len(labels):
        raise ValueError(f"names has {len(names)} entries but labels has {len(labels)}")
    return {str(n): labels_to_genes(l) for n, l in zip(names, labels)}

