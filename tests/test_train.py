"""The run command end to end on a tiny data set: outputs, resume, overwrite, refusals."""

import json
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch

from semicrf.genomics import formats, metrics
from semicrf.genomics.cli import main
from semicrf.genomics.dataset import generate_dataset, load_split
from semicrf.genomics.models import DEFAULT_MODELS, MODEL_NAMES, ModelConfig, build_model
from semicrf.genomics.synthetic import GeneratorConfig

TINY = ["--encoder", "bilstm", "--hidden-dim", "8", "--num-layers", "1", "--batch-size", "3", "--max-duration", "60",
        "--device", "cpu", "--lr", "0.01", "--log-every", "1", "--no-progress"]
# Everything metrics.json reports that depends on the clock or the process, not on the math.
TIMING = {"training_time_s", "time_per_epoch_s", "inference_time_s", "inference_throughput", "peak_memory_mb"}


# Small tensors: one thread is faster and immune to other processes on the machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny"
    generate_dataset(path, GeneratorConfig(seq_length=2000), num_train=6, num_val=2, num_test=2, seed=3)
    return path


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory, capsys_module):
    out = tmp_path_factory.mktemp("results") / "all"
    status = main(["run", "--data-dir", str(data_dir), "--output-dir", str(out), "--epochs", "2", *TINY])
    return status, out, capsys_module.readouterr()


@pytest.fixture(scope="module")
def capsys_module():
    # A module-scoped stand-in for capsys: collects what the fixtures print.
    import contextlib
    import io

    class Capture:
        def __init__(self):
            self.out, self.err = io.StringIO(), io.StringIO()

        def readouterr(self):
            out, err = self.out.getvalue(), self.err.getvalue()
            self.out.seek(0), self.out.truncate(), self.err.seek(0), self.err.truncate()
            return out, err

    cap = Capture()
    with contextlib.redirect_stdout(cap.out), contextlib.redirect_stderr(cap.err):
        yield cap


def _run(data_dir, out, *extra):
    return main(["run", "--data-dir", str(data_dir), "--output-dir", str(out), *TINY, *extra])


@pytest.mark.slow
def test_run_writes_the_whole_tree(full_run):
    status, out, (stdout, _) = full_run
    assert status == 0
    for name in ("metrics.json", "duration_comparison.png", "training_curves.png"):
        assert (out / name).is_file()
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for m in MODEL_NAMES:
        assert (out / "checkpoints" / f"{m}_best.pt").is_file()
        assert (out / "checkpoints" / f"{m}_last.pt").is_file()
        assert (out / "predictions" / f"{m}.gff3").is_file()
        assert (out / "predictions" / f"{m}.bed").is_file()
    assert not [p for p in out.rglob("*.tmp")]  # no temporary files left behind
    assert "Boundary F1" in stdout  # the comparison table is printed at the end


@pytest.mark.slow
def test_metrics_json_has_every_model_and_key(full_run, data_dir):
    _, out, _ = full_run
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["models"]) == list(DEFAULT_MODELS)
    classes = ["intergenic", "exon", "intron"]
    assert doc["class_names"] == classes
    for m, r in doc["models"].items():
        for key in ("boundary_f1", "boundary_precision", "boundary_recall", "segment_f1", "position_f1_macro",
                    "duration_kl_mean", "training_time_s", "inference_throughput", "peak_memory_mb",
                    "epochs_trained", "best_epoch", "num_parameters"):
            assert key in r, (m, key)
        assert set(r["boundary_f1_tolerance"]) == {"1", "2", "5", "10"}
        assert set(r["position_f1"]) == set(classes) and set(r["duration_kl"]) == set(classes)
        assert 0 <= r["boundary_f1"] <= 1
        if m == "oracle":  # nothing to train
            assert r["epochs_trained"] == 0 and r["num_parameters"] == 0
        else:
            assert r["epochs_trained"] == 2 and r["best_epoch"] in (1, 2) and r["num_parameters"] > 0
    assert doc["config"]["encoder"] == "bilstm" and doc["config"]["max_duration"] == 60
    assert doc["versions"]["torch"] == torch.__version__
    assert set(doc["true_duration_stats"]) == set(classes)
    assert doc["data"]["sequences"] == {"train": 6, "val": 2, "test": 2}


