"""benchmarks/real_genes/score_models.py on a made-up imported data set, run results and gene-finder JSON."""

import importlib.util
import json
from pathlib import Path

import pytest

from semicrf.genomics.gene_structures import Gene, write_genes_gff3
from semicrf.genomics.importer import import_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "score_models.py"
spec = importlib.util.spec_from_file_location("score_models", SCRIPT)
sm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm)

BASES = "ACGTTGCAAGCTTACGGATC" * 5  # 100 bases


def _pair(tmp_path, stem, records):
    """FASTA:GFF3 argument of [(name, length, genes)]."""
    fa, gff = tmp_path / f"{stem}.fa", tmp_path / f"{stem}.gff3"
    fa.write_text("".join(f">{n}\n{BASES[:length]}\n" for n, length, _ in records))
    write_genes_gff3(gff, records)
    return f"{fa}:{gff}"


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "data"
    import_dataset(data, train=[_pair(tmp_path, "tr", [("tr1", 100, [Gene("+", ((3, 9), (50, 60)))])])],
                   val=[_pair(tmp_path, "va", [("va1", 100, [Gene("-", ((20, 30),))])])],
                   test=[_pair(tmp_path, "te", [("s1", 100, [Gene("+", ((10, 20), (30, 40)))]),
                                                ("s2", 80, [Gene("-", ((5, 25),))])])])
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    # s1 exactly right; s2's exon too short (5..20 instead of 5..25)
    write_genes_gff3(run / "predictions" / "semicrf.gff3",
                     [("s1", 100, [Gene("+", ((10, 20), (30, 40)))]), ("s2", 80, [Gene("-", ((5, 20),))])])
    (run / "metrics.json").write_text(json.dumps({
        "models": {"semicrf": {"boundary_f1": 0.25, "duration_kl_mean": 1.5, "training_time_s": 12.0,
                               "inference_time_s": 0.5, "steps_trained": 7, "stopped_by": "step_budget"}},
        "config": {"data_dir": str(data)}}))
    finders = tmp_path / "gene_finders.json"

    def level(sn, sp, num_true):
        return {"sensitivity": sn, "specificity": sp, "num_true": num_true}

    doc = {"systems": {"snap_fly": {"accuracy": {"nucleotide": level(1.0, 0.5, 40), "exon": level(1.0, 0.75, 3),
                                                 "gene": level(1.0, 1.0, 2)},
                                    "train_seconds": None, "predict_seconds": 3.0}}}
    finders.write_text(json.dumps(doc))
    return run, finders, doc


def test_rows_and_table(setup):
    run, finders, _ = setup
    rows = sm.collect(run, finders)
    assert [r["system"] for r in rows] == ["SNAP, shipped fly HMM", "semicrf"]
    a = rows[1]["accuracy"]
    # 40 true coding bases, 35 predicted, all right; exons 2 of 3 both ways; genes 1 of 2 both ways
    assert (a["nucleotide"]["sensitivity"], a["nucleotide"]["specificity"]) == (35 / 40, 1.0)
    assert a["exon"]["sensitivity"] == pytest.approx(2 / 3) and a["exon"]["specificity"] == pytest.approx(2 / 3)
    assert (a["gene"]["sensitivity"], a["gene"]["specificity"]) == (0.5, 0.5)
    table = sm.format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4
    assert "| SNAP, shipped fly HMM | 1.000 / 0.500 | 1.000 / 0.750 | 1.000 / 1.000 | - | - | - | - | 3.0 |" in lines
    assert lines[3] == ("| semicrf | 0.875 / 1.000 | 0.667 / 0.667 | 0.500 / 0.500 | 0.250 | 1.50 | 7 (step_budget) "
                        "| 12.0 | 0.5 |")


def test_refuses_other_loci_and_missing_files(setup, tmp_path):
    run, finders, doc = setup
    doc["systems"]["snap_fly"]["accuracy"]["exon"]["num_true"] = 4
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(sm.ScoreError, match="not the gene finders' test loci"):
        sm.collect(run, other)
    (run / "predictions" / "semicrf.gff3").unlink()
    with pytest.raises(sm.ScoreError, match="is missing"):
        sm.collect(run, finders)
    assert sm.main(["--results-dir", str(tmp_path / "nowhere"), "--gene-finders-json", str(finders)]) == 2
