"""``semicrf-bench import``: GenBank and FASTA:GFF3 parsing, refusals, round trip, and a run on imported data."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from semicrf.genomics import formats
from semicrf.genomics.cli import main
from semicrf.genomics.dataset import load_metadata, load_split
from semicrf.genomics.gene_structures import STRANDED_CLASSES, Gene, labels_to_genes
from semicrf.genomics.importer import AnnotationError, import_dataset, parse_location, read_genbank

# 0 intergenic, 1 exon+, 2 intron+, 3 exon-, 4 intron-
I, EP, IP, EM, IM = range(5)


def seq_of(n, offset=0):
    return "".join("acgt"[(i * 7 + i // 5 + offset) % 4] for i in range(n))


def genbank(records):
    """GenBank text of [(name, sequence, [(location, gene name), ...])], ORIGIN in GenBank's layout."""
    out = []
    for name, seq, cds in records:
        out.append(f"LOCUS       {name}   {len(seq)} bp  DNA\n")
        out.append("FEATURES             Location/Qualifiers\n")
        out.append(f"     source          1..{len(seq)}\n")
        for loc, gene in cds:
            # long locations wrap onto continuation lines like real files
            first, rest = loc[:40], loc[40:]
            out.append(f"     CDS             {first}\n")
            while rest:
                out.append(f"                     {rest[:40]}\n")
                rest = rest[40:]
            out.append(f'                     /gene="{gene}"\n')
        out.append("ORIGIN\n")
        for i in range(0, len(seq), 60):
            chunk = seq[i:i + 60]
            groups = " ".join(chunk[j:j + 10] for j in range(0, len(chunk), 10))
            out.append(f"{i + 1:>9} {groups}\n")
        out.append("//\n")
    return "".join(out)


def expected(n, plus=(), minus=()):
    """Hand-made labels: plus/minus are lists of genes, each a list of 1-based closed exons."""
    lab = np.zeros(n, dtype=np.int64)
    for exons, (exon, intron) in [(g, (EP, IP)) for g in plus] + [(g, (EM, IM)) for g in minus]:
        lab[exons[0][0] - 1:exons[-1][1]] = intron
        for a, b in exons:
            lab[a - 1:b] = exon
    return lab


TRAIN = [
    ("locA", seq_of(120), [("join(11..20,31..45)", "a1"), ("complement(join(61..70,81..99))", "a2")]),
    ("locB", seq_of(90, 1), [("complement(5..40)", "b1"), ("join(50..60,66..70,75..80)", "b2")]),
    ("locC", seq_of(70, 2), [("join(complement(40..50),complement(10..20))", "c1")]),
]
TEST = [("locT", seq_of(100, 3), [("complement(join(21..30,41..60))", "t1")])]


@pytest.fixture()
def files(tmp_path):
    train = tmp_path / "train.gb"
    train.write_text(genbank(TRAIN))
    test = tmp_path / "test.gb.gz"  # gzipped, any name
    with gzip.open(test, "wt") as f:
        f.write(genbank(TEST))
    return train, test


def test_parse_location_forms():
    assert parse_location("join(11..20,31..45)", "x") == ("+", [(10, 20), (30, 45)])
    assert parse_location("complement(join(61..70,81..99))", "x") == ("-", [(60, 70), (80, 99)])
    assert parse_location("join(complement(40..50),complement(10..20))", "x") == ("-", [(39, 50), (9, 20)])
    assert parse_location("7", "x") == ("+", [(6, 7)])
    for bad, word in (("<1..20", "partial"), ("join(1..5,8..>20)", "partial"), ("order(1..5,8..9)", "order"),
                      ("join(1..5,complement(8..9))", "mixes strands"), ("join(1..5", r"expected '\)'"),
                      ("AB123:1..5", "remote"), ("join(1..5,x)", "cannot read")):
        with pytest.raises(AnnotationError, match=word):
            parse_location(bad, "f.gb:3")


def test_genbank_genes_both_strands(files):
    train, test = files
    recs = read_genbank(train)
    assert [r.name for r in recs] == ["locA", "locB", "locC"]
    assert len(recs[0].codes) == 120 and recs[0].codes[:4].tolist() == [0, 3, 2, 1]  # a t g c (seq_of)
    a1, a2 = recs[0].genes
    assert (a1.strand, a1.exons, a1.name) == ("+", ((10, 20), (30, 45)), "a1")
    assert (a2.strand, a2.exons) == ("-", ((60, 70), (80, 99)))
    assert recs[2].genes[0].exons == ((9, 20), (39, 50)) and recs[2].genes[0].strand == "-"
    assert read_genbank(test)[0].genes[0].exons == ((20, 30), (40, 60))


