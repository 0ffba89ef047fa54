"""Predicting a split, and turning a trained model into test metrics and prediction files.

With several processes each predicts its shard of the split and every
process receives the gathered whole, so all compute the same metrics; only
rank 0 writes the prediction files.
"""

from __future__ import annotations

import copy
import math
import resource
import sys
import time

import numpy as np
import torch

from . import formats, metrics
from .batches import Batcher
from .checkpoints import PREDICTION_DIR, best_path, load_checkpoint
from .segments import segment_durations


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_split(model, batcher: Batcher, with_loss: bool = True):
    """(predicted labels per sequence, mean loss per position or None, seconds spent in the model).

    The predictions are (L_i,) int64 arrays in the split's order. With several
    processes each predicts its shard (:meth:`Batcher.in_length_order`) and
    every process returns the gathered whole; the seconds are the slowest
    rank's.
    """
    model.eval()
    mine = []
    loss_sum, seconds = 0.0, 0.0
    for index, (x, y, lengths) in batcher.in_length_order():
        _sync(batcher.device)
        start = time.perf_counter()
        mine += zip(index.tolist(), model.predict(x, lengths))
        _sync(batcher.device)
        seconds += time.perf_counter() - start
        if with_loss and model.trainable:
            loss_sum += float(model.loss(x, y, lengths)) * int(lengths.sum())
    preds = [None] * len(batcher.lengths)
    gathered = batcher.processes.gather((mine, loss_sum, seconds))
    for part, _, _ in gathered:
        for i, p in part:
            preds[i] = p
    loss_sum = sum(g[1] for g in gathered)
    seconds = max(g[2] for g in gathered)
    loss = loss_sum / int(batcher.lengths.sum()) if with_loss and model.trainable else None
    return preds, loss, seconds


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """(peak memory in MiB, where it comes from): the GPU's peak allocation, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    # ru_maxrss is in KiB on Linux, bytes on macOS; process-wide and never decreasing.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_max_rss"


def _best_model(run):
    """A copy of the run's model holding its best weights (the run's own keeps the last ones)."""
    model = copy.deepcopy(run.model)
    best = run.best_state
    if best is None:  # a resumed run whose best epoch came before the interruption
        best = load_checkpoint(best_path(run.out, run.name))["state_dict"]
    model.load_state_dict(best)
    return model


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def evaluate_model(run, log) -> dict:
    """Test metrics of ``run`` (a trained :class:`trainer.ModelRun`) at its best weights.

    Writes ``predictions/<model>.gff3`` and ``.bed`` and the finished last
    checkpoint; returns {"metrics": ..., "pred_durations": {class: (n,) int64},
    "duration_prior": (K, C) float32 or None}.
    """
    if run.results is not None:
        return run.results
    model = _best_model(run)
    preds, _, seconds = predict_split(model, run.test_batches, with_loss=False)
    test = run.data["test"]
    class_names = list(run.meta["class_names"])
    scores = metrics.evaluate(test.labels, preds, class_names, run.config.max_duration)
    # The largest of the processes' peaks: what one GPU (or process) had to hold.
    peak, peak_source = max(run.processes.gather(peak_memory_mb(run.device)))
    positions = int(run.test_batches.lengths.sum())
    scores.update(
        training_time_s=run.train_time,
        time_per_epoch_s=run.train_time / run.epoch if run.epoch else None,
        inference_time_s=seconds,
        inference_throughput=positions / seconds if seconds > 0 else None,
        peak_memory_mb=peak,
        peak_memory_source=peak_source,
        epochs_trained=run.epoch,
        steps_trained=run.global_step,
        step_budget=run.budget,
        time_budget_s=run.seconds_budget,
        stopped_by=run.stopped_by,
        best_epoch=run.best_epoch,
        best_val_boundary_f1=run.best_f1 if math.isfinite(run.best_f1) else None,
        num_parameters=int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        max_duration=model.max_duration,
        description=model.description,
    )
    if run.processes.writer:
        pred_dir = run.out / PREDICTION_DIR
        formats.write_gff3(pred_dir / f"{run.name}.gff3", test.names, preds, class_names,
                           source=f"semicrf:{run.name}")
        formats.write_bed(pred_dir / f"{run.name}.bed", test.names, preds, class_names)
    durations = [np.concatenate(d) if d else np.zeros(0, np.int64)
                 for d in zip(*(segment_durations(p, len(class_names)) for p in preds))]
    prior = model.duration_scores()
    run.results = {
        "metrics": scores,
        # Kept for the figures of a resumed run; not part of metrics.json.
        "pred_durations": {n: torch.from_numpy(d.astype(np.int64)) for n, d in zip(class_names, durations)},
        "duration_prior": prior.float().cpu() if prior is not None else None,
    }
    run.save_last(finished=True)
    log(f"{run.name}: test boundary F1 {scores['boundary_f1']:.4f}, segment F1 {scores['segment_f1']:.4f}, "
        f"duration KL mean {_fmt(scores['duration_kl_mean'])} ({run.train_time:.1f} s training, "
        f"{scores['inference_throughput'] or 0:.0f} positions/s inference)")
    return run.results
