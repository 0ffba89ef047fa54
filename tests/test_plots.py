"""Tests of the benchmark figures: files written atomically, valid PNGs, clear errors."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from semicrf.genomics import plots as P  # noqa: E402

NAMES = ["intergenic", "exon", "intron"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == PNG_MAGIC, "not a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def assert_png_with_content(path):
    import matplotlib.image as mpimg

    width, height = png_size(path)
    assert width > 300 and height > 200
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def only_file(folder, name):
    # the temporary file must be gone, renamed onto the target
    assert sorted(os.listdir(folder)) == [name]


def duration_inputs(rng, k=100):
    true = {
        "intergenic": rng.integers(200, 3000, size=60),  # beyond K: the K line is drawn
        "exon": rng.integers(20, 80, size=80),
        "intron": rng.integers(50, 500, size=70),
    }
    pred = {
        "softmax": {c: rng.integers(1, 10, size=300) for c in NAMES},
        "semicrf": {c: true[c] + rng.integers(-5, 5, size=true[c].size).clip(0) for c in NAMES},
        "semicrf_uniform": {"intergenic": rng.integers(1, k, 30), "exon": np.zeros(0, np.int64), "intron": rng.integers(1, k, 40)},
    }
    kl = {m: {c: float(rng.random()) for c in NAMES} for m in pred}
    kl["semicrf_uniform"]["exon"] = None  # as read back from metrics.json
    kl["softmax"]["intron"] = math.nan
    priors = {"semicrf": rng.normal(size=(k, 3)), "semicrf_uniform": np.zeros((k, 3))}
    return true, pred, kl, priors


# ----------------------------------------------------------------------------
# binning helpers


def test_row_edges_cover_every_duration():
    for max_value in (1, 2, 7, 50, 1000, 23_456):
        e = P._row_edges(max_value)
        assert e[0] == 1 and e[-1] == max_value + 1
        assert np.all(np.diff(e) >= 1)  # every bin holds at least one integer
        assert e.size <= P._NUM_BINS + 1


def test_log_density_hand():
    # edges 1 | 2 | 3 .. 10 : bins {1}, {2}, {3..10}; durations 1 2 2 10 -> fractions 1/4 1/2 1/4
    edges = np.array([1, 2, 3, 11])
    dens = P._log_density(np.array([1, 2, 2, 10]), edges)
    widths = np.diff(np.log10(edges - 0.5))  # drawn from 0.5 to 1.5, 1.5 to 2.5, 2.5 to 10.5
    assert dens * widths == pytest.approx([0.25, 0.5, 0.25])
    # weighted (a prior over d = 1..10): mass per bin is the sum of the weights
    pmf = np.arange(1, 11) / 55.0
    dens = P._log_density(np.arange(1, 11), edges, weights=pmf)
    assert dens * widths == pytest.approx([1 / 55, 2 / 55, 52 / 55])
    # no durations: all zero, no division by zero
    assert np.all(P._log_density(np.zeros(0, np.int64), edges) == 0)


def test_log_density_integrates_to_one_on_log_axis():
    rng = np.random.default_rng(0)
    d = rng.integers(1, 5000, size=1000)
    e = P._row_edges(int(d.max()))
    assert np.sum(P._log_density(d, e) * np.diff(np.log10(e - 0.5))) == pytest.approx(1.0)


def test_prior_pmf_is_softmax():
    scores = np.array([0.0, math.log(3.0), -np.inf])
    assert P._prior_pmf(scores) == pytest.approx([0.25, 0.75, 0.0])
    big = np.array([1000.0, 1000.0])  # no overflow
    assert P._prior_pmf(big) == pytest.approx([0.5, 0.5])


# ----------------------------------------------------------------------------
# duration comparison


def test_duration_comparison_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    true, pred, kl, priors = duration_inputs(rng)
    target = tmp_path / "duration_comparison.png"
    out = P.plot_duration_comparison(target, NAMES, true, pred, kl, priors, 100)
    assert out == str(target)
    assert_png_with_content(target)
    only_file(tmp_path, "duration_comparison.png")
    # a second call replaces the file (atomically) and still leaves nothing else behind
    P.plot_duration_comparison(str(target), NAMES, true, pred, kl, max_duration=100)
    assert_png_with_content(target)
    only_file(tmp_path, "duration_comparison.png")


def test_duration_comparison_accepts_torch_prior_and_empty_truth(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    true, pred, kl, _ = duration_inputs(rng)
    true["exon"] = np.zeros(0, np.int64)
    for m in pred:
        pred[m]["exon"] = np.zeros(0, np.int64)
    prior = torch.zeros(20, 3, requires_grad=True)
    out = P.plot_duration_comparison(tmp_path / "d.png", NAMES, true, pred, kl, {"semicrf": prior}, 20)
    assert_png_with_content(out)


def _bad_duration_cases():
    rng = np.random.default_rng(3)
    true, pred, kl, priors = duration_inputs(rng)
    wrong_true = {k: v for k, v in true.items() if k != "exon"} | {"exons": true["exon"]}
    wrong_pred = {m: dict(v) for m, v in pred.items()}
    wrong_pred["softmax"].pop("intron")
    kl_missing = {m: v for m, v in kl.items() if m != "semicrf"}
    kl_wrong_class = {m: dict(v) for m, v in kl.items()}
    kl_wrong_class["semicrf"]["utr"] = 0.1
    bad_durations = {k: v.copy() for k, v in true.items()}
    bad_durations["exon"][0] = 0
    return [
        (dict(true_durations=wrong_true), r"true_durations.*missing \['exon'\].*unexpected \['exons'\]"),
        (dict(pred_durations=wrong_pred), r"pred_durations\['softmax'\].*missing \['intron'\]"),
        (dict(pred_durations={}), "pred_durations must be a non-empty dict"),
        (dict(kl=kl_missing), r"kl must have.*missing \['semicrf'\]"),
        (dict(kl=kl_wrong_class), r"kl\['semicrf'\].*unexpected \['utr'\]"),
        (dict(class_names=["intergenic", "exon"]), "unexpected"),
        (dict(class_names=["a", "a", "b"]), "distinct"),
        (dict(class_names="intergenic"), "list of class names"),
        (dict(learned_priors={"oracle": np.zeros((5, 3))}), "not in pred_durations"),
        (dict(learned_priors={"semicrf": np.zeros((5, 2))}), r"shape \(K, 3\)"),
        (dict(learned_priors={"semicrf": np.full((5, 3), np.nan)}), "NaN"),
        (dict(learned_priors={"semicrf": np.full((5, 3), -np.inf)}), "all -inf"),
        (dict(max_duration=None), "max_duration is required"),
        (dict(max_duration=0), "max_duration must be a positive integer"),
        (dict(true_durations=bad_durations), "durations >= 1"),
    ], (true, pred, kl, priors)


def test_duration_comparison_rejects_bad_input(tmp_path):
    cases, (true, pred, kl, priors) = _bad_duration_cases()
    base = dict(class_names=NAMES, true_durations=true, pred_durations=pred, kl=kl, learned_priors=priors, max_duration=100)
    for change, message in cases:
        args = base | change
        with pytest.raises(ValueError, match=message):
            P.plot_duration_comparison(tmp_path / "x.png", **args)
    assert os.listdir(tmp_path) == []  # nothing written by a failed call


def test_plots_reject_bad_paths(tmp_path):
    rng = np.random.default_rng(4)
    true, pred, kl, _ = duration_inputs(rng)
    with pytest.raises(ValueError, match=r"\.png"):
        P.plot_duration_comparison(tmp_path / "x.pdf", NAMES, true, pred, kl, max_duration=100)
    with pytest.raises(ValueError, match="does not exist"):
        P.plot_duration_comparison(tmp_path / "missing" / "x.png", NAMES, true, pred, kl, max_duration=100)
    with pytest.raises(ValueError, match="does not exist"):
        P.plot_training_curves(tmp_path / "missing" / "t.png", {"a": [{"epoch": 1, "train_loss": 1.0}]})


# ----------------------------------------------------------------------------
# training curves


def history_for(models, epochs=8, seed=5):
    rng = np.random.default_rng(seed)
    hist = {}
    for i, m in enumerate(models):
        recs = []
        for e in range(1, epochs + 1):
            loss = 1000.0 * (i + 1) / e
            rec = {"epoch": e, "train_loss": loss, "val_loss": loss * 1.1,
                   "val_boundary_f1": float(rng.random()), "val_segment_f1": float(rng.random())}
            if m != "softmax":
                rec["train_loss_per_position"] = loss / 2000
            recs.append(rec)
        hist[m] = recs
    return hist


def test_training_curves_writes_png(tmp_path):
    hist = history_for(["softmax", "linear", "semicrf"])
    hist["linear"][5]["train_loss_per_position"] = math.nan  # a diverged epoch
    hist["semicrf"][2]["val_boundary_f1"] = None  # NaN written to JSON as null
    target = tmp_path / "training_curves.png"
    assert P.plot_training_curves(target, hist) == str(target)
    assert_png_with_content(target)
    only_file(tmp_path, "training_curves.png")


def test_training_curves_minimal_records(tmp_path):
    # one epoch, no validation keys, a negative loss (no log axis then)
    hist = {"semicrf": [{"epoch": 0, "train_loss": -3.0}], "linear": [{"epoch": 0, "train_loss": 2.0}]}
    assert_png_with_content(P.plot_training_curves(tmp_path / "t.png", hist))


@pytest.mark.parametrize(
    "history, message",
    [
        ({}, "non-empty dict"),
        (None, "non-empty dict"),
        ({"semicrf": []}, r"history\['semicrf'\] must be a non-empty list"),
        ({"semicrf": {"epoch": 1}}, r"history\['semicrf'\] must be a non-empty list"),
        ({"semicrf": ["epoch 1"]}, r"history\['semicrf'\]\[0\] must be a dict"),
        ({"semicrf": [{"epoch": 1}]}, "no 'train_loss'"),
        ({"semicrf": [{"train_loss": 1.0}]}, "no 'epoch'"),
        ({"semicrf": [{"epoch": 1, "train_loss": "low"}]}, "must be a number"),
        ({"semicrf": [{"epoch": None, "train_loss": 1.0}]}, "epoch"),
    ],
)
def test_training_curves_rejects_bad_history(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        P.plot_training_curves(tmp_path / "t.png", history)
    assert os.listdir(tmp_path) == []


def test_package_import_does_not_need_matplotlib():
    code = (
        "import sys; import semicrf.genomics.plots, semicrf.genomics.metrics; "
        "sys.exit(1 if 'matplotlib' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_figure_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(5)
    true, pred, kl, _ = duration_inputs(rng)
    target = tmp_path / "duration_comparison.png"
    P.plot_duration_comparison(target, NAMES, true, pred, kl, max_duration=100)
    before = target.read_bytes()

    def half_then_fail(self, fname, **kwargs):
        fname.write(PNG_MAGIC)  # some bytes are out before the failure
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        P.plot_duration_comparison(target, NAMES, true, pred, kl, max_duration=100)
    assert target.read_bytes() == before
    only_file(tmp_path, "duration_comparison.png")
