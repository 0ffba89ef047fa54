"""Round 22: predicted and true genes by exon count, and the predicted exons that overlap no true one ("false")
by their place in the predicted gene, from two BED12 files (the runner's predictions and the data set's truth).

    python3 gene_counts.py PRED.bed TRUE.bed
"""
import collections
import sys


def read_bed(path, keep=None):
    """{sequence: [[(start, end) of each exon] per gene]} of a BED12 file, only the sequences in keep if given."""
    out = collections.defaultdict(list)
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if keep is not None and f[0] not in keep:
            continue
        start = int(f[1])
        sizes = [int(x) for x in f[10].strip(",").split(",")]
        offsets = [int(x) for x in f[11].strip(",").split(",")]
        out[f[0]].append([(start + o, start + o + z) for o, z in zip(offsets, sizes)])
    return out


def overlaps(a, b):
    return a[0] < b[1] and b[0] < a[1]


pred = read_bed(sys.argv[1])
true = read_bed(sys.argv[2], set(pred))
true_exons = {k: [e for g in v for e in g] for k, v in true.items()}
for name, genes in (("true", true), ("pred", pred)):
    n = collections.Counter(len(g) for v in genes.values() for g in v)
    print(name, "genes", sum(n.values()), "by exon count", sorted(n.items()))
false = collections.Counter()
for seq, genes in pred.items():
    for g in genes:
        for i, exon in enumerate(g):
            if not any(overlaps(exon, t) for t in true_exons.get(seq, [])):
                place = "single" if len(g) == 1 else "first" if i == 0 else "last" if i == len(g) - 1 else "inner"
                false[place] += 1
print("false exons by place in predicted gene", dict(false))