def test_round_trip_labels_equal_hand_made(files, tmp_path):
    train, test = files
    out = tmp_path / "data"
    meta = import_dataset(out, [str(train)], [str(test)], val_fraction=0.34, seed=3)
    assert meta["class_names"] == list(STRANDED_CLASSES) and meta["num_classes"] == 5
    assert meta["config"]["source"] == "imported" and meta["config"]["generator"] is None
    assert meta["splits"] == {"train": 2, "val": 1, "test": 1}
    truth = {
        "locA": expected(120, plus=[[(11, 20), (31, 45)]], minus=[[(61, 70), (81, 99)]]),
        "locB": expected(90, plus=[[(50, 60), (66, 70), (75, 80)]], minus=[[(5, 40)]]),
        "locC": expected(70, minus=[[(10, 20), (40, 50)]]),
        "locT": expected(100, minus=[[(21, 30), (41, 60)]]),
    }
    seen = []
    for split in ("train", "val", "test"):
        data = load_split(out, split)
        for name, codes, lab in zip(data.names, data.sequences, data.labels):
            np.testing.assert_array_equal(lab, truth[name])
            seen.append(name)
    assert sorted(seen) == sorted(truth)
    assert load_split(out, "test").names == ["locT"]
    # the exports agree with the arrays
    test_split = load_split(out, "test")
    back = formats.read_gff3(out / "test.gff3", STRANDED_CLASSES)
    np.testing.assert_array_equal(back["locT"], truth["locT"])
    assert formats.read_fasta(out / "test.fa")["locT"].tolist() == test_split.sequences[0].tolist()
    bed = (out / "test.bed").read_text().split("\t")
    assert bed[1:3] == ["20", "60"] and bed[5] == "-" and bed[10:12] == ["10,20,", "0,20,\n"]
    # the same inputs and seed give the same files
    out2 = tmp_path / "data2"
    import_dataset(out2, [str(train)], [str(test)], val_fraction=0.34, seed=3)
    for name in ("train.npz", "val.npz", "test.gff3", "metadata.json"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes()


def test_fasta_gff3_pair(tmp_path):
    fa = tmp_path / "g.fa"
    fa.write_text(">chr1 some description\n" + seq_of(60).upper() + "\n" + seq_of(40, 1) + "\n")
    gff = tmp_path / "g.gff3"
    gff.write_text(
        "##gff-version 3\n##sequence-region chr1 1 100\n"
        "chr1\tx\tgene\t10\t40\t.\t+\t.\tID=g1\n"
        "chr1\tx\tmRNA\t10\t40\t.\t+\t.\tID=t1;Parent=g1\n"
        "chr1\tx\tCDS\t10\t20\t.\t+\t0\tID=c1;Parent=t1\n"
        "chr1\tx\tCDS\t31\t37\t.\t+\t1\tID=c1;Parent=t1\n"
        "chr1\tx\tstop_codon\t38\t40\t.\t+\t0\tParent=t1\n"  # joined to the CDS: coding part 31..40
        "chr1\tx\tfive_prime_UTR\t1\t9\t.\t+\t.\tParent=t1\n"  # ignored (intergenic)
        "chr1\tx\tCDS\t81\t90\t.\t-\t0\tID=c2;Parent=t2\n"
        "chr1\tx\tCDS\t61\t70\t.\t-\t0\tID=c2;Parent=t2\n"
    )
    out = tmp_path / "d"
    rc = main(["import", "--train", f"{fa}:{gff}", "--val", f"{fa}:{gff}", "--test", f"{fa}:{gff}",
               "--output-dir", str(out)])
    assert rc == 2  # the same sequence in every split is refused (leak)
    other = tmp_path / "t.gb"
    other.write_text(genbank(TEST))
    val = tmp_path / "v.gb"
    val.write_text(genbank(TRAIN[:1]))
    assert main(["import", "--train", f"{fa}:{gff}", "--val", str(val), "--test", str(other),
                 "--output-dir", str(out)]) == 0
    lab = load_split(out, "train").labels[0]
    np.testing.assert_array_equal(lab, expected(100, plus=[[(10, 20), (31, 40)]], minus=[[(61, 70), (81, 90)]]))
    assert load_metadata(out)["config"]["inputs"]["train"][0]["kind"] == "fasta+gff3"


@pytest.mark.parametrize("records, message", [
    ([("o", seq_of(60), [("1..30", "g1"), ("complement(20..40)", "g2")])], "overlap"),
    ([("o", seq_of(60), [("join(1..30,50..70)", "g1")])], "the sequence has 60 bases"),
    ([("o", seq_of(60), [])], "has no gene"),
    ([("o", seq_of(59) + "x", [("1..9", "g1")])], "base 60 is 'x'"),
    ([("o", seq_of(60), [("<1..9", "g1")])], "partial"),
    ([("bad/name", seq_of(60), [("1..9", "g1")])], "GFF3 seqid"),
])
def test_refusals_name_the_problem_and_write_nothing(tmp_path, records, message):
    bad = tmp_path / "bad.gb"
    bad.write_text(genbank(records))
    good = tmp_path / "good.gb"
    good.write_text(genbank(TEST))
    out = tmp_path / "d"
    with pytest.raises(AnnotationError, match=message) as e:
        import_dataset(out, [str(bad)], [str(good)])
    assert "bad.gb" in str(e.value)
    assert not out.exists()


def test_iupac_codes_become_n(tmp_path):
    gb = tmp_path / "n.gb"
    gb.write_text(genbank([("n1", "RYKMnnacgt" + seq_of(50), [("11..40", "g")])]))
    rec = read_genbank(gb)[0]
    assert rec.codes[:10].tolist() == [4, 4, 4, 4, 4, 4, 0, 1, 2, 3]


def test_other_refusals(files, tmp_path):
    train, test = files
    trunc = tmp_path / "t.gb"
    trunc.write_text(genbank(TEST).replace("//\n", ""))
    with pytest.raises(AnnotationError, match="closing '//'"):
        read_genbank(trunc)
    short = tmp_path / "s.gb"
    short.write_text(genbank(TEST).replace("100 bp", "101 bp"))
    with pytest.raises(AnnotationError, match="LOCUS says 101 bp but ORIGIN holds 100"):
        read_genbank(short)
    fa = tmp_path / "x.fa"
    fa.write_text(">x\nACGT\n")
    with pytest.raises(AnnotationError, match="FASTA:GFF3"):
        import_dataset(tmp_path / "d", [str(fa)], [str(test)])
    with pytest.raises(AnnotationError, match="no such file"):
        import_dataset(tmp_path / "d", [str(tmp_path / "missing.gb")], [str(test)])
    with pytest.raises(AnnotationError, match="leaves no training"):
        import_dataset(tmp_path / "d", [str(test)], [str(train)])  # one training sequence, 10 % -> 1 for val
    out = tmp_path / "full"
    import_dataset(out, [str(train)], [str(test)])
    with pytest.raises(ValueError, match="--overwrite"):
        import_dataset(out, [str(train)], [str(test)])
    import_dataset(out, [str(train)], [str(test)], overwrite=True)


def test_labels_to_genes_inverts_import(files, tmp_path):
    train, _ = files
    rec = read_genbank(train)[0]
    lab = expected(120, plus=[[(11, 20), (31, 45)]], minus=[[(61, 70), (81, 99)]])
    assert labels_to_genes(lab) == [Gene("+", ((10, 20), (30, 45))), Gene("-", ((60, 70), (80, 99)))]
    assert [g.exons for g in labels_to_genes(lab)] == [g.exons for g in rec.genes]


@pytest.mark.usefixtures("one_torch_thread")
def test_run_on_imported_data(files, tmp_path, capsys):
    train, test = files
    data = tmp_path / "data"
    assert main(["import", "--train", str(train), "--test", str(test), "--output-dir", str(data),
                 "--val-fraction", "0.34"]) == 0
    res = tmp_path / "res"
    common = ["run", "--data-dir", str(data), "--encoder", "bilstm", "--hidden-dim", "8", "--epochs", "1",
              "--max-duration", "50", "--device", "cpu", "--no-progress"]
    assert main(common + ["--models", "softmax,semicrf", "--output-dir", str(res)]) == 0
    doc = json.loads((res / "metrics.json").read_text())
    assert set(doc["models"]) == {"softmax", "semicrf"} and doc["class_names"] == list(STRANDED_CLASSES)
    preds = list((res / "predictions").glob("*.gff3"))
    assert preds and all(p.read_text().startswith("##gff-version 3") for p in preds)
    capsys.readouterr()
    # Refused before any model trains, even when a model that could train comes first.
    assert main(common + ["--models", "softmax,oracle", "--output-dir", str(tmp_path / "res2")]) == 2
    err = capsys.readouterr().err
    assert "model oracle" in err and "imported" in err and "leave oracle" in err
    assert not (tmp_path / "res2").exists()
