"""Training one model of the benchmark: optimizer, the training loop, its checkpoints.

AdamW with weight decay on the encoder's and heads' weight matrices only
(none on biases, norms or CRF scores); the CRF layer's own scores --
transitions, durations, initial/final -- at ``--crf-lr-scale`` times the
learning rate, since they are log-scale scores that must travel several nats
while Adam moves a parameter about ``lr`` a step. Gradient-norm clipping.
Each epoch visits the training sequences in an order drawn from
``(seed, epoch)``, so a resumed run repeats the uninterrupted one.
Validation runs every ``--log-every`` epochs and after the last; the weights
with the best validation boundary F1 (earliest on ties) are kept.

Under DistributedDataParallel every process scales its loss by its share of
the global batch's positions (see :meth:`Batcher.shuffled`), so that the
gradients DDP averages are those of the whole batch's mean loss per position.
"""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as torch_dist
from torch import nn

from . import metrics
from .batches import Batcher
from .checkpoints import CHECKPOINT_FORMAT, FORMAT_VERSION, best_path, last_path, save_checkpoint
from .distributed import Processes
from .evaluation import predict_split
from .models import build_model
from .run_config import RunConfig, RunError


def param_groups(model: nn.Module, weight_decay: float, lr: float, crf_lr_scale: float) -> list[dict]:
    """AdamW parameter groups: decayed weight matrices, undecayed vectors, CRF scores at ``lr * crf_lr_scale``."""
    decay, no_decay, crf = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("crf.") or ".crf." in name:
            # Not decayed: decay would pull transitions and durations towards uniform.
            crf.append(p)
        else:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
              {"params": no_decay, "weight_decay": 0.0, "lr": lr},
              {"params": crf, "weight_decay": 0.0, "lr": lr * crf_lr_scale}]
    return [g for g in groups if g["params"]]


