"""What a finished ``run`` leaves beside its checkpoints: metrics.json, the figures, the versions.

Every file is written to a temporary file in the same folder and renamed
into place, so a reader never sees a half-written one.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from . import dataset, formats, plots
from .segments import segment_durations

RESULTS_FORMAT = "semicrf-benchmark-results"
FORMAT_VERSION = 1
METRICS_FILE = "metrics.json"
DURATION_PLOT = "duration_comparison.png"
CURVES_PLOT = "training_curves.png"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def versions() -> dict:
    """Versions of Python, torch, numpy, semicrf, pytorch-crf, the git commit and the GPU."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "semicrf": __version__, "git_commit": _git_commit()}
    try:
        from importlib.metadata import version
        info["pytorch-crf"] = version("pytorch-crf")
    except Exception:
        info["pytorch-crf"] = None
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _true_duration_stats(meta: dict, test: dataset.Split) -> dict:
    stats = meta.get("duration_stats", {}).get("test")
    if stats and len(test) == meta["splits"]["test"]:
        return stats
    return dataset.duration_statistics(test.labels, meta["class_names"])


def write_metrics(out: Path, config: dict, meta: dict, data: dict, results: dict) -> None:
    """``metrics.json``: each finished model's test metrics, the run's config, the data, the versions."""
    test = data["test"]
    lengths = np.array([len(s) for s in test.sequences])
    doc = {
        "format": RESULTS_FORMAT,
        "format_version": FORMAT_VERSION,
        "models": {m: r["metrics"] for m, r in results.items()},
        "class_names": list(meta["class_names"]),
        "config": config,
        "data": {
            "data_dir": config["data_dir"],
            "fingerprint": config["data"],
            "seq_length": meta["config"].get("seq_length"),
            "num_classes": meta["num_classes"],
            "generator": meta["config"],
            "sequences": {k: len(v) for k, v in data.items()},
            "test_positions": int(lengths.sum()),
            "test_mean_length": float(lengths.mean()),
        },
        "true_duration_stats": _true_duration_stats(meta, test),
        "versions": versions(),
    }
    with formats.atomic_output(out / METRICS_FILE, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
        f.write("\n")


def write_figures(out: Path, meta: dict, data: dict, results: dict, histories: dict, max_duration: int) -> None:
    """The duration comparison (truth, each model, learned priors) and the training curves."""
    class_names = list(meta["class_names"])
    true = segment_durations_all(data["test"].labels, len(class_names))
    true_durations = {n: d for n, d in zip(class_names, true)}
    pred = {m: {n: r["pred_durations"][n].numpy() for n in class_names} for m, r in results.items()}
    kl = {m: r["metrics"]["duration_kl"] for m, r in results.items()}
    priors = {m: r["duration_prior"].numpy() for m, r in results.items()
              if r.get("duration_prior") is not None and r["duration_prior"].shape[0] > 1}
    plots.plot_duration_comparison(out / DURATION_PLOT, class_names, true_durations, pred, kl,
                                   learned_priors=priors or None, max_duration=max_duration)
    curves = {m: h for m, h in histories.items() if h}
    if curves:
        plots.plot_training_curves(out / CURVES_PLOT, curves)


def segment_durations_all(labels: list[np.ndarray], num_classes: int) -> list[np.ndarray]:
    """Durations of each class's maximal runs over all sequences: C int64 arrays."""
    per_seq = [segment_durations(lab, num_classes) for lab in labels]
    return [np.concatenate([d[c] for d in per_seq]) if per_seq else np.zeros(0, np.int64)
            for c in range(num_classes)]
