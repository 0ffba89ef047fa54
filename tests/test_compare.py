"""The compare command: reading results and the comparison table."""

import json

import pytest

from semicrf.genomics.cli import main
from semicrf.genomics.compare import ResultsError, format_table, load_results


def _doc(models, classes=("intergenic", "exon", "intron"), seq_length=20000):
    return {"format": "semicrf-benchmark-results", "format_version": 1, "class_names": list(classes),
            "models": models, "config": {"encoder": "bilstm", "max_duration": 1000, "epochs": 3},
            "data": {"seq_length": seq_length}}


def _model(f1, kl, f1_5=None, seg=None):
    return {"boundary_f1": f1, "boundary_f1_tolerance": {"5": f1_5} if f1_5 is not None else {},
            "segment_f1": seg, "duration_kl": kl}


def _write(path, doc):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(doc))
    return path


def test_table_of_one_run():
    doc = _doc({"softmax": _model(0.6543, {"intergenic": 2.0, "exon": 12.345, "intron": None}, 0.71, 0.1),
                "semicrf": _model(0.8, {"intergenic": 0.25, "exon": 0.3, "intron": 0.5})})
    lines = format_table([doc]).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["Model", "Boundary F1", "Boundary F1 @5", "Segment F1", "Duration KL (intergenic)",
                      "Duration KL (exon)", "Duration KL (intron)"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert rows[0] == ["softmax", "0.654", "0.710", "0.100", "2.00", "12.35", "-"]
    assert rows[1] == ["semicrf", "0.800", "-", "-", "0.25", "0.30", "0.50"]
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_table_across_runs_names_each_run_and_its_length(tmp_path):
    a = _write(tmp_path / "10k", _doc({"linear": _model(0.5, {"intergenic": 1.0, "exon": 1.0, "intron": 1.0})},
                                      seq_length=10000))
    b = _write(tmp_path / "50k", _doc({"linear": _model(0.4, {"intergenic": 1.0, "exon": 1.0, "intron": 1.0,
                                                              "5utr": 3.0, "3utr": 4.0})},
                                      classes=("intergenic", "exon", "intron", "5utr", "3utr"), seq_length=50000))
    table = format_table([load_results(a), load_results(b)])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert rows[0][:3] == ["Run", "T", "Model"] and rows[0][-1] == "Duration KL (3utr)"
    assert rows[2][:4] == ["10k", "10000", "linear", "0.500"] and rows[2][-1] == "-"
    assert rows[3][:4] == ["50k", "50000", "linear", "0.400"] and rows[3][-1] == "4.00"


def test_compare_command_prints_the_table(tmp_path, capsys):
    d = _write(tmp_path / "run", _doc({"semicrf": _model(0.75, {"intergenic": 0.1, "exon": 0.2, "intron": 0.3})}))
    assert main(["compare", "--results-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert "| semicrf" in out and "0.750" in out and "K=1000" in out


@pytest.mark.parametrize("setup, message", [
    (None, "does not exist"),
    ("", "is missing"),
    ("{oops", "unreadable"),
    (json.dumps({"models": {}}), "not a metrics file"),
    (json.dumps({"format": "semicrf-benchmark-results", "models": {}}), "no model results"),
])
def test_unusable_results_are_refused_clearly(tmp_path, capsys, setup, message):
    d = tmp_path / "r"
    if setup is not None:
        d.mkdir()
        if setup:
            (d / "metrics.json").write_text(setup)
    with pytest.raises(ResultsError, match=message):
        load_results(d)
    assert main(["compare", "--results-dir", str(d)]) == 2
    assert message in capsys.readouterr().err


def test_steps_trained_show_and_say_what_stopped_a_model():
    # Steps appear only when the results record them (older metrics.json files keep their table).
    budgeted = {**_model(0.5, {"intergenic": 1.0, "exon": 1.0, "intron": 1.0}), "steps_trained": 20,
                "stopped_by": "step_budget", "step_budget": 20}
    full = {**_model(0.7, {"intergenic": 1.0, "exon": 1.0, "intron": 1.0}), "steps_trained": 1200,
            "stopped_by": "epochs", "step_budget": None}
    patient = {**_model(0.6, {"intergenic": 1.0, "exon": 1.0, "intron": 1.0}), "steps_trained": 300,
               "stopped_by": "patience", "step_budget": None}
    lines = format_table([_doc({"pytorch-crf": budgeted, "semicrf": full, "linear": patient,
                                "oracle": _model(0.9, {})})]).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["Model", "Steps", "Boundary F1"]
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    assert rows["pytorch-crf"][1:3] == ["20 (budget)", "0.500"]
    assert rows["semicrf"][1] == "1200" and rows["linear"][1] == "300 (patience)"
    assert rows["oracle"][1] == "-"
