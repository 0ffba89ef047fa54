"""Several processes under torchrun: where this process stands, the checks, the process group.

One process per GPU (NCCL) or per CPU process (gloo). Refused before any
process group is formed: more processes than training sequences or than
``--batch-size``, and more processes per host than GPUs. torchrun stops the
other processes with SIGTERM when one fails; each then exits through
Python's unwinding so that a file being written removes its temporary.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from .run_config import RunConfig, RunError


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a (torchrun) group: rank, world size, local rank."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Rank 0 alone writes files and logs."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Processes":
        """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (one process when they are absent)."""
        values = {}
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            text = os.environ.get(key)
            try:
                values[key] = None if text is None else int(text)
            except ValueError:
                raise RunError(f"environment variable {key}={text!r} is not an integer; start several "
                               "processes with torchrun, which sets it") from None
        world = values["WORLD_SIZE"] or 1
        rank = values["RANK"] or 0
        local = values["LOCAL_RANK"] if values["LOCAL_RANK"] is not None else rank
        if world < 1 or not 0 <= rank < world or local < 0:
            raise RunError(f"inconsistent process group: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}; "
                           "start several processes with torchrun")
        return cls(rank, world, local)

    def device(self, kind: str) -> torch.device:
        """This process's device for ``--device kind``."""
        return torch.device(kind, self.local_rank) if kind == "cuda" else torch.device("cpu")

    # -- collectives (no-ops in one process) --

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()


def check_processes(processes: Processes, config: RunConfig, num_train: int) -> None:
    """Refuse a process group that the data, the batch or the GPUs cannot feed."""
    world = processes.world
    if not processes.distributed:
        return
    if world > num_train:
        raise RunError(f"torchrun started {world} processes but the training split has only {num_train} sequences; "
                       f"start at most {num_train} (--nproc_per_node) or use more training data (--max-train)")
    if world > config.batch_size:
        raise RunError(f"--batch-size {config.batch_size} is the global batch, split across the {world} processes; "
                       f"give --batch-size >= {world} or start fewer processes")
    if config.device == "cuda":
        gpus = torch.cuda.device_count()
        if processes.local_rank >= gpus:
            raise RunError(f"process {processes.rank} is local rank {processes.local_rank} but this host has "
                           f"{gpus} GPU(s); start at most {gpus} processes per host (--nproc_per_node {gpus})")


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextmanager
def process_group(processes: Processes, device: torch.device):
    """Form the process group (several processes) for the block; nothing in one process."""
    if not processes.distributed:
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch_dist.init_process_group("nccl", device_id=device)
    else:
        torch_dist.init_process_group("gloo")
    try:
        # Every process has checked the inputs (and the output directory) before rank 0 writes anything.
        processes.barrier()
        yield
    finally:
        torch_dist.destroy_process_group()
