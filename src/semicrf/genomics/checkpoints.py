"""Checkpoints of the ``run`` command and the output directory they live in.

``checkpoints/<model>_best.pt`` holds the weights at the best validation
boundary F1, ``checkpoints/<model>_last.pt`` everything needed to continue
(``--resume``). Both are plain ``torch.save`` dictionaries that
``torch.load(..., weights_only=True)`` reads, written to a temporary file and
renamed into place, so the file on disk is always a complete one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import formats
from .models import available_models
from .outputs import CURVES_PLOT, DURATION_PLOT, METRICS_FILE
from .run_config import IDENTITY_KEYS, RunConfig, RunError

CHECKPOINT_FORMAT = "semicrf-benchmark-checkpoint"
# 2: the last checkpoint adds the position within the epoch, the global step, the unfinished
# epoch's loss sums, the RNG states and why training stopped. Version 1 still resumes.
FORMAT_VERSION = 2
# What an older checkpoint's config means for the settings it did not record (version 1's, and
# gene_inner_cuts and gene_exon_ends, added 2026-12-05 within version 2).
_LEGACY_DEFAULTS = {"warmup_steps": 0, "lr_schedule": "constant", "min_lr_ratio": 0.1, "objective": "labelling",
                    "gene_long_runs": "pieces", "gene_splice_sites": False, "gene_inner_cuts": "scored",
                    "gene_exon_ends": "all"}
# How a refusal names each identity setting (default: its flag).
_SETTING_NAMES = {"data": "the data set's generator settings (--data-dir)",
                  "data_files": "the data files in --data-dir (regenerated or edited since)"}
CHECKPOINT_DIR = "checkpoints"
PREDICTION_DIR = "predictions"


def best_path(out: Path, model: str) -> Path:
    return out / CHECKPOINT_DIR / f"{model}_best.pt"


def last_path(out: Path, model: str) -> Path:
    return out / CHECKPOINT_DIR / f"{model}_last.pt"


def save_checkpoint(obj: dict, path: Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, renamed onto it once complete."""
    with formats.atomic_output(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint of this benchmark, on the CPU; raises :class:`RunError` for anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise RunError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); "
                       "use --overwrite to start afresh") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a checkpoint of this benchmark; use --overwrite to start afresh")
    return ckpt


def known_outputs(out: Path) -> list[Path]:
    """Every file a run may write in ``out`` (what --overwrite deletes)."""
    paths = [out / METRICS_FILE, out / DURATION_PLOT, out / CURVES_PLOT]
    for m in available_models():
        paths += [best_path(out, m), last_path(out, m),
                  out / PREDICTION_DIR / f"{m}.gff3", out / PREDICTION_DIR / f"{m}.bed"]
    return paths


def _changed_settings(old: dict, now: dict) -> list[str]:
    """The identity settings in which a checkpoint's config ``old`` differs from ``now``, described."""
    diff = []
    for key in IDENTITY_KEYS:
        if key not in old and key not in _LEGACY_DEFAULTS:
            continue  # not recorded by a version-1 checkpoint (the data files' hash): nothing to compare
        before = old.get(key, _LEGACY_DEFAULTS.get(key))
        if key == "min_lr_ratio" and now["lr_schedule"] == "constant" == old.get("lr_schedule", "constant"):
            continue  # only the cosine schedule reads it
        if before != now[key]:
            name = _SETTING_NAMES.get(key, "--" + key.replace("_", "-"))
            diff.append(f"{name}: checkpoint {before!r}, now {now[key]!r}")
    return diff


def check_resume(config: RunConfig) -> dict[str, dict]:
    """The last checkpoints to resume from, each checked against ``config``."""
    found = {}
    current = config.to_dict()
    for m in config.models:
        path = last_path(config.output_path, m)
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        old = ckpt.get("config", {})
        diff = _changed_settings(old, current)
        if diff:
            raise RunError(f"--resume: {path} was trained with other settings ({'; '.join(diff)}); rerun with the "
                           "checkpoint's settings, or use --overwrite to start afresh")
        if config.lr_schedule == "cosine" and old.get("epochs") != config.epochs:
            raise RunError(f"--resume: {path} was trained with --lr-schedule cosine over --epochs {old.get('epochs')}; "
                           f"the cosine schedule spans --epochs, so --epochs {config.epochs} would change every "
                           f"later learning rate; give --epochs {old.get('epochs')} or use --overwrite")
        begun = int(ckpt["epoch"]) + (1 if ckpt.get("step_in_epoch") else 0)
        if begun > config.epochs:
            raise RunError(f"--resume: {path} has already trained {begun} epochs, more than --epochs "
                           f"{config.epochs}; give --epochs >= {begun} or use --overwrite")
        found[m] = ckpt
    return found


def check_output_dir(config: RunConfig) -> dict[str, dict]:
    """Refuse an output directory the run may not write to; returns the checkpoints to resume from."""
    out = config.output_path
    if out.exists() and not out.is_dir():
        raise RunError(f"--output-dir {out} exists and is not a directory; choose another path")
    nonempty = out.is_dir() and any(out.iterdir())
    if nonempty and not (config.resume or config.overwrite):
        raise RunError(f"--output-dir {out} is not empty; use --resume to continue the run there, "
                       "--overwrite to replace its results, or choose another directory")
    return check_resume(config) if config.resume and nonempty else {}


def make_output_dir(config: RunConfig) -> None:
    """Create the output folders; with --overwrite, delete the earlier run's files (only those)."""
    out = config.output_path
    if config.overwrite:
        for path in known_outputs(out):
            if path.is_file():
                path.unlink()
    (out / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    (out / PREDICTION_DIR).mkdir(exist_ok=True)
