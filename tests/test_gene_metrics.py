"""Gene-finder accuracy measures and gene structures, on hand-computed cases."""

import numpy as np
import pytest

from semicrf.genomics.gene_metrics import gene_accuracy, gene_counts
from semicrf.genomics.gene_structures import (Gene, GeneStructureError, cds_phases, genes_to_labels,
                                              labels_to_genes, make_gene, read_genes_gff3, write_genes_gff3)

G1 = Gene("+", ((10, 20), (30, 40)))
G2 = Gene("-", ((50, 60),))


def test_hand_computed_levels():
    pred = {"s1": [Gene("+", ((10, 20), (30, 42))),   # first exon right, second 2 bases long
                   Gene("-", ((50, 60),)),            # G2 exactly
                   Gene("+", ((50, 60),)),            # G2's place on the wrong strand
                   Gene("-", ((50, 60),))]}           # a duplicate prediction
    acc = gene_accuracy({"s1": [G1, G2]}, pred)
    # nucleotides: + true 20, pred 10+12+10 = 32, both 20; - true 10, pred 10, both 10
    assert (acc["nucleotide"]["tp"], acc["nucleotide"]["num_true"], acc["nucleotide"]["num_pred"]) == (30, 30, 42)
    assert acc["nucleotide"]["sensitivity"] == 1.0 and acc["nucleotide"]["specificity"] == pytest.approx(30 / 42)
    # exons: + {10-20, 30-40} vs {10-20, 30-42, 50-60}: 1 right; - {50-60} vs {50-60}: 1 right
    assert (acc["exon"]["tp"], acc["exon"]["num_true"], acc["exon"]["num_pred"]) == (2, 3, 4)
    assert acc["exon"]["sensitivity"] == pytest.approx(2 / 3) and acc["exon"]["specificity"] == 0.5
    # genes: G2 found; distinct predictions: 2 on +, 1 on - (the duplicate counts once)
    assert (acc["gene"]["tp"], acc["gene"]["num_true"], acc["gene"]["num_pred"]) == (1, 2, 3)
    assert acc["gene"]["sensitivity"] == 0.5 and acc["gene"]["specificity"] == pytest.approx(1 / 3)
    assert acc["gene"]["fn"] == 1 and acc["gene"]["fp"] == 2


def test_incomplete_prediction_never_counts_as_a_gene_and_missing_sequence_is_empty():
    truth = {"s1": [G2], "s2": [Gene("+", ((0, 5),))]}
    acc = gene_accuracy(truth, {"s1": [Gene("-", ((50, 60),), complete=False)]})
    assert acc["gene"]["tp"] == 0 and acc["gene"]["num_pred"] == 1
    assert acc["exon"]["tp"] == 1 and acc["exon"]["num_true"] == 2  # the exon itself is right
    assert acc["nucleotide"]["sensitivity"] == pytest.approx(10 / 15)


def test_empty_and_errors():
    acc = gene_accuracy({"s": []}, {})
    assert all(acc[lv]["sensitivity"] == 1.0 and acc[lv]["specificity"] == 1.0 for lv in acc)
    acc = gene_accuracy({"s": [G1]}, {})
    assert acc["gene"]["sensitivity"] == 0.0 and acc["gene"]["specificity"] == 0.0
    with pytest.raises(ValueError, match="pred has sequences that true lacks"):
        gene_counts({"s": [G1]}, {"t": [G1]})


def test_labels_to_genes_of_a_prediction():
    # + gene with a leading intron, a lone intron- run (no gene), a - gene, and + genes back to back
    lab = np.array([0, 2, 1, 1, 2, 1, 0, 4, 4, 0, 3, 4, 3, 0, 1, 1, 3, 0])
    genes = labels_to_genes(lab)
    assert genes == [Gene("+", ((2, 4), (5, 6))), Gene("-", ((10, 11), (12, 13))), Gene("+", ((14, 16),)),
                     Gene("-", ((16, 17),))]


def test_genes_to_labels_and_refusals():
    lab = genes_to_labels(12, [Gene("+", ((1, 3), (5, 6))), Gene("-", ((8, 10),))])
    assert lab.tolist() == [0, 1, 1, 2, 2, 1, 0, 0, 3, 3, 0, 0]
    with pytest.raises(GeneStructureError, match="overlap"):
        genes_to_labels(12, [Gene("+", ((1, 5),), "a"), Gene("-", ((4, 8),), "b")])
    with pytest.raises(GeneStructureError, match="has 12 bases"):
        genes_to_labels(12, [Gene("+", ((10, 13),), "a")])
    assert make_gene("+", [(5, 8), (0, 3), (3, 4)]).exons == ((0, 4), (5, 8))  # touching parts merge
    with pytest.raises(GeneStructureError, match="overlap"):
        make_gene("-", [(0, 5), (4, 8)], "x")


def test_phases_and_gff3_round_trip(tmp_path):
    plus = Gene("+", ((0, 4), (10, 15), (20, 26)))  # lengths 4, 5, 6: phases 0, 2, 0
    minus = Gene("-", ((30, 36), (40, 44)))         # 5' exon 40-44 (length 4) phase 0, then 30-36 phase 2
    assert cds_phases(plus) == [0, 2, 0] and cds_phases(minus) == [2, 0]
    path = tmp_path / "g.gff3"
    write_genes_gff3(path, [("s1", 50, [minus, plus])])
    genes, lengths = read_genes_gff3(path)
    assert lengths == {"s1": 50}
    assert [(g.strand, g.exons) for g in genes["s1"]] == [("+", plus.exons), ("-", minus.exons)]
    lines = [l.split("\t") for l in path.read_text().splitlines() if not l.startswith("#")]
    assert [(l[2], l[3], l[4], l[7]) for l in lines if l[2] == "CDS" and l[6] == "-"] == [
        ("CDS", "31", "36", "2"), ("CDS", "41", "44", "0")]