@pytest.mark.slow
def test_exported_predictions_are_the_best_checkpoint_predictions(full_run, data_dir):
    # Independent of the runner: reload the best weights, predict the test split,
    # and compare with the GFF3 file and with the metrics recorded.
    _, out, _ = full_run
    test = load_split(data_dir, "test")
    doc = json.loads((out / "metrics.json").read_text())
    for name in ("softmax", "semicrf"):
        ckpt = torch.load(out / "checkpoints" / f"{name}_best.pt", weights_only=True)
        model = build_model(name, ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        from semicrf.genomics.features import encode

        preds = []
        with torch.no_grad():
            for seq in test.sequences:
                x = torch.from_numpy(encode(seq, "onehot"))[None]
                preds.append(model.predict(x, torch.tensor([len(seq)]))[0])
        exported = formats.read_gff3(out / "predictions" / f"{name}.gff3", doc["class_names"])
        for seq_name, p in zip(test.names, preds):
            assert np.array_equal(exported[seq_name], p)
        expected = metrics.evaluate(test.labels, preds, doc["class_names"], 60)
        assert doc["models"][name]["boundary_f1"] == pytest.approx(expected["boundary_f1"])
        assert doc["models"][name]["segment_f1"] == pytest.approx(expected["segment_f1"])
        assert ckpt["epoch"] == doc["models"][name]["best_epoch"]


@pytest.mark.slow
def test_history_and_best_checkpoint_agree(full_run):
    _, out, _ = full_run
    last = torch.load(out / "checkpoints" / "semicrf_last.pt", weights_only=True)
    history = last["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    # The best F1; on ties the lower validation loss, then the earlier epoch.
    expected = min(history, key=lambda h: (-h["val_boundary_f1"], h["val_loss"], h["epoch"]))["epoch"]
    assert last["best_epoch"] == expected
    assert all(math.isfinite(h["train_loss"]) and h["train_loss"] >= 0 for h in history)
    # The last checkpoint holds the last epoch's weights, the best one the best epoch's.
    best = torch.load(out / "checkpoints" / "semicrf_best.pt", weights_only=True)
    same = all(torch.equal(best["state_dict"][k], last["state_dict"][k]) for k in best["state_dict"])
    assert best["epoch"] == last["best_epoch"]
    assert same == (last["best_epoch"] == last["epoch"] == 2)


def _model_metrics(out):
    doc = json.loads((out / "metrics.json").read_text())
    return {m: {k: v for k, v in r.items() if k not in TIMING} for m, r in doc["models"].items()}


@pytest.mark.slow
def test_resume_repeats_an_uninterrupted_run(data_dir, tmp_path, capsys):
    models = ["--models", "softmax,semicrf"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _run(data_dir, straight, "--epochs", "3", *models) == 0
    assert _run(data_dir, resumed, "--epochs", "2", *models) == 0
    assert _run(data_dir, resumed, "--epochs", "3", "--resume", *models) == 0
    assert _model_metrics(straight) == _model_metrics(resumed)
    for m in ("softmax", "semicrf"):
        for kind in ("best", "last"):
            a = torch.load(straight / "checkpoints" / f"{m}_{kind}.pt", weights_only=True)["state_dict"]
            b = torch.load(resumed / "checkpoints" / f"{m}_{kind}.pt", weights_only=True)["state_dict"]
            assert all(torch.equal(a[k], b[k]) for k in a)
    # A finished run resumed again trains nothing and leaves the checkpoints alone.
    before = (resumed / "checkpoints" / "semicrf_last.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert _run(data_dir, resumed, "--epochs", "3", "--resume", *models) == 0
    assert "not retrained" in capsys.readouterr().out
    assert (resumed / "checkpoints" / "semicrf_last.pt").stat().st_mtime_ns == before
    # Other settings on --resume are refused, naming the difference.
    assert _run(data_dir, resumed, "--epochs", "3", "--resume", "--lr", "0.5", *models) == 2
    assert "lr" in capsys.readouterr().err


def test_non_empty_output_is_refused_unless_overwrite(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _run(data_dir, out, "--epochs", "1", "--models", "softmax") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _run(data_dir, out, "--epochs", "1", "--models", "softmax", "--overwrite") == 0
    assert (out / "metrics.json").is_file() and (out / "notes.txt").read_text() == "mine"
    assert _run(data_dir, out, "--epochs", "1", "--models", "linear", "--overwrite") == 0
    # The earlier run's files are gone, the user's file stays.
    assert not (out / "checkpoints" / "softmax_best.pt").exists()
    assert list(json.loads((out / "metrics.json").read_text())["models"]) == ["linear"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--data-dir": "missing"}, "does not exist"),
        ({"--encoder": "mamba"}, "mamba_stub"),  # --device cpu: refused whether or not mamba-ssm is there
        ({"--hidden-dim": "7"}, "even"),
        ({"--models": "softmax,hmm"}, "unknown model"),
        ({"--epochs": "0"}, "--epochs"),
        ({"--resume": None, "--overwrite": None}, "contradict"),
        ({"--backend": "triton"}, "GPU"),
        ({"--warmup-steps": "-1"}, "--warmup-steps"),
        ({"--min-lr-ratio": "1.5"}, "--min-lr-ratio"),
        ({"--time-limit": "0"}, "--time-limit"),
        ({"--checkpoint-every": "-5"}, "--checkpoint-every"),
        ({"--patience": "0"}, "--patience"),
        ({"--step-budget": "softmax=many"}, "--step-budget"),
        ({"--gene-long-runs": "pieces"}, "--gene-splice-sites off"),  # splice sites need the tail states
    ],
)
def test_bad_input_is_refused_before_anything_is_written(data_dir, tmp_path, capsys, change, message):
    args = {"--data-dir": str(data_dir), "--output-dir": str(tmp_path / "never"), **dict(zip(TINY[::2], TINY[1::2]))}
    args.pop("--no-progress", None)
    for k, v in change.items():
        args[k] = str(tmp_path / v) if k == "--data-dir" else v
    argv = ["run"]
    for k, v in args.items():
        argv += [k] if v is None else [k, v]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_corrupt_data_dir_is_refused(data_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    assert _run(broken, tmp_path / "never", "--epochs", "1") == 2
    assert "generate" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_suggests_cpu(data_dir, tmp_path, capsys):
    argv = ["run", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "never"), "--encoder", "bilstm"]
    assert main(argv) == 2
    assert "--device cpu" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_prefetched_keeps_order_and_passes_errors_on():
    from semicrf.genomics.batches import prefetched

    assert list(prefetched(iter(range(20)), depth=3)) == list(range(20))

    def failing():
        yield 1
        raise KeyError("boom")

    got = []
    with pytest.raises(KeyError, match="boom"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]
    # Leaving early does not hang.
    for item in prefetched(iter(range(1000)), depth=1):
        if item == 2:
            break


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_run_on_a_gpu_writes_every_model(data_dir, tmp_path, capsys):
    from semicrf.genomics.encoders import EncoderUnavailable, encoder_available

    try:
        encoder_available("mamba")
        encoder = "mamba"
    except EncoderUnavailable:
        encoder = "mamba_stub"
    out = tmp_path / "gpu"
    args = dict(zip(TINY[::2], TINY[1::2]))
    args.update({"--device": "cuda", "--encoder": encoder, "--hidden-dim": "64", "--num-layers": "2"})
    argv = ["run", "--data-dir", str(data_dir), "--output-dir", str(out), "--epochs", "2", "--no-progress"]
    for k, v in args.items():
        if k != "--no-progress":
            argv += [k, v]
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["models"]) == list(DEFAULT_MODELS)
    assert doc["config"]["engine_backend_resolved"] == "triton"
    for m, r in doc["models"].items():
        assert r["peak_memory_source"] == "cuda_max_memory_allocated" and r["peak_memory_mb"] > 0
        assert 0 <= r["boundary_f1"] <= 1
    assert doc["versions"]["gpu"]


# ----------------------------------------------------------------------------
# stopping, mid-epoch checkpoints and exact resume. The oracle is the
# uninterrupted run (full_run: every model, 2 epochs of 2 steps each).


def _ckpt(out, model, kind="last"):
    return torch.load(out / "checkpoints" / f"{model}_{kind}.pt", weights_only=True)


def _without_timing(history):
    return [{k: v for k, v in h.items() if k != "elapsed_s"} for h in history]


def _assert_same_training(a_dir, b_dir, model):
    """Bitwise the same weights (last and best), optimizer state and history."""
    for kind in ("last", "best"):
        a, b = _ckpt(a_dir, model, kind)["state_dict"], _ckpt(b_dir, model, kind)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (model, kind)
    a, b = _ckpt(a_dir, model), _ckpt(b_dir, model)
    for p, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][p][key]), (model, p, key)
    assert _without_timing(a["history"]) == _without_timing(b["history"])
    assert (a["epoch"], a["global_step"], a["best_epoch"]) == (b["epoch"], b["global_step"], b["best_epoch"])


def test_time_limit_stops_at_each_step_and_resuming_repeats_the_uninterrupted_run(full_run, data_dir, tmp_path,
                                                                                  capsys):
    _, straight, _ = full_run
    out = tmp_path / "pieces"
    models = ["--models", "softmax,semicrf", "--epochs", "2"]
    # A limit shorter than any step: every invocation makes exactly one optimizer step (mid-epoch or at an
    # epoch end), then stops there.
    assert _run(data_dir, out, *models, "--time-limit", "1e-6") == 0
    stdout = capsys.readouterr().out
    assert "stopped early" in stdout and "--resume" in stdout
    assert not (out / "metrics.json").exists()  # nothing finished, so no metrics
    first = _ckpt(out, "softmax")
    assert (first["epoch"], first["step_in_epoch"], first["global_step"]) == (0, 1, 1)
    assert not first["history"] and not (out / "checkpoints" / "semicrf_last.pt").exists()
    invocations = 1
    while not (out / "duration_comparison.png").exists():
        assert _run(data_dir, out, *models, "--time-limit", "1e-6", "--resume") == 0
        invocations += 1
        assert invocations <= 12
        if invocations == 4:  # softmax finished in this one; semicrf not started
            assert list(json.loads((out / "metrics.json").read_text())["models"]) == ["softmax"]
            assert not (out / "checkpoints" / "semicrf_last.pt").exists()
    capsys.readouterr()
    assert invocations == 8  # 2 models x 2 epochs x 2 steps
    for m in ("softmax", "semicrf"):
        _assert_same_training(straight, out, m)
    same = _model_metrics(straight)
    assert {m: same[m] for m in ("softmax", "semicrf")} == _model_metrics(out)
    for m in ("softmax", "semicrf"):
        assert (out / "predictions" / f"{m}.gff3").read_text() == (straight / "predictions" / f"{m}.gff3").read_text()


def test_sigterm_saves_at_the_step_boundary_and_resume_repeats(full_run, data_dir, tmp_path, monkeypatch, capsys):
    from semicrf.genomics import trainer

    _, straight, _ = full_run
    out = tmp_path / "signalled"
    original, steps = trainer.ModelRun._step, []

    def step_then_signal(self, *args):
        value = original(self, *args)
        steps.append(self.global_step)
        if self.global_step == 3:  # during epoch 2's first step, as a job scheduler would
            os.kill(os.getpid(), signal.SIGTERM)
        return value

    monkeypatch.setattr(trainer.ModelRun, "_step", step_then_signal)
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "2") == 128 + signal.SIGTERM
    assert steps == [1, 2, 3]  # the step in progress finished, no further one began
    assert "SIGTERM" in capsys.readouterr().err
    last = _ckpt(out, "softmax")
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (1, 1, 3)
    assert not (out / "metrics.json").exists() and not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "2", "--resume") == 0
    _assert_same_training(straight, out, "softmax")
    assert _model_metrics(out)["softmax"] == _model_metrics(straight)["softmax"]


