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
    assert "| mine | 1 | 3 | 1 | 1 | 0 | 1 | 1 | 1 | 1 | 1 | 1 of 1 | 0 of 2 |" in table
    rows = json.loads(out.read_text())
    assert rows[1]["exons"]["exact"] == 6 and rows[1]["system"] == "truth"
    with pytest.raises(SystemExit, match="does not exist"):
        ee.main(["--data-dir", str(data), "--gff3", f"x={tmp_path / 'none.gff3'}"])
    with pytest.raises(SystemExit):
        ee.main(["--data-dir", str(data), "--gff3", "no-label"])
