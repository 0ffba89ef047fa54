"""benchmarks/real_genes/score_arm.py: a whole-arm decode scored at loci cut from the arm (one of them in a
tandem repeat), against hand-counted gene-finder measures."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from semicrf.genomics.gene_structures import Gene, write_genes_gff3
from semicrf.genomics.importer import import_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "score_arm.py"
spec = importlib.util.spec_from_file_location("score_arm", SCRIPT)
sa = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sa)


def _arm(tmp_path):
    rng = np.random.default_rng(0)
    arm = rng.integers(0, 4, 3000).astype(np.uint8)
    arm[2000:2300] = arm[1500:1800]  # a tandem repeat: the locus at 1500 is found at 2000 too
    fasta = tmp_path / "arm.fa"
    fasta.write_text(">chrX\n" + "".join("ACGT"[b] for b in arm) + "\n")
    return arm, fasta


def _pair(tmp_path, stem, records):
    """FASTA:GFF3 argument of [(name, bases, genes)]."""
    fa, gff = tmp_path / f"{stem}.fa", tmp_path / f"{stem}.gff3"
    fa.write_text("".join(f">{n}\n{''.join('ACGT'[b] for b in seq)}\n" for n, seq, _ in records))
    write_genes_gff3(gff, [(n, len(seq), g) for n, seq, g in records])
    return f"{fa}:{gff}"


def _loci(tmp_path, arm, loci):
    """An imported data set whose test split is (name, start, length, genes in locus coordinates) of ``arm``."""
    data = tmp_path / "data"
    other = [("train1", np.zeros(50, np.uint8), [Gene("+", ((5, 20),))])]
    import_dataset(data, train=[_pair(tmp_path, "tr", other)], val=[_pair(tmp_path, "va", [("val1", *other[0][1:])])],
                   test=[_pair(tmp_path, "te", [(n, arm[s:s + length], g) for n, s, length, g in loci])])
    return data


def test_arm_predictions_are_scored_at_the_loci(tmp_path):
    arm, fasta = _arm(tmp_path)
    # Names carry another assembly's coordinates, shifted by 10 000 (as the fly loci's do).
    loci = [("chrX_10101-10400", 100, 300, [Gene("+", ((50, 80), (120, 200)))]),
            ("chrX_10701-10900", 700, 200, [Gene("-", ((20, 60),))]),
            ("chrX_11501-11800", 1500, 300, [Gene("+", ((100, 150),))])]
    data = _loci(tmp_path, arm, loci)
    gff3 = tmp_path / "arm.gff3"
    write_genes_gff3(gff3, [("chrX", 3000, [
        Gene("+", ((150, 180), (220, 300))),  # locus 1's gene, exactly
        Gene("-", ((720, 760),)),  # locus 2's gene, exactly
        Gene("+", ((880, 950),)),  # reaches past locus 2's end (900): clipped to 880..900, incomplete
        Gene("+", ((1600, 1650),)),  # locus 3's gene at its true place
        Gene("+", ((2000, 2040),)),  # in the repeat's other copy: outside every locus
    ])])
    result = sa.score_arm(gff3, fasta, data)
    assert result["offsets"] == {"chrX_10101-10400": 100, "chrX_10701-10900": 700, "chrX_11501-11800": 1500}
    assert result["repeated"] == ["chrX_11501-11800"]
    acc = result["accuracy"]
    # exons: 4 true, 5 predicted in the loci (the clipped one included), 4 right
    assert (acc["exon"]["sensitivity"], acc["exon"]["specificity"]) == (1.0, 4 / 5)
    # genes: 3 true, 4 predicted, 3 right (the clipped one is incomplete)
    assert (acc["gene"]["sensitivity"], acc["gene"]["specificity"]) == (1.0, 3 / 4)
    assert acc["nucleotide"]["sensitivity"] == 1.0
    assert acc["nucleotide"]["specificity"] == pytest.approx(200 / 220)


def test_a_locus_not_in_the_arm_or_an_unplaceable_repeat_is_refused(tmp_path):
    arm, fasta = _arm(tmp_path)
    gff3 = tmp_path / "arm.gff3"
    write_genes_gff3(gff3, [("chrX", 3000, [])])
    rc = (3 - arm[100:400][::-1]).astype(np.uint8)  # the other strand
    data = _loci(tmp_path, np.concatenate([arm, rc]), [("chrX_1-300", 3000, 300, [Gene("+", ((10, 40),))])])
    with pytest.raises(sa.ArmError, match="not found"):
        sa.score_arm(gff3, fasta, data)
    other = tmp_path / "other"
    other.mkdir()
    data = _loci(other, arm, [("repeat", 1500, 300, [Gene("+", ((10, 40),))])])
    with pytest.raises(sa.ArmError, match="2 places"):
        sa.score_arm(gff3, fasta, data)


def test_layout_of_the_genes_on_a_chromosome():
    genes = [Gene("+", ((100, 200), (6300, 6400))),       # span 6 300, one intron of 6 100
             Gene("-", ((7000, 7100),)),                    # gap 600 after the first
             Gene("+", ((7050, 7060), (30000, 30010))),    # overlaps the second: no gap; intron 22 940
             Gene("-", ((40000, 40300),))]                  # gap 9 990 after the third
    lay = sa.layout(list(reversed(genes)), 50_000)
    assert lay["genes"] == 4 and lay["genes_per_mbp"] == pytest.approx(80.0)
    assert lay["span_median"] == pytest.approx((300 + 6300) / 2)  # spans 100, 300, 6300, 22960
    assert lay["gap_median"] == pytest.approx((600 + 9990) / 2)
    assert (lay["introns"], lay["introns_over_5kbp"], lay["introns_over_20kbp"]) == (2, 2, 1)
    assert lay["coding_fraction"] == pytest.approx((100 + 100 + 100 + 10 + 10 + 300 - 10) / 50_000)  # 7050..7060 twice
    assert sa.layout([], 10)["genes"] == 0
    assert "4 genes (80 per Mbp)" in sa.format_layout("x", lay)
