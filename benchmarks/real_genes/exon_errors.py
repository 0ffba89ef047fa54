#!/usr/bin/env python3
"""Where predicted gene structures go wrong on the imported test loci: which exon end, and which introns.

    python3 benchmarks/real_genes/exon_errors.py --data-dir data/fly \
        --gff3 AUGUSTUS=results/gene_finders/augustus_trained.gff3 \
        --gff3 semicrf_gene=results/fly_gene_s1/predictions/semicrf_gene.gff3 [--max-duration 300] [--json OUT]

The exon level of ``score_models.py`` counts an exon right only when both its ends are; this script says
what the others are. Each true coding exon (the test split's labels, as ``score_models.py`` reads them) is

- ``exact``: a predicted exon of its strand has both its ends;
- ``one end``: a predicted exon of its strand overlaps it with exactly one end in common; the other end
  is named by what it is in the true gene: the ``start`` codon's or the ``stop`` codon's side of the
  coding sequence, or a splice site, ``donor`` (exon | intron) or ``acceptor`` (intron | exon), read
  on the gene's strand; a wrong ``donor`` or ``acceptor`` is counted again when the true intron beside
  it is longer than ``--max-duration`` (a semi-CRF at that K cuts that intron into several segments);
- ``overlap``: predicted exons of its strand overlap it, none with an end in common;
- ``missed``: none overlaps it.

and every distinct predicted exon that overlaps no true exon of its strand is ``false`` (a gene finder's
wrong exon: the exon specificity's misses that no true exon explains).

The data set may also be the synthetic benchmark's (``generate``: classes intergenic, exon, intron, +
strand only, every exon coding): its predictions GFF3 is then read as the runner writes it (gene, mRNA,
exon and intron lines) through the benchmark's own reader, and its exons are the exon-labelled runs.

And every predicted intron (the gap between two consecutive exons of a predicted gene) is checked for the
canonical splice dinucleotides, GT .. AG on the + strand and CT .. AC as read on + for a - gene, counted
apart for introns of at most ``--max-duration`` bases (one segment of a semi-CRF at that K) and longer
ones (several). The fly's annotated introns are canonical but for 2 of 1 751 in the training loci.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from semicrf.genomics.dataset import load_metadata, load_split
from semicrf.genomics.formats import read_gff3
from semicrf.genomics.gene_structures import STRANDED_CLASSES, Gene, genes_by_sequence
from semicrf.genomics.synthetic import class_names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_models import ScoreError, read_predictions  # noqa: E402

#: An intron's first and last two bases as read on the + strand, per gene strand.
CANONICAL = {"+": ("GT", "AG"), "-": ("CT", "AC")}
OUTCOMES = ("exact", "one end", "overlap", "missed")
#: The synthetic benchmark's classes: ids 0, 1, 2 as those of intergenic, exon+ and intron+.
SYNTHETIC_CLASSES = tuple(class_names(3))
END_KINDS = ("start", "stop", "donor", "acceptor")
_BASES = "ACGTN"


def end_kinds(gene: Gene, i: int) -> tuple[str, str]:
    """What the left and right ends (in sequence coordinates) of ``gene``'s i-th exon are: ``start`` or
    ``stop`` at the coding sequence's ends, ``donor`` or ``acceptor`` beside an intron, read on its strand
    (a - gene's leftmost exon ends at its stop codon, and its introns' left ends are acceptors)."""
    n = len(gene.exons)
    if gene.strand == "+":
        return ("start" if i == 0 else "acceptor"), ("stop" if i == n - 1 else "donor")
    return ("stop" if i == 0 else "donor"), ("start" if i == n - 1 else "acceptor")


def exon_outcomes(true: dict, pred: dict, max_duration: int | None = None) -> dict:
    """{"exact", "one end", "overlap", "missed": count, "one end by kind": {kind: count}} over the distinct
    true exons of every sequence and strand (as the exon level counts them); with ``max_duration``, also
    "one end beside a long intron": {"donor", "acceptor": count}, the wrong splice ends whose true intron
    (on the wrong end's side of the exon) is longer than ``max_duration`` bases."""
    out = {k: 0 for k in OUTCOMES}
    by_kind = {k: 0 for k in END_KINDS}
    beside_long = {"donor": 0, "acceptor": 0}
    for seq, genes in true.items():
        for strand in ("+", "-"):
            predicted = {x for g in pred.get(seq, []) if g.strand == strand for x in g.exons}
            seen = set()
            for g in genes:
                if g.strand != strand:
                    continue
                for i, (s, e) in enumerate(g.exons):
                    if (s, e) in seen:
                        continue
                    seen.add((s, e))
                    if (s, e) in predicted:
                        out["exact"] += 1
                        continue
                    hits = [(ps, pe) for ps, pe in predicted if ps < e and pe > s]
                    left, right = end_kinds(g, i)
                    # The wrong end of each hit with one end in common: "right" when the left one is shared.
                    wrong = ["right" if ps == s else "left" for ps, pe in hits if (ps == s) != (pe == e)]
                    if wrong:
                        kind = right if wrong[0] == "right" else left
                        out["one end"] += 1
                        by_kind[kind] += 1
                        if kind in beside_long and max_duration is not None:
                            intron = g.exons[i + 1][0] - e if wrong[0] == "right" else s - g.exons[i - 1][1]
                            beside_long[kind] += intron > max_duration
                    else:
                        out["overlap" if hits else "missed"] += 1
    out["one end by kind"] = by_kind
    if max_duration is not None:
        out["one end beside a long intron"] = beside_long
    return out


def false_exons(true: dict, pred: dict) -> int:
    """How many distinct predicted exons (per sequence and strand) overlap no true exon of their strand."""
    count = 0
    for seq, genes in pred.items():
        for strand in ("+", "-"):
            truth = [x for g in true.get(seq, []) if g.strand == strand for x in g.exons]
            predicted = {x for g in genes if g.strand == strand for x in g.exons}
            count += sum(not any(ts < pe and te > ps for ts, te in truth) for ps, pe in predicted)
    return count


def intron_splice_counts(pred: dict, sequences: dict, max_duration: int) -> dict:
    """{"short" | "long": {"canonical", "non-canonical"}} over the predicted introns; short: at most
    ``max_duration`` bases. sequences: {name: base codes (0..4)}."""
    out = {size: {"canonical": 0, "non-canonical": 0} for size in ("short", "long")}
    for seq, genes in pred.items():
        codes = sequences[seq]
        for g in genes:
            for (_, left_end), (right_start, _) in zip(g.exons[:-1], g.exons[1:]):
                first = "".join(_BASES[c] for c in codes[left_end:left_end + 2])
                last = "".join(_BASES[c] for c in codes[right_start - 2:right_start])
                size = "short" if right_start - left_end <= max_duration else "long"
                ok = (first, last) == CANONICAL[g.strand]
                out[size]["canonical" if ok else "non-canonical"] += 1
    return out


def read_synthetic_predictions(truth: dict, path, class_names) -> dict:
    """{name: [Gene]} of a synthetic run's predictions GFF3 (the runner's gene / mRNA / exon / intron lines)."""
    labels = read_gff3(path, class_names)
    extra = sorted(set(labels) - set(truth))
    if extra:
        raise ScoreError(f"{path}: predictions on sequences the test split does not have: {extra[:3]}")
    return genes_by_sequence(list(labels), list(labels.values()))


def report(data_dir, systems: list[tuple[str, str]], max_duration: int) -> list[dict]:
    """One row per (label, GFF3) against the test split of ``data_dir``."""
    test = load_split(data_dir, "test")
    class_names = tuple(load_metadata(data_dir)["class_names"])
    if class_names not in (STRANDED_CLASSES, SYNTHETIC_CLASSES):
        raise SystemExit(f"exon_errors: {data_dir} has classes {list(class_names)}; it reads an imported gene set "
                         f"({list(STRANDED_CLASSES)}) or the synthetic benchmark's ({list(SYNTHETIC_CLASSES)})")
    truth = genes_by_sequence(test.names, test.labels)
    sequences = dict(zip(test.names, test.sequences))
    rows = []
    for label, path in systems:
        if not Path(path).is_file():
            raise SystemExit(f"exon_errors: --gff3 {label}={path} does not exist")
        try:
            pred = read_predictions(truth, path) if class_names == STRANDED_CLASSES else \
                read_synthetic_predictions(truth, path, class_names)
        except (ScoreError, ValueError) as e:
            raise SystemExit(f"exon_errors: {e}") from None
        exons = {**exon_outcomes(truth, pred, max_duration), "false": false_exons(truth, pred)}
        rows.append({"system": label, "gff3": str(path), "exons": exons,
                     "introns": intron_splice_counts(pred, sequences, max_duration)})
    return rows


def format_table(rows: list[dict], max_duration: int) -> str:
    head = (["system"] + list(OUTCOMES) + ["false"] + [f"one end: {k}" for k in END_KINDS]
            + [f"one end: {k}, true intron > {max_duration}" for k in ("donor", "acceptor")]
            + [f"introns <= {max_duration}: non-canonical", f"introns > {max_duration}: non-canonical"])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for r in rows:
        e, i = r["exons"], r["introns"]
        cells = [r["system"]] + [str(e[k]) for k in OUTCOMES + ("false",)]
        cells += [str(e["one end by kind"][k]) for k in END_KINDS]
        cells += [str(e["one end beside a long intron"][k]) for k in ("donor", "acceptor")]
        for size in ("short", "long"):
            n = i[size]["canonical"] + i[size]["non-canonical"]
            cells.append(f"{i[size]['non-canonical']} of {n}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _system(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--gff3 takes LABEL=PATH, got {text!r}")
    return label, path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True,
                    help="the imported (or synthetic) data set whose test split is the truth")
    ap.add_argument("--gff3", type=_system, action="append", required=True,
                    help="LABEL=PATH of a predictions GFF3 on the test loci (repeat for several systems)")
    ap.add_argument("--max-duration", type=int, default=300,
                    help="introns of at most this many bases are counted apart (a semi-CRF's K)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.max_duration < 1:
        ap.error(f"--max-duration must be at least 1, got {args.max_duration}")
    rows = report(args.data_dir, args.gff3, args.max_duration)
    print(format_table(rows, args.max_duration))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
