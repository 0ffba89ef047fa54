"""benchmarks/real_genes/exon_errors.py: exon outcomes by end kind and the predicted introns' splice
dinucleotides, against hand-counted cases, and the command on a small imported data set."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from semicrf.genomics.gene_structures import Gene, write_genes_gff3
from semicrf.genomics.importer import import_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "exon_errors.py"
spec = importlib.util.spec_from_file_location("exon_errors", SCRIPT)
ee = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ee)

TRUE = [Gene("+", ((10, 20), (30, 40), (50, 60))),  # + gene: start | donor, acceptor | donor, acceptor | stop
        Gene("-", ((100, 110), (120, 130))),  # - gene, read right to left: stop | acceptor, donor | start
        Gene("+", ((200, 260),))]  # predicted nowhere
PRED = [Gene("+", ((10, 20), (30, 45), (52, 60))),  # exact; donor side wrong; acceptor side wrong
        Gene("-", ((98, 110), (125, 135))),  # stop side wrong; no end in common: overlap
        Gene("+", ((120, 130),))]  # the - exon's ends on the other strand: no match


def _sequence():
    codes = np.zeros(300, np.uint8)  # all A
    for at, pair in ((20, "GT"), (28, "AG"), (110, "CT"), (123, "AC")):
        codes[at:at + 2] = ["ACGT".index(b) for b in pair]
    return codes


def test_end_kinds_follow_the_strand():
    assert [ee.end_kinds(TRUE[0], i) for i in range(3)] == [("start", "donor"), ("acceptor", "donor"),
                                                            ("acceptor", "stop")]
    assert [ee.end_kinds(TRUE[1], i) for i in range(2)] == [("stop", "acceptor"), ("donor", "start")]
    assert ee.end_kinds(TRUE[2], 0) == ("start", "stop")


def test_exon_outcomes_are_the_hand_counted_ones():
    got = ee.exon_outcomes({"s": TRUE}, {"s": PRED})
    assert {k: got[k] for k in ee.OUTCOMES} == {"exact": 1, "one end": 3, "overlap": 1, "missed": 1}
    assert got["one end by kind"] == {"start": 0, "stop": 1, "donor": 1, "acceptor": 1}
    assert "one end beside a long intron" not in got
    # The wrong donor (exon 30..40, predicted to 45) and acceptor (exon 50..60, from 52) are each beside a
    # true intron of 10 bases: long at K = 9, not at K = 10; the wrong stop side is no splice end.
    for K, n in ((9, 1), (10, 0)):
        assert ee.exon_outcomes({"s": TRUE}, {"s": PRED}, K)["one end beside a long intron"] == {"donor": n,
                                                                                                  "acceptor": n}
    # Every true exon is counted once, whatever the predictions.
    assert sum(got[k] for k in ee.OUTCOMES) == 6
    assert ee.exon_outcomes({"s": TRUE}, {})["missed"] == 6


def test_false_exons_overlap_no_true_exon_of_their_strand():
    # PRED's + exon 120..130 sits on the - gene's exon: no true + exon there. Every other predicted exon
    # overlaps a true one of its strand.
    assert ee.false_exons({"s": TRUE}, {"s": PRED}) == 1
    assert ee.false_exons({"s": TRUE}, {"s": TRUE}) == 0
    # A predicted exon touching a true one end to end (half-open ends: 60 == 60) overlaps nothing; an
    # exon predicted twice (two transcripts) counts once; a sequence without truth makes all false.
    twice = [Gene("+", ((60, 70),)), Gene("+", ((60, 70), (80, 90)))]
    assert ee.false_exons({"s": TRUE}, {"s": twice}) == 2
    assert ee.false_exons({}, {"s": PRED}) == 6


def test_introns_are_checked_on_their_strand_and_split_by_length():
    got = ee.intron_splice_counts({"s": PRED}, {"s": _sequence()}, max_duration=8)
    # + introns 20..30 (GT .. AG, 10 bases) and 45..52 (AA .. AA, 7); - intron 110..125 (CT .. AC, 15).
    assert got == {"short": {"canonical": 0, "non-canonical": 1}, "long": {"canonical": 2, "non-canonical": 0}}
    # The same bases read for a gene of the other strand are not canonical.
    flipped = [Gene("-", PRED[0].exons)]
    assert ee.intron_splice_counts({"s": flipped}, {"s": _sequence()}, 8)["long"] == {"canonical": 0,
                                                                                       "non-canonical": 1}


def test_the_command_reports_each_system(tmp_path, capsys):
    seq = _sequence()
    fa, gff = tmp_path / "te.fa", tmp_path / "te.gff3"
    fa.write_text(">locus1\n" + "".join("ACGT"[b] for b in seq) + "\n")
    write_genes_gff3(gff, [("locus1", len(seq), TRUE)])
    others = []
    for name in ("tr1", "va1"):
        o_fa, o_gff = tmp_path / f"{name}.fa", tmp_path / f"{name}.gff3"
        o_fa.write_text(f">{name}\n" + "A" * 60 + "\n")
        write_genes_gff3(o_gff, [(name, 60, [Gene("+", ((5, 20),))])])
        others.append(f"{o_fa}:{o_gff}")
    data = tmp_path / "data"
    import_dataset(data, train=[others[0]], val=[others[1]], test=[f"{fa}:{gff}"])
    pred = tmp_path / "pred.gff3"
    write_genes_gff3(pred, [("locus1", len(seq), PRED)])
    out = tmp_path / "rows.json"
    assert ee.main(["--data-dir", str(data), "--gff3", f"mine={pred}", "--gff3", f"truth={gff}",
                    "--max-duration", "8", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| mine | 1 | 3 | 1 | 1 | 1 | 0 | 1 | 1 | 1 | 1 | 1 | 1 of 1 | 0 of 2 |" in table
    rows = json.loads(out.read_text())
    assert rows[1]["exons"]["exact"] == 6 and rows[1]["system"] == "truth"
    with pytest.raises(SystemExit, match="does not exist"):
        ee.main(["--data-dir", str(data), "--gff3", f"x={tmp_path / 'none.gff3'}"])
    with pytest.raises(SystemExit):
        ee.main(["--data-dir", str(data), "--gff3", "no-label"])


def test_the_command_reads_the_synthetic_benchmark(tmp_path, capsys):
    """A generated data set and predictions the runner's GFF3 writer makes from labels: the truth itself, and
    the truth with one exon turned to intron (missed) and an intron stretch turned to exon (false)."""
    from semicrf.genomics.cli import main as cli
    from semicrf.genomics.dataset import load_split
    from semicrf.genomics.formats import write_gff3

    data = tmp_path / "syn"
    assert cli(["generate", "--output-dir", str(data), "--num-train", "2", "--num-val", "2", "--num-test", "3",
                "--seq-length", "20000", "--content", "realistic", "--seed", "3"]) == 0
    capsys.readouterr()
    test = load_split(data, "test")
    names = ["intergenic", "exon", "intron"]
    edited = [l.copy() for l in test.labels]
    lab = edited[0]
    runs = ee.genes_by_sequence(test.names, test.labels)[test.names[0]]
    inner = [g for g in runs if len(g.exons) >= 3][0]  # a gene whose middle exon can go
    s, e = inner.exons[1]
    lab[s:e] = 2  # that exon missed: its gene's two introns become one
    # Ten bases of exon inside the first intron, away from its ends and from the missed exon.
    left = inner.exons[0][1]
    lab[left + 40:left + 50] = 1
    for name, labels in (("truth", test.labels), ("edited", edited)):
        write_gff3(tmp_path / f"{name}.gff3", test.names, labels, names)
    out = tmp_path / "rows.json"
    assert ee.main(["--data-dir", str(data), "--gff3", f"truth={tmp_path / 'truth.gff3'}",
                    "--gff3", f"edited={tmp_path / 'edited.gff3'}", "--max-duration", "1000",
                    "--json", str(out)]) == 0
    rows = {r["system"]: r["exons"] for r in json.loads(out.read_text())}
    total = sum(len({x for g in genes for x in g.exons}) for genes in
                ee.genes_by_sequence(test.names, test.labels).values())
    assert rows["truth"]["exact"] == total and rows["truth"]["false"] == 0
    assert rows["edited"]["missed"] == 1 and rows["edited"]["false"] == 1
    assert rows["edited"]["exact"] == total - 1
    # A data set of other classes is refused by name.
    meta = json.loads((data / "metadata.json").read_text())
    meta["class_names"] = ["a", "b", "c"]
    (data / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="synthetic benchmark"):
        ee.main(["--data-dir", str(data), "--gff3", f"truth={tmp_path / 'truth.gff3'}"])