def test_checkpoint_every_writes_mid_epoch_without_changing_training(full_run, data_dir, tmp_path, monkeypatch):
    from semicrf.genomics import trainer

    _, straight, _ = full_run
    saved = []
    original = trainer.save_checkpoint

    def recording(state, path):
        if path.name.endswith("_last.pt"):
            saved.append((state["epoch"], state["step_in_epoch"], state["finished"]))
        original(state, path)

    monkeypatch.setattr(trainer, "save_checkpoint", recording)
    assert _run(data_dir, tmp_path / "default", "--models", "softmax", "--epochs", "2") == 0
    # Default (300 s): at each epoch end, and once finished.
    assert saved == [(1, 0, False), (2, 0, False), (2, 0, True)]
    saved.clear()
    out = tmp_path / "often"
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "2", "--checkpoint-every", "1e-9") == 0
    assert saved == [(0, 1, False), (1, 0, False), (1, 1, False), (2, 0, False), (2, 0, True)]
    _assert_same_training(straight, out, "softmax")


def test_step_budget_stops_a_model_validates_and_reports_it(data_dir, tmp_path, capsys):
    out = tmp_path / "budget"
    assert _run(data_dir, out, "--models", "softmax,linear", "--epochs", "3", "--log-every", "5",
                "--step-budget", "softmax=3") == 0
    stdout = capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    soft, lin = doc["models"]["softmax"], doc["models"]["linear"]
    # 2 steps an epoch: the budget ends epoch 2 after its first step.
    assert (soft["steps_trained"], soft["step_budget"], soft["stopped_by"], soft["epochs_trained"]) == \
        (3, 3, "step_budget", 2)
    assert (lin["steps_trained"], lin["step_budget"], lin["stopped_by"], lin["epochs_trained"]) == (6, None, "epochs", 3)
    last = _ckpt(out, "softmax")
    # AdamW counts its own steps: an independent count of what was trained.
    assert all(float(s["step"]) == 3 for s in last["optimizer"]["state"].values())
    history = last["history"]
    assert [(h["epoch"], h["steps"]) for h in history] == [(1, 2), (2, 3)]
    # --log-every 5 validates only the last epoch (3): the cut epoch 2 is validated because the budget ended it.
    assert "val_boundary_f1" not in history[0] and "val_boundary_f1" in history[1]
    assert _ckpt(out, "softmax", "best")["epoch"] == soft["best_epoch"] == 2
    assert "stopped by its --step-budget after 3 steps" in stdout
    assert "3 (budget)" in stdout  # the closing table shows it
    # Resumed, a budget-stopped model is finished: not retrained, even with more epochs.
    before = (out / "checkpoints" / "softmax_last.pt").stat().st_mtime_ns
    assert _run(data_dir, out, "--models", "softmax,linear", "--epochs", "4", "--log-every", "5",
                "--step-budget", "softmax=3", "--resume") == 0
    assert "softmax: finished earlier" in capsys.readouterr().out
    assert (out / "checkpoints" / "softmax_last.pt").stat().st_mtime_ns == before


