"""Training one model of the benchmark: optimizer, the training loop, its checkpoints.

AdamW with weight decay on the encoder's and heads' weight matrices only
(none on biases, norms or CRF scores); the CRF layer's own scores --
transitions, durations, initial/final -- at ``--crf-lr-scale`` times the
learning rate, since they are log-scale scores that must travel several nats
while Adam moves a parameter about ``lr`` a step. Gradient-norm clipping.
Each epoch visits the training sequences in an order drawn from
``(seed, epoch)``, so a resumed run repeats the uninterrupted one.
Every parameter group's learning rate follows :func:`control.lr_factor` of
the global step (``--warmup-steps``, ``--lr-schedule``). Validation runs
every ``--log-every`` epochs, after the last and when a model stops early;
the weights with the best validation boundary F1 (earliest on ties) are kept.

A model stops after ``--epochs``, after its ``--step-budget`` or at the
first step past its ``--time-budget`` of training seconds (the epoch in
progress is closed there: its record holds the loss of the steps it made and
a validation), or after ``--patience`` validations without a better boundary
F1. At every step boundary :class:`control.TrainingControl` may ask for a
checkpoint (``--checkpoint-every``) or a stop (``--time-limit``, a signal).

The last checkpoint holds everything the next step depends on -- weights,
optimizer, the position (epoch, step within it, global step, which also fixes
the learning rate), the unfinished epoch's loss sums, the torch RNG states,
history and best-so-far -- so a run resumed from any step boundary computes
bit for bit what the uninterrupted run computes (on the CPU; on a GPU up to
non-deterministic kernels). numpy's and Python's global generators are not
saved: nothing in training draws from them (the batch order has its own
generator seeded by (seed, epoch)).

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
from .control import SIGNAL, Interrupted, TrainingControl, lr_factor
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


def improves(f1: float, loss: float, best_f1: float, best_loss: float) -> bool:
    """Is a validation (boundary F1, loss per position) better than the best so far? The boundary F1
    decides; at an equal F1 (0 for every epoch of a short run, say) the lower validation loss does, so
    the best checkpoint is not simply the first epoch."""
    return f1 > best_f1 or (f1 == best_f1 and loss < best_loss)


class _TrainingLoss(nn.Module):
    """``forward`` = the model's training loss, so that DistributedDataParallel wraps that computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, labels, lengths):
        return self.model.loss(features, labels, lengths)


