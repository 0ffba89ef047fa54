#!/usr/bin/env python3
"""Score a whole-chromosome decode at the imported test loci that lie in that chromosome.

    python3 benchmarks/real_genes/score_arm.py --gff3 ARM.gff3 --fasta chr2R.fa \
        [--data-dir data/fly] [--split test] [--json OUT]

The AUGUSTUS tutorial's fly loci (``make fly-data``) are stretches of chr2R, the arm that
``decode_chromosome.py`` decodes in one pass. This script finds each locus of ``--split`` in the FASTA by
its exact sequence (on the + strand; a locus found nowhere is refused, one found at several places is
placed by its neighbours: :func:`resolve_repeats`), takes the
predicted genes of the whole-arm GFF3 that overlap it, shifts them to the locus's coordinates, and
scores them with :func:`semicrf.genomics.gene_metrics.gene_accuracy` against the locus's labels: the
measures and the truth of ``score_models.py`` (the same 100 test loci, 472 exons, 100 genes). A
predicted gene that reaches past the locus keeps only the parts of its exons inside it and counts as
incomplete (never right at the gene level), as a gene cut by a sequence's end is in a per-locus decode.
So the row says how the one-pass decode of the arm does on the genes a per-locus decode is scored on.
A second line (and ``layout`` in the JSON) says how all the predicted genes lie on the arm
(:func:`layout`: genes per Mbp, spans, gaps, long introns), which shows a decode that merges neighbours.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from semicrf.genomics import gene_metrics
from semicrf.genomics.dataset import load_split
from semicrf.genomics.gene_structures import Gene, labels_to_genes, read_genes_gff3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_chromosome import read_fasta_records  # noqa: E402


class ArmError(ValueError):
    """Inputs that cannot be scored together; the message says what to change."""


def occurrences(arm: bytes, locus: bytes) -> list[int]:
    """Every offset of ``locus`` in ``arm`` (both as bytes of base codes)."""
    found, at = [], arm.find(locus)
    while at >= 0:
        found.append(at)
        at = arm.find(locus, at + 1)
    return found


_NAME = re.compile(r"^(.+)_(\d+)-(\d+)$")


def resolve_repeats(places: dict[str, list[int]]) -> dict[str, int]:
    """One offset per locus. A locus found at several places (one test locus of the fly set lies in a
    tandem duplication, 6 288 bases apart) takes the place whose distance to the nearest locus found
    once is the distance of their names' coordinates (``<seqid>_<start>-<end>``, of the assembly the
    loci were cut from): that assembly's coordinates are this one's shifted, locally, by a constant."""
    unique = {n: p[0] for n, p in places.items() if len(p) == 1}
    named = {n: int(m.group(2)) for n in places if (m := _NAME.match(n))}
    out = dict(unique)
    for name, found in places.items():
        if not found:
            raise ArmError(f"locus {name}: not found in the FASTA (a locus of another chromosome, or of the "
                           "other strand)")
        if len(found) == 1:
            continue
        anchors = [n for n in unique if n in named]
        if name not in named or not anchors:
            raise ArmError(f"locus {name}: found at {len(found)} places ({found[:3]}) and no other locus's "
                           "coordinates tell which")
        anchor = min(anchors, key=lambda n: abs(named[n] - named[name]))
        want = unique[anchor] + named[name] - named[anchor]
        if want not in found:
            raise ArmError(f"locus {name}: found at {found[:3]}, none {named[name] - named[anchor]} bases from "
                           f"the nearest locus found once ({anchor}, at {unique[anchor]})")
        out[name] = want
    return out


def genes_in_window(genes, lo: int, hi: int) -> list[Gene]:
    """The genes overlapping [lo, hi), in its coordinates; one reaching past it is clipped and incomplete."""
    out = []
    for g in genes:
        if g.end <= lo or g.start >= hi:
            continue
        inside = g.start >= lo and g.end <= hi
        exons = tuple((max(s, lo) - lo, min(e, hi) - lo) for s, e in g.exons if e > lo and s < hi)
        out.append(Gene(g.strand, exons, g.name, g.complete and inside))
    return out


def layout(genes: list[Gene], length: int) -> dict:
    """How the genes of one chromosome lie: their count and the genes per Mbp, their spans (first coding
    base to last) and the gaps between neighbours (median and 90th percentile; neighbours that overlap,
    on the two strands, give no gap), the coding fraction, and the introns longer than 5 and 20 kbp.
    What tells a decode that merges neighbouring genes (long spans and introns, few genes) from one that
    does not, where no annotation of the whole chromosome is at hand."""
    genes = sorted(genes, key=lambda g: (g.start, g.end))
    spans = np.array([g.end - g.start for g in genes], dtype=np.int64)
    gaps = np.array([b.start - a.end for a, b in zip(genes, genes[1:]) if b.start > a.end], dtype=np.int64)
    introns = np.array([b[0] - a[1] for g in genes for a, b in zip(g.exons, g.exons[1:])], dtype=np.int64)
    coding = np.zeros(length, dtype=bool)
    for g in genes:
        for a, b in g.exons:
            coding[a:b] = True

    def q(x, f):
        return float(np.quantile(x, f)) if x.size else None

    return {"genes": len(genes), "genes_per_mbp": len(genes) / length * 1e6 if length else None,
            "span_median": q(spans, 0.5), "span_p90": q(spans, 0.9), "gap_median": q(gaps, 0.5),
            "gap_p90": q(gaps, 0.9), "coding_fraction": float(coding.mean()) if length else None,
            "introns": int(introns.size), "introns_over_5kbp": int((introns > 5000).sum()),
            "introns_over_20kbp": int((introns > 20000).sum())}


def format_layout(name: str, lay: dict) -> str:
    def kb(x):
        return "-" if x is None else f"{x / 1000:.1f}"

    return (f"{name}: {lay['genes']} genes ({lay['genes_per_mbp']:.0f} per Mbp), span median {kb(lay['span_median'])} "
            f"kbp (p90 {kb(lay['span_p90'])}), gap median {kb(lay['gap_median'])} kbp (p90 {kb(lay['gap_p90'])}), "
            f"coding {lay['coding_fraction']:.3f}, introns over 5 / 20 kbp {lay['introns_over_5kbp']} / "
            f"{lay['introns_over_20kbp']} of {lay['introns']}")


def score_arm(gff3, fasta, data_dir, split: str = "test") -> dict:
    records = read_fasta_records(fasta)
    pred, _ = read_genes_gff3(gff3, coding_types=("CDS",))
    loci = load_split(data_dir, split)
    if len(records) != 1:
        raise ArmError(f"{fasta} has {len(records)} records; give the one chromosome that was decoded")
    seqid, arm = records[0]
    arm = np.asarray(arm, np.uint8).tobytes()
    places = {name: occurrences(arm, np.asarray(codes, np.uint8).tobytes())
              for name, codes in zip(loci.names, loci.sequences)}
    offsets = resolve_repeats(places)
    truth, projected = {}, {}
    for name, codes, labels in zip(loci.names, loci.sequences, loci.labels):
        at = offsets[name]
        truth[name] = labels_to_genes(labels)
        projected[name] = genes_in_window(pred.get(seqid, []), at, at + len(codes))
    return {"accuracy": gene_metrics.gene_accuracy(truth, projected), "loci": len(truth), "seqid": seqid,
            "layout": layout(pred.get(seqid, []), len(arm)), "offsets": offsets,
            "repeated": sorted(n for n, p in places.items() if len(p) > 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gff3", required=True, help="the whole-chromosome decode (decode_chromosome.py --output-gff3)")
    ap.add_argument("--fasta", required=True, help="the decoded FASTA (plain or gzipped)")
    ap.add_argument("--data-dir", default="data/fly", help="the imported data set whose loci to score at")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    try:
        result = score_arm(args.gff3, args.fasta, args.data_dir, args.split)
    except (ArmError, ValueError, OSError) as e:
        print(f"score_arm: {e}", file=sys.stderr)
        return 2
    acc = result["accuracy"]
    print(f"{result['loci']} {args.split} loci located in {args.fasta}")
    print(gene_metrics.format_accuracy_row(Path(args.gff3).name, acc))
    print(format_layout(f"the whole {result['seqid']}", result["layout"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