def test_step_budget_at_an_epoch_end_validates_that_epoch(data_dir, tmp_path):
    out = tmp_path / "even"
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "3", "--log-every", "5",
                "--step-budget", "softmax=2") == 0
    history = _ckpt(out, "softmax")["history"]
    assert [(h["epoch"], h["steps"]) for h in history] == [(1, 2)] and "val_boundary_f1" in history[0]


def test_step_budget_inside_the_first_epoch_validates_that_epoch(data_dir, tmp_path):
    """A budget that ends epoch 1 before its end (no finished epoch yet) still closes and validates it."""
    out = tmp_path / "first"
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "3", "--step-budget", "softmax=1") == 0
    history = _ckpt(out, "softmax")["history"]
    assert [(h["epoch"], h["steps"]) for h in history] == [(1, 1)] and "val_boundary_f1" in history[0]


def test_time_budget_stops_a_model_at_the_first_step_past_it(data_dir, tmp_path, capsys):
    """Any step takes more than a nanosecond: a 1e-9 s budget stops softmax after its first step; linear trains on."""
    out = tmp_path / "seconds"
    assert _run(data_dir, out, "--models", "softmax,linear", "--epochs", "2", "--time-budget", "softmax=1e-9") == 0
    stdout = capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    soft, lin = doc["models"]["softmax"], doc["models"]["linear"]
    assert (soft["steps_trained"], soft["stopped_by"], soft["time_budget_s"]) == (1, "time_budget", 1e-9)
    assert (lin["steps_trained"], lin["stopped_by"], lin["time_budget_s"]) == (4, "epochs", None)
    last = _ckpt(out, "softmax")
    assert all(float(s["step"]) == 1 for s in last["optimizer"]["state"].values())
    history = last["history"]
    assert [(h["epoch"], h["steps"]) for h in history] == [(1, 1)] and "val_boundary_f1" in history[0]
    assert last["training_time_s"] == soft["training_time_s"] > 0
    assert "stopped by its --time-budget after 1 steps" in stdout
    assert "1 (time budget)" in stdout