class _TrainingLoss(nn.Module):
    """``forward`` = the model's training loss, so that DistributedDataParallel wraps that computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, labels, lengths):
        return self.model.loss(features, labels, lengths)


class ModelRun:
    """Training and checkpoints of one model (in one process of a group, if several).

    ``evaluation.evaluate_model`` turns the trained run into test metrics.
    """

    def __init__(self, name: str, config: RunConfig, model_config, meta: dict, data: dict, device: torch.device,
                 progress, processes: Processes = Processes()):
        self.name, self.config, self.record = name, config, config.to_dict()
        self.meta, self.data, self.device, self.progress = meta, data, device, progress
        self.processes = processes
        self.out = config.output_path
        torch.manual_seed(config.seed)
        self.model = build_model(name, model_config, meta).to(device)
        trainable = self.model.trainable and any(p.requires_grad for p in self.model.parameters())
        self.optimizer = torch.optim.AdamW(param_groups(
            self.model, config.weight_decay, config.lr, config.crf_lr_scale), lr=config.lr) if trainable else None
        self.training_loss = _TrainingLoss(self.model)
        if trainable and processes.distributed:
            self.training_loss = nn.parallel.DistributedDataParallel(
                self.training_loss, device_ids=[device.index] if device.type == "cuda" else None)
        self.epoch, self.history, self.best_f1, self.best_epoch, self.train_time = 0, [], -math.inf, None, 0.0
        self.best_state = None  # the best epoch's weights, on the CPU, in every process
        self.results = None
        kind = self.model.feature_kind or config.features  # the oracle reads one-hot bases
        self.train_batches = Batcher(data["train"], kind, config.batch_size, device, processes)
        self.val_batches = Batcher(data["val"], kind, config.batch_size, device, processes)
        self.test_batches = Batcher(data["test"], kind, config.batch_size, device, processes)

    # -- checkpoints --

    def _state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": self.record,
            "model_config": self.model.config.to_dict(),
            "class_names": list(self.meta["class_names"]),
            "epoch": self.epoch,
            "state_dict": self.model.state_dict(),
        }

    def save_last(self, finished: bool) -> None:
        state = self._state()
        state.update(
            optimizer=self.optimizer.state_dict() if self.optimizer else None,
            history=self.history,
            best_val_boundary_f1=self.best_f1 if math.isfinite(self.best_f1) else None,
            best_epoch=self.best_epoch,
            training_time_s=self.train_time,
            finished=finished,
            results=self.results,
        )
        if self.processes.writer:
            save_checkpoint(state, last_path(self.out, self.name))

    def _save_best(self) -> None:
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if not self.processes.writer:
            return
        state = self._state()
        state["val_boundary_f1"] = self.best_f1 if math.isfinite(self.best_f1) else None
        save_checkpoint(state, best_path(self.out, self.name))

    def restore(self, ckpt: dict) -> None:
        """Continue from a last checkpoint (see :func:`checkpoints.check_resume`)."""
        self.model.load_state_dict(ckpt["state_dict"])
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history") or [])
        f1 = ckpt.get("best_val_boundary_f1")
        self.best_f1 = -math.inf if f1 is None else float(f1)
        self.best_epoch = ckpt.get("best_epoch")
        self.train_time = float(ckpt.get("training_time_s") or 0.0)
        if ckpt.get("finished") and self.epoch == self.config.epochs:
            self.results = ckpt.get("results")

    # -- training --

    def _train_epoch(self, epoch: int) -> float:
        model, opt = self.model, self.optimizer
        model.train()
        loss_sum, positions = 0.0, 0
        bar = self.progress(self.train_batches.shuffled(self.config.seed, epoch), total=len(self.train_batches),
                            desc=f"{self.name} epoch {epoch}", leave=False, unit="batch")
        for x, y, lengths, share in bar:
            opt.zero_grad(set_to_none=True)
            loss = self.training_loss(x, y, lengths)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise RunError(
                    f"model {self.name}: the training loss became {value} at epoch {epoch}"
                    f"{f' in process {self.processes.rank}' if self.processes.distributed else ''}; "
                    "rerun with a lower --lr (or --precision fp32 on a GPU) and --overwrite")
            # DDP averages gradients over the ranks; the share makes that average
            # the gradient of the whole batch's mean loss per position.
            (loss * share if self.processes.distributed else loss).backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            opt.step()
            n = int(lengths.sum()) if share > 0 else 0
            loss_sum += value * n
            positions += n
            bar.set_postfix(loss=f"{value:.4f}")
        if self.processes.distributed:
            totals = torch.tensor([loss_sum, positions], dtype=torch.float64, device=self.device)
            torch_dist.all_reduce(totals)
            loss_sum, positions = float(totals[0]), float(totals[1])
        return loss_sum / positions

    def _validate(self, record: dict) -> None:
        preds, loss, _ = predict_split(self.model, self.val_batches)
        scores = metrics.evaluate(self.data["val"].labels, preds, self.meta["class_names"], self.config.max_duration)
        record.update(val_loss=loss, val_loss_per_position=loss, val_boundary_f1=scores["boundary_f1"],
                      val_segment_f1=scores["segment_f1"], val_position_f1_macro=scores["position_f1_macro"])

    def train(self, log) -> None:
        """Train the remaining epochs, validating and checkpointing as the module docstring says."""
        if self.results is not None:
            log(f"{self.name}: finished earlier ({self.epoch} epochs); not retrained")
            return
        if self.optimizer is None:
            self._save_best()
            return
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        epochs = self.progress(range(self.epoch + 1, self.config.epochs + 1), total=self.config.epochs,
                               initial=self.epoch, desc=self.name, unit="epoch")
        for epoch in epochs:
            start = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            record = {"epoch": epoch, "train_loss": train_loss, "train_loss_per_position": train_loss}
            if epoch % self.config.log_every == 0 or epoch == self.config.epochs:
                self._validate(record)
            self.train_time += time.perf_counter() - start
            record["elapsed_s"] = self.train_time
            self.epoch = epoch
            self.history.append(record)
            if "val_boundary_f1" in record:
                # Every process holds the same gathered predictions, so all take the same decision.
                if record["val_boundary_f1"] > self.best_f1:
                    self.best_f1, self.best_epoch = record["val_boundary_f1"], epoch
                    self._save_best()
                log(f"{self.name} epoch {epoch}/{self.config.epochs}: train loss {train_loss:.4f}, "
                    f"val loss {record['val_loss']:.4f}, val boundary F1 {record['val_boundary_f1']:.4f}, "
                    f"val segment F1 {record['val_segment_f1']:.4f}")
            epochs.set_postfix(loss=f"{train_loss:.4f}", best_f1=f"{self.best_f1:.3f}")
            self.save_last(finished=False)
