"""The ``generate`` command: flags, refusals, determinism, and the benchmark-folder entry points."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from semicrf.genomics.cli import build_parser, main
from semicrf.genomics.dataset import load_metadata, load_split

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "synthetic_genomics"
SMALL = ["--num-train", "3", "--num-val", "1", "--num-test", "1", "--seq-length", "3000"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_generate_with_every_flag(tmp_path, capsys):
    out = tmp_path / "d"
    rc = main(["generate", "--output-dir", str(out), *SMALL, "--num-classes", "5", "--seed", "7",
               "--content", "realistic", "--no-splice-motifs"])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    meta = load_metadata(out)
    assert meta["seed"] == 7 and meta["splits"] == {"train": 3, "val": 1, "test": 1}
    cfg = meta["config"]
    assert cfg["num_classes"] == 5 and cfg["content"] == "realistic" and cfg["splice_motifs"] is False
    assert cfg["seq_length"] == 3000
    train = load_split(out, "train")
    assert len(train) == 3 and all(2700 <= len(s) <= 3300 for s in train.sequences)


def test_defaults_are_the_specs():
    args = build_parser().parse_args(["generate", "--output-dir", "x"])
    assert (args.num_train, args.num_val, args.num_test) == (1000, 200, 200)
    assert (args.seq_length, args.num_classes, args.seed) == (20000, 3, 42)
    assert args.content == "random" and args.splice_motifs is True and args.overwrite is False


def test_output_dir_is_required(capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate"])
    assert e.value.code == 2 and "--output-dir" in capsys.readouterr().err


def test_non_empty_dir_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["generate", "--output-dir", str(out), *SMALL, "--seed", "1"]) == 0
    before = _snapshot(out)
    assert main(["generate", "--output-dir", str(out), *SMALL, "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    assert _snapshot(out) == before  # nothing touched

    (out / "mine.txt").write_text("keep")
    assert main(["generate", "--output-dir", str(out), *SMALL, "--seed", "2", "--overwrite"]) == 0
    assert load_metadata(out)["seed"] == 2
    assert (out / "mine.txt").read_text() == "keep"
    assert _snapshot(out)["train.npz"] != before["train.npz"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-train", "0"], "--num-train"),
        (["--num-val", "-1"], "--num-val"),
        (["--seq-length", "500"], "--seq-length"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_invalid_values_rejected_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "new"
    assert main(["generate", "--output-dir", str(out), *SMALL, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "error" in err
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--num-classes", "4"], ["--content", "rich"], ["--num-train", "many"]])
def test_argparse_rejects_bad_choices(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        main(["generate", "--output-dir", str(tmp_path / "new"), *flags])
    assert e.value.code == 2 and "invalid" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_same_flags_give_byte_identical_files(tmp_path):
    for name in ("a", "b"):
        assert main(["generate", "--output-dir", str(tmp_path / name), *SMALL, "--num-classes", "5"]) == 0
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")


@pytest.mark.slow  # two fresh interpreters
def test_benchmark_scripts_run_from_their_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = tmp_path / "spec"
    done = subprocess.run(
        [sys.executable, "synthetic_benchmark.py", "generate", "--output-dir", str(out), *SMALL],
        cwd=BENCH, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert load_metadata(out)["splits"]["train"] == 3
    done = subprocess.run(
        [sys.executable, "synthetic_data.py", "--output-dir", str(out), *SMALL],
        cwd=BENCH, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and "--overwrite" in done.stderr