def test_patience_stops_after_validations_without_a_better_f1(data_dir, tmp_path):
    out = tmp_path / "patience"
    # lr 0: the weights never move, so validation F1 never improves after the first validation.
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "6", "--lr", "1e-12", "--patience", "2") == 0
    m = json.loads((out / "metrics.json").read_text())["models"]["softmax"]
    history = _ckpt(out, "softmax")["history"]
    f1s = [h["val_boundary_f1"] for h in history]
    assert len(set(f1s)) == 1  # the premise: no validation beat the first
    assert (m["stopped_by"], m["epochs_trained"], m["best_epoch"], m["steps_trained"]) == ("patience", 3, 1, 6)


def test_learning_rate_schedule_scales_every_group(full_run, data_dir, tmp_path, capsys):
    _, straight, _ = full_run
    # Defaults: every group at its own base rate, exactly as before the schedule existed.
    groups = _ckpt(straight, "semicrf")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.01, 0.01, 0.01 * 20.0]
    out = tmp_path / "cosine"
    args = ["--models", "semicrf", "--epochs", "2", "--lr-schedule", "cosine", "--warmup-steps", "1",
            "--min-lr-ratio", "0.25"]
    assert _run(data_dir, out, *args) == 0
    last = _ckpt(out, "semicrf")
    # The 4th and last step (of 2 epochs x 2 steps) runs at 0.25 x each group's base rate.
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == pytest.approx([0.0025, 0.0025, 0.05])
    assert last["config"]["lr_schedule"] == "cosine" and last["config"]["warmup_steps"] == 1
    # A cosine schedule spans --epochs: a resume with more epochs is refused, and so is another schedule.
    capsys.readouterr()
    assert _run(data_dir, out, *args, "--epochs", "3", "--resume") == 2
    err = capsys.readouterr().err
    assert "cosine" in err and "--epochs 2" in err and "--overwrite" in err
    assert _run(data_dir, out, "--models", "semicrf", "--epochs", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert "--lr-schedule: checkpoint 'cosine', now 'constant'" in err and "--warmup-steps" in err


def test_objective_is_recorded_and_a_resume_keeps_it(data_dir, tmp_path, capsys):
    out = tmp_path / "seg"
    args = ["--models", "semicrf", "--epochs", "1", "--objective", "segmentation"]
    assert _run(data_dir, out, *args) == 0
    ckpt = _ckpt(out, "semicrf")
    assert ckpt["config"]["objective"] == "segmentation" and ckpt["model_config"]["objective"] == "segmentation"
    capsys.readouterr()
    assert _run(data_dir, out, "--models", "semicrf", "--epochs", "1", "--resume") == 2
    assert "--objective: checkpoint 'segmentation', now 'labelling'" in capsys.readouterr().err


def test_resume_refuses_edited_data_files(data_dir, tmp_path, capsys):
    from semicrf.genomics.dataset import save_split

    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    out = tmp_path / "out"
    assert _run(data, out, "--models", "softmax", "--epochs", "1") == 0
    # Same metadata, one label changed: only the files' hash can tell.
    train = load_split(data, "train")
    train.labels[0][5] = (train.labels[0][5] + 1) % 3
    save_split(data, "train", train)
    capsys.readouterr()
    assert _run(data, out, "--models", "softmax", "--epochs", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert "data files in --data-dir" in err and "--overwrite" in err
    assert _run(data, out, "--models", "softmax", "--epochs", "2", "--overwrite") == 0


def test_a_signal_during_the_last_validation_stops_before_the_next_model(data_dir, tmp_path, monkeypatch, capsys):
    from semicrf.genomics import trainer

    original = trainer.ModelRun._validate

    def validate_then_signal(self, record, log):
        original(self, record, log)
        if self.name == "softmax" and self.epoch == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(trainer.ModelRun, "_validate", validate_then_signal)
    out = tmp_path / "out"
    assert _run(data_dir, out, "--models", "softmax,linear", "--epochs", "2") == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert "SIGINT" in err and "linear and the models after it not started" in err
    # softmax finished (it was past its last step), linear never began.
    assert list(json.loads((out / "metrics.json").read_text())["models"]) == ["softmax"]
    assert not (out / "checkpoints" / "linear_last.pt").exists()


def test_best_epoch_is_decided_by_boundary_f1_then_validation_loss():
    from semicrf.genomics.trainer import improves

    inf = float("inf")
    assert improves(0.0, 0.5, -inf, inf)  # the first validation
    assert improves(0.2, 0.9, 0.1, 0.1)  # a higher F1 wins whatever the loss
    assert not improves(0.1, 0.01, 0.2, 0.5)  # a lower F1 loses whatever the loss
    assert improves(0.0, 0.3, 0.0, 0.4)  # equal F1 (0 in a short run): the lower loss
    assert not improves(0.0, 0.4, 0.0, 0.4) and not improves(0.0, 0.5, 0.0, 0.4)  # else the earlier epoch


@pytest.mark.parametrize("key,old,other,default", [("gene_inner_cuts", "scored", "free", "free"),
                                                   ("gene_exon_ends", "all", "gene", "all")])
def test_a_checkpoint_from_before_a_gene_setting_resumes_only_as_it_was_trained(data_dir, tmp_path, capsys, key, old,
                                                                                  other, default):
    # A checkpoint whose config does not name --gene-inner-cuts was trained with every tail piece's ends
    # scored, one that does not name --gene-exon-ends with every exon end scored: a resume with the other
    # value is refused, naming the flag; with the old value it goes on.
    flag = "--" + key.replace("_", "-")
    out = tmp_path / "old"
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "1") == 0
    path = out / "checkpoints" / "softmax_last.pt"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["config"][key] == default
    del ckpt["config"][key]
    torch.save(ckpt, path)
    capsys.readouterr()
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "2", "--resume", flag, other) == 2
    assert f"{flag}: checkpoint '{old}', now '{other}'" in capsys.readouterr().err
    assert _run(data_dir, out, "--models", "softmax", "--epochs", "2", "--resume", flag, old) == 0
