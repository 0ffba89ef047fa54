"""benchmarks/synthetic_genomics/headline.py on made-up metrics of two seeds, against hand-computed values."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_genomics" / "headline.py"
spec = importlib.util.spec_from_file_location("headline", SCRIPT)
hl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hl)


def _m(b, s=0.2, kl=1.0, steps=10, stopped="epochs"):
    return {"boundary_f1": b, "segment_f1": s, "boundary_f1_tolerance": {"1": b, "5": b + 0.1, "10": b + 0.2},
            "position_f1": {"a": 0.9, "b": 0.8}, "duration_kl": {"a": kl, "b": 2 * kl},
            "duration_w1_log": {"a": 0.1, "b": 0.2}, "steps_trained": steps, "stopped_by": stopped}


def _write(tmp_path, name, models):
    d = tmp_path / name
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"models": models, "class_names": ["a", "b"]}))
    return str(d)


@pytest.fixture
def runs(tmp_path):
    one = _write(tmp_path, "s1", {"oracle": _m(0.8, 0.4), "x": _m(0.50), "y": _m(0.60, steps=7, stopped="patience"),
                                  "z": _m(0.52)})
    two = _write(tmp_path, "s2", {"x": _m(0.54), "y": _m(0.62), "z": _m(0.53)})
    return hl.per_model(hl.load_runs([one, two]))


def test_summary_over_seeds_and_fraction_of_the_oracle(runs):
    assert list(runs) == ["oracle", "x", "y", "z"]
    s = hl.stat(runs["x"], "boundary_f1")
    assert (s["n"], s["min"], s["max"]) == (2, 0.50, 0.54) and s["mean"] == pytest.approx(0.52)
    table = hl.headline_table(runs, ["a", "b"]).splitlines()
    # x: mean 0.52 of the oracle's 0.80 = 0.65; @5 bp 0.60 and 0.64.
    assert table[3].startswith("| x | 2 | 10/10 | 0.520 (0.500-0.540) | 0.65 | 0.520 (0.500-0.540) | 0.620 (0.600-0.640) |")
    assert "| y | 2 | 7/10 (patience) | 0.610 (0.600-0.620) | 0.76 |" in table[4]
    assert table[2].startswith("| oracle | 1 | 10 | 0.800 | 1.00 |")


def test_pairs_are_ties_within_the_seed_spread(runs):
    rows = {tuple(r.split(" | ")[:2]): r for r in hl.pairs_table(runs).splitlines()[2:]}
    # Ranges: x 0.04, y 0.02, z 0.01. y - x = 0.09 > 0.04: x worse; x - z = -0.005 within 0.04: tie;
    # y - z = 0.085 > 0.02: better.
    assert rows[("| x", "y")].endswith("| -0.090 | 0.040 | worse |")
    assert rows[("| x", "z")].endswith("| -0.005 | 0.040 | tie |")
    assert rows[("| y", "z")].endswith("| +0.085 | 0.020 | better |")
    assert ("| oracle", "x") not in rows


def test_one_seed_each_is_not_judged():
    one = {"n": 1, "mean": 0.5, "min": 0.5, "max": 0.5}
    assert hl.compare_pair(one, dict(one, mean=0.9)) == "one seed each: no spread to judge by"
    assert hl.compare_pair(None, one) == "no result"


def test_duration_table_and_missing_values(runs):
    lines = hl.duration_table(runs, ["a", "b"]).splitlines()
    assert lines[3] == "| x | 1.00 | 2.00 | 0.100 | 0.200 |"
    assert hl.stat([{"boundary_f1": None}, {}], "boundary_f1") is None


def test_a_directory_without_metrics_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no metrics.json"):
        hl.load_runs([str(tmp_path)])


def test_curves_figure_is_written(tmp_path):
    hist = {"x_s1": {"history": [{"steps": 5, "val_boundary_f1": 0.1}, {"steps": 10, "val_boundary_f1": 0.3}]},
            "x_s2": {"history": [{"steps": 5, "val_boundary_f1": 0.2}]}, "o_s1": {"history": []}}
    out = tmp_path / "c.png"
    hl.plot_curves(hist, out, oracle=0.7)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confusion_rates_and_table_by_hand():
    names = ["a", "b"]
    one = {"a": {"a": 3, "b": 1}, "b": {"a": 0, "b": 4}}   # a -> b 1/4, b -> a 0
    two = {"a": {"a": 1, "b": 1}, "b": {"a": 2, "b": 2}}   # a -> b 1/2, b -> a 1/2
    assert hl.confusion_rates(one, names) == {("a", "b"): 0.25, ("b", "a"): 0.0}
    lines = hl.confusion_table({"x": [one, two]}, names).splitlines()
    assert lines[0] == "| model | runs | a -> b | b -> a |"
    assert lines[2] == "| x | 2 | 0.3750 | 0.2500 |"


def test_confusion_from_predictions_counts_every_position(tmp_path):
    """Predictions written as GFF3 from labels with known changes, read back and counted."""
    import numpy as np

    from semicrf.genomics import dataset, formats
    from semicrf.genomics.synthetic import GeneratorConfig

    data = tmp_path / "data"
    dataset.generate_dataset(data, GeneratorConfig(seq_length=3000, content="realistic"), num_train=1, num_val=1,
                             num_test=3, seed=3)
    test = dataset.load_split(data, "test")
    names = dataset.sequence_names("test", len(test.labels))
    classes = list(dataset.load_metadata(data)["class_names"])
    pred = [y.copy() for y in test.labels]
    pred[0][:] = 0  # every position of sequence 0 called intergenic
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    formats.write_gff3(run / "predictions" / "m.gff3", names, pred, classes)
    confusions, got_classes = hl.rescore_confusions(str(data), [str(run)])
    assert got_classes == classes and list(confusions) == ["m"]
    conf = confusions["m"][0]
    truth = np.concatenate(test.labels)
    for c, name in enumerate(classes):
        wrong = int((test.labels[0] == c).sum()) if c != 0 else 0
        assert conf[name][name] == int((truth == c).sum()) - wrong
        assert conf[name]["intergenic"] == (wrong if c != 0 else int((truth == 0).sum()))


def test_a_tagged_run_gives_its_own_rows(tmp_path):
    one = _write(tmp_path, "s1", {"oracle": _m(0.8), "x": _m(0.50)})
    longer = _write(tmp_path, "x48_s1", {"x": _m(0.58), "oracle": _m(0.8)})
    runs = hl.per_model(hl.load_runs([one, f"{longer}@48ep"]))
    assert list(runs) == ["oracle", "x", "x@48ep"]
    assert [m["boundary_f1"] for m in runs["x@48ep"]] == [0.58] and len(runs["oracle"]) == 2
    with pytest.raises(ValueError, match="give the tag"):
        hl.load_runs([f"{longer}@"])
    with pytest.raises(ValueError, match="no metrics.json"):
        hl.load_runs([f"{tmp_path / 'missing'}@48ep"])
