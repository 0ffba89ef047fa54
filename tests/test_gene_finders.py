"""The gene-finder comparison's converters on a tiny hand-made case, and gt gff3validator on its GFF3."""

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from semicrf.genomics.gene_structures import Gene, read_genes_gff3, write_genes_gff3

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "gene_finders.py"
spec = importlib.util.spec_from_file_location("gene_finders", SCRIPT)
gf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gf)

# 30 bases: + gene ATG at 0..3, stop TAA at 9..12; - gene: its stop (TTA on +, TAA on -) at 18..21
SEQ = "ATGAAACCCTAAGGGGGGTTAGGGCATGGG"
PLUS = Gene("+", ((0, 3), (6, 9)))
MINUS = Gene("-", ((21, 27),))


def test_stop_codon_added_and_trimmed():
    assert gf.with_stop(SEQ, PLUS).exons == ((0, 3), (6, 12))
    assert gf.with_stop(SEQ, MINUS).exons == ((18, 27),)
    assert gf.without_stop(SEQ, gf.with_stop(SEQ, PLUS)) == PLUS
    assert gf.without_stop(SEQ, gf.with_stop(SEQ, MINUS)) == MINUS
    assert gf.without_stop(SEQ, PLUS) == PLUS  # CCC is no stop codon: unchanged
    # a stop codon split by an intron: T|AA
    split = Gene("+", ((0, 10), (15, 17)))
    assert gf.without_stop("ATGCCCAAAT" + "GTAAG" + "AA" + "C" * 13, split).exons == ((0, 9),)


def test_zff_written_and_read_back():
    text = "".join(gf.zff_lines("s1", [PLUS, MINUS]))
    assert text == ">s1\nEinit\t1\t3\ts1.g1\nEterm\t7\t9\ts1.g1\nEsngl\t27\t22\ts1.g2\n"
    genes = gf.parse_snap_zff(text)
    assert [(g.strand, g.exons, g.complete) for g in genes["s1"]] == [("+", PLUS.exons, True),
                                                                     ("-", MINUS.exons, True)]
    # SNAP's long format, one gene lacking its terminal exon (cut at the sequence end)
    long = (">s2\nEinit\t1\t3\t+\t5.0\t0\t0\t1\ts2-snap.1\nExon\t7\t9\t+\t1.0\t0\t0\t1\ts2-snap.1\n"
            "Esngl\t22\t27\t-\t3.0\t0\t0\t1\ts2-snap.2\n")
    genes = gf.parse_snap_zff(long)
    assert [(g.strand, g.exons, g.complete) for g in genes["s2"]] == [("+", PLUS.exons, False),
                                                                     ("-", MINUS.exons, True)]


def test_augustus_output_and_report(tmp_path):
    out = "\n".join([
        "# annotation:",
        "s1\tdatabase\tCDS\t1\t3\t.\t+\t0\tParent=a.1",
        "s1\tAUGUSTUS\tgene\t1\t12\t1\t+\t.\tID=g1",
        "s1\tAUGUSTUS\ttranscript\t1\t12\t1\t+\t.\tID=g1.t1;Parent=g1",
        "s1\tAUGUSTUS\tstart_codon\t1\t3\t.\t+\t0\tParent=g1.t1",
        "s1\tAUGUSTUS\tCDS\t1\t3\t1\t+\t0\tID=g1.t1.cds;Parent=g1.t1",
        "s1\tAUGUSTUS\tCDS\t7\t9\t1\t+\t0\tID=g1.t1.cds;Parent=g1.t1",
        "s1\tAUGUSTUS\tstop_codon\t10\t12\t.\t+\t0\tParent=g1.t1",
        "s1\tAUGUSTUS\tCDS\t22\t27\t1\t-\t0\tID=g2.t1.cds;Parent=g2.t1",
        "s1\tAUGUSTUS\tstop_codon\t19\t21\t.\t-\t0\tParent=g2.t1",
        "*******      Evaluation of gene prediction     *******",
        "nucleotide level |       0.5 |       0.25 |",
        "exon level |    4 |    2 |  1 | ------------------ | ------------------ |       0.5 |       0.25 |",
        "gene level |   2 |   1 |   0 |   2 |   1 |           0 |           0 |",
    ])
    gff = tmp_path / "a.gff3"
    gff.write_text(gf.augustus_predictions(out))
    genes, _ = read_genes_gff3(gff, coding_types=("CDS",))
    # g2 lacks its start codon: incomplete
    assert [(g.exons, g.complete) for g in genes["s1"]] == [(PLUS.exons, True), (MINUS.exons, False)]
    rep = gf.parse_augustus_evaluation(out)
    assert rep["nucleotide"] == {"sensitivity": 0.5, "specificity": 0.25}
    assert (rep["exon"]["num_pred"], rep["exon"]["num_true"], rep["exon"]["tp"]) == (4, 2, 1)
    assert (rep["gene"]["num_pred"], rep["gene"]["tp"], rep["gene"]["sensitivity"]) == (2, 0, 0.0)
    assert gf.parse_augustus_evaluation("no report") is None


@pytest.mark.skipif(shutil.which("gt") is None,
                    reason="genometools (gt) is not installed: apt-get install genometools")
def test_gff3_accepted_by_gt_validator(tmp_path):
    genes = gf.parse_snap_zff("".join(gf.zff_lines("s1", [PLUS, MINUS])))
    path = tmp_path / "p.gff3"
    write_genes_gff3(path, [("s1", len(SEQ), genes["s1"]), ("s2", 10, [])], source="snap_test")
    check = subprocess.run(["gt", "gff3validator", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_skips_without_tools(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gf.shutil, "which", lambda name: None)
    monkeypatch.setattr(gf, "AUGUSTUS_SCRIPTS", tmp_path)
    assert gf.main(["--output-dir", str(tmp_path / "out")]) == 0
    assert "skipped: augustus is not installed" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