class ModelRun:
    """Training and checkpoints of one model (in one process of a group, if several).

    Position: ``epoch`` epochs are complete, ``step_in_epoch`` steps of the
    next one are done, ``global_step`` optimizer steps in all.
    ``evaluation.evaluate_model`` turns the trained run into test metrics.
    """

    def __init__(self, name: str, config: RunConfig, model_config, meta: dict, data: dict, device: torch.device,
                 progress, processes: Processes = Processes()):
        self.name, self.config, self.record = name, config, config.to_dict()
        self.meta, self.data, self.device, self.progress = meta, data, device, progress
        self.processes = processes
        self.out = config.output_path
        torch.manual_seed(config.seed)
        self.model = build_model(name, model_config, meta)
        trainable = self.model.trainable and any(p.requires_grad for p in self.model.parameters())
        if trainable:
            self.model.initialise(data["train"])  # a resumed run's checkpoint replaces it (restore)
        self.model.to(device)
        self.optimizer = torch.optim.AdamW(param_groups(
            self.model, config.weight_decay, config.lr, config.crf_lr_scale), lr=config.lr) if trainable else None
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups] if trainable else []
        self.training_loss = _TrainingLoss(self.model)
        if trainable and processes.distributed:
            self.training_loss = nn.parallel.DistributedDataParallel(
                self.training_loss, device_ids=[device.index] if device.type == "cuda" else None)
        kind = self.model.feature_kind or config.features  # the oracle reads one-hot bases
        self.train_batches = Batcher(data["train"], kind, config.batch_size, device, processes)
        self.val_batches = Batcher(data["val"], kind, config.batch_size, device, processes)
        self.test_batches = Batcher(data["test"], kind, config.batch_size, device, processes)
        self.steps_per_epoch = len(self.train_batches)
        self.budget = config.budget(name)
        self.seconds_budget = config.seconds_budget(name)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.epoch_loss = [0.0, 0]  # this process's (sum of loss x positions, positions) of the unfinished epoch
        self.history, self.best_f1, self.best_epoch, self.train_time = [], -math.inf, None, 0.0
        self.bad_validations = 0  # validations since the best one
        self.stopped_by: str | None = None  # "epochs", "step_budget", "time_budget" or "patience" once over
        self.best_state = None  # the best epoch's weights, on the CPU, in every process
        self.results = None
        self.saved_at = time.monotonic()

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
        """Write ``<model>_last.pt`` (every process takes part: the epoch's loss sums are gathered)."""
        partial = self.processes.gather(list(self.epoch_loss))
        state = self._state()
        state.update(
            optimizer=self.optimizer.state_dict() if self.optimizer else None,
            step_in_epoch=self.step_in_epoch,
            global_step=self.global_step,
            epoch_loss=partial,
            rng={"torch": torch.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None},
            history=self.history,
            best_val_boundary_f1=self.best_f1 if math.isfinite(self.best_f1) else None,
            best_epoch=self.best_epoch,
            bad_validations=self.bad_validations,
            training_time_s=self.train_time,
            stopped_by=self.stopped_by,
            finished=finished,
            results=self.results,
        )
        if self.processes.writer:
            save_checkpoint(state, last_path(self.out, self.name))
        self.saved_at = time.monotonic()

    def _save_best(self) -> None:
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if not self.processes.writer:
            return
        state = self._state()
        state["val_boundary_f1"] = self.best_f1 if math.isfinite(self.best_f1) else None
        save_checkpoint(state, best_path(self.out, self.name))

    def restore(self, ckpt: dict) -> None:
        """Continue from a last checkpoint (see :func:`checkpoints.check_resume`).

        Checkpoints of format version 1 (written at epoch ends, without the
        step fields) resume at the start of the next epoch.
        """
        self.model.load_state_dict(ckpt["state_dict"])
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["epoch"])
        self.step_in_epoch = int(ckpt.get("step_in_epoch") or 0)
        self.global_step = int(ckpt.get("global_step", self.epoch * self.steps_per_epoch))
        self.epoch_loss = self._my_epoch_loss(ckpt.get("epoch_loss") or [[0.0, 0]])
        rng = ckpt.get("rng") or {}
        if rng.get("torch") is not None:
            torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.history = list(ckpt.get("history") or [])
        f1 = ckpt.get("best_val_boundary_f1")
        self.best_f1 = -math.inf if f1 is None else float(f1)
        self.best_epoch = ckpt.get("best_epoch")
        self.bad_validations = int(ckpt.get("bad_validations") or 0)
        self.train_time = float(ckpt.get("training_time_s") or 0.0)
        reason = ckpt.get("stopped_by") or ("epochs" if ckpt.get("finished") else None)
        if reason == "epochs" and self.epoch < self.config.epochs:
            reason = None  # --epochs grew: train on
        self.stopped_by = reason
        if reason is not None and ckpt.get("finished"):
            self.results = ckpt.get("results")

    def _my_epoch_loss(self, partial: list) -> list:
        """This process's share of the unfinished epoch's loss sums, saved by rank."""
        if len(partial) == self.processes.world:
            mine = partial[self.processes.rank]
            return [float(mine[0]), int(mine[1])]
        # Another number of processes: only the total matters, so rank 0 carries it.
        if self.processes.rank != 0:
            return [0.0, 0]
        return [float(sum(p[0] for p in partial)), int(sum(p[1] for p in partial))]

    # -- training --

    def train(self, log, control: TrainingControl) -> bool:
        """Train until the model stops (True: evaluate it next) or ``control`` stops the run (False).

        On a signal the last checkpoint is written and :class:`Interrupted` raised.
        """
        if self.results is not None:
            log(f"{self.name}: finished earlier ({self.epoch} epochs, {self.global_step} steps, stopped by "
                f"{self.stopped_by}); not retrained")
            return True
        if self.optimizer is None:
            self._save_best()
            return True
        if self.stopped_by is not None:
            return True  # trained earlier; the evaluation did not finish
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        epochs = self.progress(None, total=self.config.epochs, initial=self.epoch, desc=self.name, unit="epoch")
        control.deferring = True
        try:
            while (reason := self._stop_reason()) is None:
                if not self._train_epoch(self.epoch + 1, control, log):
                    return False
                epochs.update(self.epoch - epochs.n)
                if self.history:  # empty when --step-budget ended the first epoch (_stop closes it)
                    epochs.set_postfix(loss=f"{self.history[-1]['train_loss']:.4f}", best_f1=f"{self.best_f1:.3f}")
            self._stop(reason, log)
            return True
        finally:
            control.deferring = False
            epochs.close()

    def _budget_spent(self) -> str | None:
        """"step_budget" or "time_budget" once that budget of this model is spent, else None."""
        if self.budget is not None and self.global_step >= self.budget:
            return "step_budget"
        if self.seconds_budget is not None and self.train_time >= self.seconds_budget:
            return "time_budget"
        return None

    def _stop_reason(self) -> str | None:
        if self.epoch >= self.config.epochs:
            return "epochs"
        if self.stopped_by is not None:
            return self.stopped_by
        return self._budget_spent()

    def _train_epoch(self, epoch: int, control: TrainingControl, log) -> bool:
        """The rest of epoch ``epoch``; False when ``control`` stopped the run at a step boundary."""
        self.model.train()
        batches = self.train_batches.shuffled(self.config.seed, epoch, start=self.step_in_epoch)
        bar = self.progress(batches, total=self.steps_per_epoch, initial=self.step_in_epoch,
                            desc=f"{self.name} epoch {epoch}", leave=False, unit="batch")
        try:
            since = time.perf_counter()
            for x, y, lengths, share in bar:
                value = self._step(x, y, lengths, share, epoch)
                control.steps_done += 1
                now = time.perf_counter()
                self.train_time += now - since  # waiting for the batch included
                since = now
                bar.set_postfix(loss=f"{value:.4f}")
                if self.step_in_epoch == self.steps_per_epoch:
                    break
                if self._budget_spent():
                    return True  # the epoch is closed by _stop
                if not self._at_boundary(control, saved=False):
                    return False
        finally:
            bar.close()
            batches.close()
        self._end_epoch(epoch, log)
        return self._stop_reason() is not None or self._at_boundary(control, saved=True)

    def _step(self, x, y, lengths, share: float, epoch: int) -> float:
        """One optimizer step on a batch (B, T, D), (B, T), (B,); returns its mean loss per position."""
        opt, config = self.optimizer, self.config
        factor = lr_factor(self.global_step, config.epochs * self.steps_per_epoch, config.warmup_steps,
                           config.lr_schedule, config.min_lr_ratio)
        for group, base in zip(opt.param_groups, self.base_lrs):
            group["lr"] = base * factor
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
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        opt.step()
        n = int(lengths.sum()) if share > 0 else 0
        self.epoch_loss[0] += value * n
        self.epoch_loss[1] += n
        self.step_in_epoch += 1
        self.global_step += 1
        return value

    def _at_boundary(self, control: TrainingControl, saved: bool) -> bool:
        """Checkpoint if due, and whether to go on; ``saved``: the last checkpoint is this step's."""
        stop, due = control.poll(self.saved_at)
        if (stop or due) and not saved:
            self.save_last(finished=False)
        if stop == SIGNAL:
            raise Interrupted(control.signum, f"{self.name} saved at {self.position()}")
        return stop is None

    def position(self) -> str:
        """Where training stands, for messages."""
        if self.step_in_epoch:
            return (f"epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch} "
                    f"({self.global_step} steps)")
        return f"the end of epoch {self.epoch} ({self.global_step} steps)"

    def _end_epoch(self, epoch: int, log) -> None:
        """Record epoch ``epoch`` (complete, or cut short by the step budget), validate if due, checkpoint."""
        loss_sum, positions = self.epoch_loss
        if self.processes.distributed:
            totals = torch.tensor([loss_sum, positions], dtype=torch.float64, device=self.device)
            torch_dist.all_reduce(totals)
            loss_sum, positions = float(totals[0]), float(totals[1])
        train_loss = loss_sum / positions
        record = {"epoch": epoch, "train_loss": train_loss, "train_loss_per_position": train_loss,
                  "steps": self.global_step}
        self.epoch, self.step_in_epoch, self.epoch_loss = epoch, 0, [0.0, 0]
        self.history.append(record)
        if epoch % self.config.log_every == 0 or epoch == self.config.epochs or self._budget_spent():
            self._validate(record, log)
        record["elapsed_s"] = self.train_time
        self.save_last(finished=False)

    def _validate(self, record: dict, log) -> None:
        """Validate into ``record`` (the latest epoch's); keep the best weights; count towards --patience."""
        start = time.perf_counter()
        preds, loss, _ = predict_split(self.model, self.val_batches)
        scores = metrics.evaluate(self.data["val"].labels, preds, self.meta["class_names"], self.config.max_duration)
        record.update(val_loss=loss, val_loss_per_position=loss, val_boundary_f1=scores["boundary_f1"],
                      val_segment_f1=scores["segment_f1"], val_position_f1_macro=scores["position_f1_macro"])
        self.train_time += time.perf_counter() - start
        # Every process holds the same gathered predictions, so all take the same decision.
        best_loss = next((r["val_loss"] for r in self.history if r["epoch"] == self.best_epoch and "val_loss" in r),
                         math.inf)
        if improves(record["val_boundary_f1"], loss, self.best_f1, best_loss):
            self.best_f1, self.best_epoch, self.bad_validations = record["val_boundary_f1"], self.epoch, 0
            self._save_best()
        else:
            self.bad_validations += 1
            if self.config.patience is not None and self.bad_validations >= self.config.patience:
                self.stopped_by = "patience"
        log(f"{self.name} epoch {self.epoch}/{self.config.epochs}: train loss {record['train_loss']:.4f}, "
            f"val loss {record['val_loss']:.4f}, val boundary F1 {record['val_boundary_f1']:.4f}, "
            f"val segment F1 {record['val_segment_f1']:.4f}")

    def _stop(self, reason: str, log) -> None:
        """End training for ``reason``: close an epoch cut short, validate the last record if it was not."""
        if self.step_in_epoch > 0:
            self._end_epoch(self.epoch + 1, log)
        elif self.history and "val_boundary_f1" not in self.history[-1]:
            self._validate(self.history[-1], log)
            self.history[-1]["elapsed_s"] = self.train_time
            self.save_last(finished=False)
        self.stopped_by = reason
        if reason != "epochs":
            why = {"step_budget": "its --step-budget", "time_budget": "its --time-budget"}.get(reason, "--patience")
            log(f"{self.name}: stopped by {why} after {self.global_step} steps ({self.epoch} epochs, "
                f"{self.train_time:.0f} s of training)")
