"""Gene-finder accuracy: nucleotide, exon and gene level sensitivity and specificity.

The measures the gene-finding field reports (and AUGUSTUS's evaluation
prints), computed from gene structures (:class:`gene_structures.Gene`: the
coding exons of a transcript, with its strand). Every function is pure.

Each sequence and each strand is compared on its own (a gene on + never
matches one on -); the counts are then summed over strands and sequences
before any ratio is taken. ``Sn = TP / (TP + FN)`` (of the truth, how much
was found), ``Sp = TP / (TP + FP)`` (of the prediction, how much is right).

Nucleotide level
    A base is annotated-coding on strand s when a true coding exon of strand s
    covers it, predicted-coding likewise. TP = bases both, FN = annotated
    only, FP = predicted only.

Exon level
    The distinct coding exons (start, end) of each strand. A predicted exon is
    right when a true exon of the same strand has the same start and end.
    TP = distinct predicted exons that are right; Sn = TP / distinct true
    exons, Sp = TP / distinct predicted exons.

Gene level
    A true gene is found when a predicted gene of the same strand has exactly
    its coding exons (all of them, and no other) and is complete (a
    prediction cut at a sequence end is not). TP = true genes found;
    Sn = TP / true genes, Sp = TP / distinct predicted genes (predictions with
    identical coding exons count once).

Empty denominators follow :mod:`.metrics`: ``x / 0`` is 1 when the other
side is empty too, else 0.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .gene_structures import Gene, _union
from .metrics import _ratio

LEVELS = ("nucleotide", "exon", "gene")


def _covered(intervals) -> int:
    return sum(e - s for s, e in intervals)


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Bases in both of two merged, sorted interval lists."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            total += hi - lo
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _check(genes, name: str) -> dict[str, list[Gene]]:
    if not isinstance(genes, Mapping):
        raise ValueError(f"{name} must map sequence names to lists of Gene, got {type(genes).__name__}")
    for seq, gs in genes.items():
        for g in gs:
            if not isinstance(g, Gene):
                raise ValueError(f"{name}[{seq!r}] must hold Gene objects, got {type(g).__name__}")
    return {str(k): list(v) for k, v in genes.items()}


def gene_counts(true: Mapping[str, Sequence[Gene]], pred: Mapping[str, Sequence[Gene]]) -> dict:
    """The raw counts of every level: {level: {"tp", "fn", "fp", "num_true", "num_pred"}}.

    true, pred: {sequence name: [Gene, ...]}. A sequence missing from ``pred``
    has no predictions; a sequence of ``pred`` missing from ``true`` is an
    error (predictions on a sequence nobody annotated cannot be scored).
    """
    true, pred = _check(true, "true"), _check(pred, "pred")
    unknown = sorted(set(pred) - set(true))
    if unknown:
        raise ValueError(f"pred has sequences that true lacks: {unknown[:5]}; score predictions only on "
                         "annotated sequences (give true an empty list for a sequence without genes)")
    c = {level: {"tp": 0, "fn": 0, "fp": 0, "num_true": 0, "num_pred": 0} for level in LEVELS}
    for seq, true_genes in true.items():
        pred_genes = pred.get(seq, [])
        for strand in ("+", "-"):
            tg = [g for g in true_genes if g.strand == strand]
            pg = [g for g in pred_genes if g.strand == strand]
            # nucleotides
            t_cov = _union(x for g in tg for x in g.exons)
            p_cov = _union(x for g in pg for x in g.exons)
            both = _overlap(t_cov, p_cov)
            n = c["nucleotide"]
            n["tp"] += both
            n["num_true"] += _covered(t_cov)
            n["num_pred"] += _covered(p_cov)
            # exons
            t_ex = {x for g in tg for x in g.exons}
            p_ex = {x for g in pg for x in g.exons}
            e = c["exon"]
            e["tp"] += len(t_ex & p_ex)
            e["num_true"] += len(t_ex)
            e["num_pred"] += len(p_ex)
            # genes
            found = {g.exons for g in pg if g.complete}
            k = c["gene"]
            k["tp"] += sum(1 for g in tg if g.exons in found)
            k["num_true"] += len(tg)
            k["num_pred"] += len({g.exons for g in pg})
    for level in LEVELS:
        d = c[level]
        d["fn"] = d["num_true"] - d["tp"]
        d["fp"] = d["num_pred"] - d["tp"]
    return c


def gene_accuracy(true: Mapping[str, Sequence[Gene]], pred: Mapping[str, Sequence[Gene]]) -> dict:
    """Sensitivity and specificity at each level, with the counts behind them.

    Returns ``{level: {"sensitivity", "specificity", "tp", "fn", "fp", "num_true", "num_pred"}}``
    for level in ``nucleotide``, ``exon``, ``gene`` (see the module docstring).
    """
    out = {}
    for level, d in gene_counts(true, pred).items():
        out[level] = {
            "sensitivity": _ratio(d["tp"], d["num_true"], d["num_pred"]),
            "specificity": _ratio(d["tp"], d["num_pred"], d["num_true"]),
            **d,
        }
    return out


def format_accuracy_row(name: str, acc: dict) -> str:
    """One table row: name, then Sn / Sp of each level to three decimals."""
    cells = [f"{acc[level]['sensitivity']:.3f} / {acc[level]['specificity']:.3f}" for level in LEVELS]
    return f"{name:<28} " + "  ".join(f"{c:>13}" for c in cells)
