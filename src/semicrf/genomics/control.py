"""What decides how far one invocation of ``run`` trains: the learning-rate schedule, the
time limit, the mid-epoch checkpoint timer and stop signals.

A long run on a lent machine is trained in several invocations, each ending
at an optimizer-step boundary with a last checkpoint from which ``--resume``
continues exactly (same batches, same learning rates, same RNG state).

- :func:`lr_factor`: the factor every parameter group's base learning rate
  is multiplied by at a global step: a linear warm-up over the first
  ``--warmup-steps`` steps, then constant or a cosine decay that reaches
  ``--min-lr-ratio`` at the last step of ``--epochs``.
- :class:`TrainingControl`: asked at every step boundary whether to write a
  checkpoint now (``--checkpoint-every`` seconds since the last one) and
  whether to stop (``--time-limit`` seconds of this invocation spent, or
  SIGTERM / SIGINT received). Under several processes the answer is agreed
  on by all of them (a maximum over the ranks), so they stop at the same step.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager

import torch
import torch.distributed as torch_dist

from .distributed import Processes
from .run_config import LR_SCHEDULES
TIME_LIMIT, SIGNAL = "time_limit", "signal"


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str, min_ratio: float) -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based) of ``total_steps``.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps``
    steps (the last of them at exactly 1). Then ``constant``: 1; ``cosine``:
    ``min_ratio + (1 - min_ratio) (1 + cos(pi t)) / 2`` with ``t`` going from 0
    at the first step after the warm-up to 1 at step ``total_steps - 1``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    span = total_steps - 1 - warmup_steps
    t = 1.0 if span <= 0 else min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


class Interrupted(Exception):
    """Training stopped at a step boundary on a signal, after writing the last checkpoint."""

    def __init__(self, signum: int, where: str = ""):
        super().__init__(f"stopped by {signal.Signals(signum).name}{f'; {where}' if where else ''}")
        self.signum = signum


class TrainingControl:
    """The step-boundary decisions of one invocation (see the module docstring).

    ``time_limit``, ``checkpoint_every``: seconds (None: no limit).
    ``steps_done`` counts this invocation's optimizer steps: the time limit
    stops a run only after it has made at least one, so every invocation
    makes progress.
    """

    def __init__(self, time_limit: float | None, checkpoint_every: float, processes: Processes = Processes(),
                 device: torch.device = torch.device("cpu"), started: float | None = None):
        self.started = time.monotonic() if started is None else started
        self.time_limit, self.checkpoint_every = time_limit, checkpoint_every
        self.processes, self.device = processes, device
        self.steps_done = 0
        self.signum: int | None = None
        self.deferring = False  # True while a signal can wait for the next step boundary

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_up(self) -> bool:
        return self.time_limit is not None and self.steps_done > 0 and self.elapsed() >= self.time_limit

    def poll(self, last_saved: float) -> tuple[str | None, bool]:
        """(why to stop now or None, whether a checkpoint is due), the same in every process."""
        flags = [self.time_up(), self.signum or 0, time.monotonic() - last_saved >= self.checkpoint_every]
        if self.processes.distributed:
            t = torch.tensor([float(f) for f in flags], device=self.device)
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
            flags = [bool(t[0]), int(t[1]), bool(t[2])]
            if flags[1] and self.signum is None:
                self.signum = flags[1]
        stop = SIGNAL if flags[1] else TIME_LIMIT if flags[0] else None
        return stop, bool(flags[2])

    def stop_between_models(self, next_model: str) -> bool:
        """Whether the time limit stops the run before ``next_model`` (agreed by every process).

        A signal received since the last step boundary (during a validation
        or an evaluation) raises :class:`Interrupted` here.
        """
        stop, _ = self.poll(time.monotonic())
        if stop == SIGNAL:
            raise Interrupted(self.signum, f"{next_model} and the models after it not started")
        return stop is not None

    @contextmanager
    def signals(self):
        """For the block, SIGTERM and SIGINT wait for the next step boundary while training.

        Outside training (loading, evaluating, writing), and at a second
        signal, the process exits at once with status 128 + signal number;
        files are replaced atomically, so the last checkpoint stays whole.
        Only in one process, from the main thread: under torchrun a signal
        usually means a peer died, and no collective could complete.
        """
        if self.processes.distributed or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.deferring and self.signum is None:
                self.signum = signum
                return
            raise SystemExit(128 + signum)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
