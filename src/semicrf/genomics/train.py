"""The ``run`` command: train the benchmark models, evaluate them, write the results.

Output directory (``--output-dir``)::

    metrics.json                 per-model test metrics, the run's config, versions
    duration_comparison.png      true vs predicted segment durations (and learned priors)
    training_curves.png          training loss and validation F1 per model
    checkpoints/<model>_best.pt  weights at the best validation boundary F1
    checkpoints/<model>_last.pt  weights + optimizer after the latest epoch (for --resume)
    predictions/<model>.gff3     the model's test-split predictions as gene models
    predictions/<model>.bed

Training: AdamW (weight decay on the encoder's and heads' weight matrices
only; none on biases, norms or CRF scores; the CRF layer's own scores --
transitions, durations, initial/final -- at ``--crf-lr-scale`` times the
learning rate, since they are log-scale scores that must travel several nats
while Adam moves a parameter about ``lr`` a step), gradient-norm clipping, bfloat16
autocast for the encoder on CUDA. Each epoch visits the training sequences in
an order drawn from ``(seed, epoch)``, so a resumed run repeats the
uninterrupted one. Validation runs every ``--log-every`` epochs and after the
last; the checkpoint with the best validation boundary F1 (earliest on ties)
gives the test metrics.

Every input is checked before anything is written.

Several processes (``torchrun --nproc_per_node=N ... run ...``): the run
trains with DistributedDataParallel, one process per GPU (NCCL) or per CPU
process (gloo). ``--batch-size`` stays the global batch: each batch of the
one-process order is split across the processes (sequence ``i`` of a batch
goes to rank ``i mod N``), every process scales its loss so that the
gradients DDP averages are exactly those of the whole batch's mean loss per
position, and every optimizer step therefore equals the one-process step up
to the order of floating-point additions. Validation and test predictions are
sharded over the processes and gathered, every process takes the same
best-epoch decision, and only rank 0 writes files. Refused before any process
group is formed: more processes than training sequences or than
``--batch-size``, and more processes per host than GPUs. If one process
fails, torchrun stops the others; files are replaced atomically, so what is on
disk is the last complete state.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

from .. import __version__
from . import dataset, features, formats, metrics, plots
from .encoders import ENCODER_KINDS, EncoderUnavailable, build_encoder, encoder_available
from .models import DEFAULT_MODELS, ModelConfig, available_models, build_model, parse_model_list
from .segments import segment_durations

RESULTS_FORMAT = "semicrf-benchmark-results"
CHECKPOINT_FORMAT = "semicrf-benchmark-checkpoint"
FORMAT_VERSION = 1
METRICS_FILE = "metrics.json"
DURATION_PLOT = "duration_comparison.png"
CURVES_PLOT = "training_curves.png"
BACKEND_CHOICES = ("streaming", "auto", "cpu", "reference", "triton")
# Settings that change what a checkpoint's training computes; --resume refuses to mix them.
IDENTITY_KEYS = ("data", "encoder", "features", "max_duration", "hidden_dim", "num_layers", "batch_size", "lr",
                 "crf_lr_scale", "weight_decay", "grad_clip", "seed", "log_every", "max_train", "max_val", "max_test", "precision")


class RunError(ValueError):
    """A ``run`` input that cannot be used; the message says what to change."""


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


# ----------------------------------------------------------------------------
# command line


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every ``run`` flag to ``parser``."""
    p = parser
    p.add_argument("--data-dir", required=True, help="data set written by the generate command")
    p.add_argument("--output-dir", required=True, help="results directory (new or empty, or see --resume / --overwrite)")
    p.add_argument("--encoder", default="mamba", choices=ENCODER_KINDS,
                   help="shared encoder: mamba (needs mamba-ssm and a GPU), mamba_stub (pure PyTorch), bilstm")
    p.add_argument("--features", default="onehot", choices=features.FEATURE_KINDS, help="input features")
    p.add_argument("--max-duration", type=int, default=1000, help="longest segment K of the semi-CRF models")
    p.add_argument("--hidden-dim", type=int, default=256, help="encoder width")
    p.add_argument("--num-layers", type=int, default=4, help="encoder layers")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per batch")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--crf-lr-scale", type=float, default=20.0,
                   help="learning rate of the CRF layers' transition, duration and start/end scores, as a multiple "
                        "of --lr (they are log-scale scores that must move several nats)")
    p.add_argument("--epochs", type=int, default=100, help="training epochs per model")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where to train")
    p.add_argument("--log-every", type=int, default=10, help="validate (and log) every N epochs, and after the last")
    p.add_argument("--backend", default="streaming", choices=BACKEND_CHOICES,
                   help="semi-CRF backend; streaming = auto (Triton on a GPU when usable, else the compiled CPU one)")
    p.add_argument("--no-triton", action="store_true", help="never use the Triton backend (auto -> cpu)")
    p.add_argument("--models", default="all",
                   help=f"comma-separated subset of {','.join(available_models())}, or 'all' "
                        f"({','.join(DEFAULT_MODELS)})")
    p.add_argument("--seed", type=int, default=42, help="seed of weight initialisation and batch order")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --output-dir from its last checkpoints")
    p.add_argument("--overwrite", action="store_true", help="delete the results of an earlier run in --output-dir")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (weight matrices only)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient norm to this (0: no clipping)")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                   help="encoder precision on CUDA (the CRF layers always run in float32/64)")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training sequences")
    p.add_argument("--max-val", type=int, default=None, help="use only the first N validation sequences")
    p.add_argument("--max-test", type=int, default=None, help="use only the first N test sequences")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: its own choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def add_run_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="train and evaluate the benchmark models",
        description="Train softmax, pytorch-crf, linear, semicrf and semicrf_uniform on one shared encoder "
        "architecture, evaluate them and the oracle (the true generating model, no training) on the test split, "
        "and write metrics, figures, checkpoints and predictions.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(p)
    p.set_defaults(func=run_main)
    return p


# ----------------------------------------------------------------------------
# validation


def _check_int(name: str, value, minimum: int = 1, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RunError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_float(name: str, value, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (value <= 0 if positive else value < 0):
        raise RunError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def resolve_backend(backend: str, no_triton: bool) -> str:
    """The engine backend name for ``--backend`` and ``--no-triton``."""
    name = "auto" if backend == "streaming" else backend
    if no_triton:
        if name == "triton":
            raise RunError("--backend triton contradicts --no-triton; drop one of them")
        if name == "auto":
            name = "cpu"
    return name


def _validate_args(args) -> dict:
    """Numbers, names and the device; returns the normalised settings."""
    _check_int("--max-duration", args.max_duration)
    _check_int("--hidden-dim", args.hidden_dim)
    _check_int("--num-layers", args.num_layers)
    _check_int("--batch-size", args.batch_size)
    _check_int("--epochs", args.epochs)
    _check_int("--log-every", args.log_every)
    _check_int("--seed", args.seed, minimum=0)
    for flag, value in (("--max-train", args.max_train), ("--max-val", args.max_val), ("--max-test", args.max_test)):
        _check_int(flag, value, allow_none=True)
    _check_int("--threads", args.threads, allow_none=True)
    _check_float("--lr", args.lr, positive=True)
    _check_float("--weight-decay", args.weight_decay, positive=False)
    _check_float("--crf-lr-scale", args.crf_lr_scale, positive=True)
    _check_float("--grad-clip", args.grad_clip, positive=False)
    if args.resume and args.overwrite:
        raise RunError("--resume and --overwrite contradict each other: --resume continues the earlier run, "
                       "--overwrite deletes it; give one")
    if args.features not in features.FEATURE_KINDS:
        raise RunError(f"--features must be one of {features.FEATURE_KINDS}, got {args.features!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RunError("--device cuda was asked for but no CUDA GPU is available here; use --device cpu "
                       "(with --encoder mamba_stub or bilstm)")
    try:
        models = parse_model_list(args.models)
    except ValueError as e:
        raise RunError(str(e)) from None
    backend = resolve_backend(args.backend, args.no_triton)
    if backend == "triton" and args.device != "cuda":
        raise RunError("--backend triton runs on a GPU only; with --device cpu use --backend streaming or cpu")
    if args.encoder == "mamba" and args.device != "cuda":
        raise RunError("--encoder mamba runs only on a CUDA GPU (--device cuda); with --device cpu use "
                       "--encoder mamba_stub (the same layer structure in pure PyTorch) or --encoder bilstm")
    try:
        encoder_available(args.encoder)
    except EncoderUnavailable as e:
        raise RunError(str(e)) from None
    try:
        # Build the encoder once so that an unusable size is reported now, not after data loading.
        build_encoder(args.encoder, features.feature_dim(args.features), args.hidden_dim, 1)
    except ValueError as e:
        raise RunError(f"--encoder {args.encoder} with --features {args.features} and --hidden-dim "
                       f"{args.hidden_dim}: {e}") from None
    for module, package in (("matplotlib", "matplotlib"), ("tqdm", "tqdm")):
        try:
            __import__(module)
        except ImportError:
            raise RunError(f"the run command needs {package} (figures, progress bars): "
                           "pip install 'semicrf[genomics]'") from None
    if "pytorch-crf" in models:
        try:
            import torchcrf  # noqa: F401
        except ImportError:
            raise RunError("model pytorch-crf needs the pytorch-crf package: pip install pytorch-crf==0.7.2 "
                           "(or leave it out of --models)") from None
    return {"models": models, "backend": backend}


def _load_data(args):
    meta = dataset.load_metadata(args.data_dir)
    splits = {}
    for split, limit in (("train", args.max_train), ("val", args.max_val), ("test", args.max_test)):
        if split not in meta["splits"]:
            raise dataset.DataError(f"{args.data_dir} has no {split} split; generate a data set with train, val and "
                                    "test splits")
        data = dataset.load_split(args.data_dir, split)
        if limit is not None:
            data = dataset.Split(data.sequences[:limit], data.labels[:limit], data.names[:limit])
        if len(data) == 0:
            raise dataset.DataError(f"the {split} split of {args.data_dir} has no sequences; the benchmark needs "
                                    f"at least one (generate with --num-{split} >= 1)")
        splits[split] = data
    return meta, splits


def data_fingerprint(meta: dict) -> str:
    """A short hash of what defines a data set (generator config, seed, split sizes, classes)."""
    key = {k: meta.get(k) for k in ("config", "seed", "splits", "class_names")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_config(args, settings: dict, meta: dict) -> dict:
    """The run's settings as recorded in checkpoints and metrics.json."""
    return {
        "data": data_fingerprint(meta),
        "data_dir": str(Path(args.data_dir).resolve()),
        "encoder": args.encoder,
        "features": args.features,
        "max_duration": args.max_duration,
        "hidden_dim": args.hidden_dim,
        "num_layers": args.num_layers,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "crf_lr_scale": args.crf_lr_scale,
        "weight_decay": args.weight_decay,
        "grad_clip": args.grad_clip,
        "epochs": args.epochs,
        "seed": args.seed,
        "log_every": args.log_every,
        "max_train": args.max_train,
        "max_val": args.max_val,
        "max_test": args.max_test,
        "precision": args.precision,
        "device": args.device,
        "backend": args.backend,
        "engine_backend": settings["backend"],
        "engine_backend_resolved": _resolved_backend(settings["backend"], args.device),
        "no_triton": bool(args.no_triton),
        "models": settings["models"],
    }


def _resolved_backend(name: str, device: str) -> str:
    """The engine backend that ``name`` selects on ``device`` (what "auto" becomes)."""
    from ..backends import resolve

    return resolve(name, device)


def _known_outputs(out: Path) -> list[Path]:
    names = set(available_models())
    paths = [out / METRICS_FILE, out / DURATION_PLOT, out / CURVES_PLOT]
    for m in names:
        paths += [out / "checkpoints" / f"{m}_best.pt", out / "checkpoints" / f"{m}_last.pt",
                  out / "predictions" / f"{m}.gff3", out / "predictions" / f"{m}.bed"]
    return paths


def _load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise RunError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}); "
                       "use --overwrite to start afresh") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a checkpoint of this benchmark; use --overwrite to start afresh")
    return ckpt


def _check_resume(out: Path, config: dict, models: list[str]) -> dict[str, dict]:
    """The last checkpoints to resume from, each checked against ``config``."""
    found = {}
    for m in models:
        path = out / "checkpoints" / f"{m}_last.pt"
        if not path.exists():
            continue
        ckpt = _load_checkpoint(path)
        old = ckpt.get("config", {})
        diff = [k for k in IDENTITY_KEYS if old.get(k) != config[k]]
        if diff:
            detail = ", ".join(f"{k}: checkpoint {old.get(k)!r} vs now {config[k]!r}" for k in diff)
            raise RunError(f"--resume: {path} was trained with other settings ({detail}); rerun with the "
                           "checkpoint's settings, or use --overwrite to start afresh")
        if ckpt["epoch"] > config["epochs"]:
            raise RunError(f"--resume: {path} has already trained {ckpt['epoch']} epochs, more than --epochs "
                           f"{config['epochs']}; give --epochs >= {ckpt['epoch']} or use --overwrite")
        found[m] = ckpt
    return found


def _prepare_output(args, config: dict, models: list[str]) -> dict[str, dict]:
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise RunError(f"--output-dir {out} exists and is not a directory; choose another path")
    nonempty = out.is_dir() and any(out.iterdir())
    resumable = {}
    if nonempty and not (args.resume or args.overwrite):
        raise RunError(f"--output-dir {out} is not empty; use --resume to continue the run there, "
                       "--overwrite to replace its results, or choose another directory")
    if args.resume and nonempty:
        resumable = _check_resume(out, config, models)
    return resumable


# ----------------------------------------------------------------------------
# batches


class Batcher:
    """Padded batches of one split: features (B, T, D) float32, labels (B, T) int64, lengths (B,).

    Features are computed per batch (k-mer features of a whole split would not
    fit in memory) in a background thread, a couple of batches ahead of the
    model.

    With ``processes`` of several ranks, each global batch (``batch_size``
    sequences, in the one-process order) is split: this rank takes every
    ``world``-th sequence of it, starting at its rank.
    """

    def __init__(self, split: dataset.Split, feature_kind: str, batch_size: int, device: torch.device,
                 processes: Processes = Processes()):
        self.split, self.kind, self.batch_size, self.device = split, feature_kind, batch_size, device
        self.processes = processes
        self.lengths = np.array([len(s) for s in split.sequences], dtype=np.int64)
        self.dim = features.feature_dim(feature_kind)

    def _host_batch(self, index: np.ndarray):
        lengths = self.lengths[index]
        total = int(lengths.max())
        x = np.zeros((len(index), total, self.dim), dtype=np.float32)
        y = np.zeros((len(index), total), dtype=np.int64)
        for row, i in enumerate(index):
            n = lengths[row]
            x[row, :n] = features.encode(self.split.sequences[i], self.kind)
            y[row, :n] = self.split.labels[i]
        return index, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths)

    def _batches(self, indices: list[np.ndarray]):
        for index, x, y, lengths in _prefetched(map(self._host_batch, indices)):
            yield index, (x.to(self.device), y.to(self.device), lengths.to(self.device))

    def shuffled(self, seed: int, epoch: int):
        """This rank's part of each batch, in an order drawn from (seed, epoch).

        Yields (features, labels, lengths, share): ``share`` = this rank's
        positions x world / the global batch's positions, the factor that
        turns this rank's mean loss per position into its part of the global
        batch's mean under DDP's gradient averaging (1.0 in one process). A
        rank left without a sequence in a short last batch gets the batch's
        first sequence with share 0, so that it still joins the step.
        """
        rank, world = self.processes.rank, self.processes.world
        order = np.random.default_rng([seed, epoch]).permutation(len(self.lengths))
        parts, shares = [], []
        for s in range(0, len(order), self.batch_size):
            batch = order[s:s + self.batch_size]
            mine = batch[rank::world]
            if len(mine):
                parts.append(mine)
                shares.append(float(self.lengths[mine].sum()) * world / float(self.lengths[batch].sum()))
            else:
                parts.append(batch[:1])
                shares.append(0.0)
        for share, (_, batch) in zip(shares, self._batches(parts)):
            yield (*batch, share)

    def in_length_order(self):
        """(index, batch) pairs over this rank's shard of the split, longest first (little padding).

        The shard is every ``world``-th sequence in length order, in batches
        of ``ceil(batch_size / world)``: together the ranks hold as many
        sequences at once as one process would.
        """
        rank, world = self.processes.rank, self.processes.world
        order = np.argsort(-self.lengths, kind="stable")[rank::world]
        size = -(-self.batch_size // world)
        return self._batches([order[s:s + size] for s in range(0, len(order), size)])

    def __len__(self):
        return -(-len(self.lengths) // self.batch_size)


def _prefetched(items, depth: int = 2):
    """Iterate ``items`` while a background thread computes up to ``depth`` of them ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item = done
        except BaseException as e:  # handed to the consumer, which raises it
            item = e
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_split(model, batcher: Batcher, with_loss: bool = True):
    """(predicted labels per sequence, mean loss per position or None, seconds spent in the model).

    With several processes each predicts its shard (:meth:`Batcher.in_length_order`)
    and every process returns the gathered whole; the seconds are the slowest
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


# ----------------------------------------------------------------------------
# training one model


def _param_groups(model, weight_decay: float, lr: float, crf_lr_scale: float):
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


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    # ru_maxrss is in KiB on Linux, bytes on macOS; process-wide and never decreasing.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_max_rss"


def _save(obj, path: Path) -> None:
    with formats.atomic_output(path, "wb") as f:
        torch.save(obj, f)


class _TrainingLoss(nn.Module):
    """``forward`` = the model's training loss, so that DistributedDataParallel wraps that computation."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features, labels, lengths):
        return self.model.loss(features, labels, lengths)


class ModelRun:
    """Training, checkpointing and evaluation of one model (in one process of a group, if several)."""

    def __init__(self, name, args, config, model_config, meta, data, device, out, progress,
                 processes: Processes = Processes()):
        self.name, self.args, self.config = name, args, config
        self.meta, self.data, self.device, self.out, self.progress = meta, data, device, out, progress
        self.processes = processes
        torch.manual_seed(args.seed)
        self.model = build_model(name, model_config, meta).to(device)
        trainable = self.model.trainable and any(p.requires_grad for p in self.model.parameters())
        self.optimizer = torch.optim.AdamW(_param_groups(
            self.model, args.weight_decay, args.lr, args.crf_lr_scale), lr=args.lr) \
            if trainable else None
        self.training_loss = _TrainingLoss(self.model)
        if trainable and processes.distributed:
            self.training_loss = nn.parallel.DistributedDataParallel(
                self.training_loss, device_ids=[device.index] if device.type == "cuda" else None)
        self.epoch, self.history, self.best_f1, self.best_epoch, self.train_time = 0, [], -math.inf, None, 0.0
        self.best_state = None  # the best epoch's weights, on the CPU, in every process
        self.results = None
        self.ckpt_dir = out / "checkpoints"
        kind = self.model.feature_kind or args.features  # the oracle reads one-hot bases
        self.train_batches = Batcher(data["train"], kind, args.batch_size, device, processes)
        self.val_batches = Batcher(data["val"], kind, args.batch_size, device, processes)
        self.test_batches = Batcher(data["test"], kind, args.batch_size, device, processes)

    # -- checkpoints --

    def _state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": self.config,
            "model_config": self.model.config.to_dict(),
            "class_names": list(self.meta["class_names"]),
            "epoch": self.epoch,
            "state_dict": self.model.state_dict(),
        }

    def _save_last(self, finished: bool) -> None:
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
            _save(state, self.ckpt_dir / f"{self.name}_last.pt")

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["state_dict"])
        if self.optimizer is not None and ckpt.get("optimizer"):
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.epoch = int(ckpt["epoch"])
        self.history = list(ckpt.get("history") or [])
        f1 = ckpt.get("best_val_boundary_f1")
        self.best_f1 = -math.inf if f1 is None else float(f1)
        self.best_epoch = ckpt.get("best_epoch")
        self.train_time = float(ckpt.get("training_time_s") or 0.0)
        if ckpt.get("finished") and self.epoch == self.args.epochs:
            self.results = ckpt.get("results")

    # -- training --

    def _train_epoch(self, epoch: int) -> float:
        model, opt = self.model, self.optimizer
        model.train()
        loss_sum, positions = 0.0, 0
        bar = self.progress(self.train_batches.shuffled(self.args.seed, epoch), total=len(self.train_batches),
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
            if self.args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.args.grad_clip)
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
        scores = metrics.evaluate(self.data["val"].labels, preds, self.meta["class_names"], self.args.max_duration)
        record.update(val_loss=loss, val_loss_per_position=loss, val_boundary_f1=scores["boundary_f1"],
                      val_segment_f1=scores["segment_f1"], val_position_f1_macro=scores["position_f1_macro"])

    def train(self, log) -> None:
        if self.results is not None:
            log(f"{self.name}: finished earlier ({self.epoch} epochs); not retrained")
            return
        if self.optimizer is None:
            self._save_best()
            return
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        epochs = self.progress(range(self.epoch + 1, self.args.epochs + 1), total=self.args.epochs,
                               initial=self.epoch, desc=self.name, unit="epoch")
        for epoch in epochs:
            start = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            record = {"epoch": epoch, "train_loss": train_loss, "train_loss_per_position": train_loss}
            if epoch % self.args.log_every == 0 or epoch == self.args.epochs:
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
                log(f"{self.name} epoch {epoch}/{self.args.epochs}: train loss {train_loss:.4f}, "
                    f"val loss {record['val_loss']:.4f}, val boundary F1 {record['val_boundary_f1']:.4f}, "
                    f"val segment F1 {record['val_segment_f1']:.4f}")
            epochs.set_postfix(loss=f"{train_loss:.4f}", best_f1=f"{self.best_f1:.3f}")
            self._save_last(finished=False)

    def _save_best(self) -> None:
        self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if not self.processes.writer:
            return
        state = self._state()
        state["val_boundary_f1"] = self.best_f1 if math.isfinite(self.best_f1) else None
        _save(state, self.ckpt_dir / f"{self.name}_best.pt")

    # -- evaluation --

    def evaluate(self, log) -> dict:
        if self.results is not None:
            return self.results
        # A copy holds the best weights, so the last checkpoint keeps the last
        # epoch's weights (a later --resume with more epochs continues from them).
        model = copy.deepcopy(self.model)
        best = self.best_state
        if best is None:  # a resumed run whose best epoch came before the interruption
            best = _load_checkpoint(self.ckpt_dir / f"{self.name}_best.pt")["state_dict"]
        model.load_state_dict(best)
        preds, _, seconds = predict_split(model, self.test_batches, with_loss=False)
        test = self.data["test"]
        K = self.args.max_duration
        scores = metrics.evaluate(test.labels, preds, self.meta["class_names"], K)
        # The largest of the processes' peaks: what one GPU (or process) had to hold.
        peak, peak_source = max(self.processes.gather(_peak_memory_mb(self.device)))
        positions = int(self.test_batches.lengths.sum())
        scores.update(
            training_time_s=self.train_time,
            time_per_epoch_s=self.train_time / self.epoch if self.epoch else None,
            inference_time_s=seconds,
            inference_throughput=positions / seconds if seconds > 0 else None,
            peak_memory_mb=peak,
            peak_memory_source=peak_source,
            epochs_trained=self.epoch,
            best_epoch=self.best_epoch,
            best_val_boundary_f1=self.best_f1 if math.isfinite(self.best_f1) else None,
            num_parameters=int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            max_duration=model.max_duration,
            description=model.description,
        )
        pred_dir = self.out / "predictions"
        class_names = list(self.meta["class_names"])
        if self.processes.writer:
            formats.write_gff3(pred_dir / f"{self.name}.gff3", test.names, preds, class_names,
                               source=f"semicrf:{self.name}")
            formats.write_bed(pred_dir / f"{self.name}.bed", test.names, preds, class_names)
        durations = [np.concatenate(d) if d else np.zeros(0, np.int64)
                     for d in zip(*(segment_durations(p, len(class_names)) for p in preds))]
        prior = model.duration_scores()
        self.results = {
            "metrics": scores,
            # Kept for the figures of a resumed run; not part of metrics.json.
            "pred_durations": {n: torch.from_numpy(d.astype(np.int64)) for n, d in zip(class_names, durations)},
            "duration_prior": prior.float().cpu() if prior is not None else None,
        }
        self._save_last(finished=True)
        log(f"{self.name}: test boundary F1 {scores['boundary_f1']:.4f}, segment F1 {scores['segment_f1']:.4f}, "
            f"duration KL mean {_fmt(scores['duration_kl_mean'])} ({self.train_time:.1f} s training, "
            f"{scores['inference_throughput'] or 0:.0f} positions/s inference)")
        return self.results


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ----------------------------------------------------------------------------
# outputs


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def versions() -> dict:
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


# ----------------------------------------------------------------------------
# the command


def _progress_factory(disabled: bool):
    from tqdm import tqdm

    def progress(iterable, **kw):
        return tqdm(iterable, file=sys.stderr, disable=True if disabled else None, dynamic_ncols=True, **kw)

    return progress, tqdm.write


def _check_processes(processes: Processes, args, data: dict) -> None:
    """Refuse a process group that the data, the batch or the GPUs cannot feed."""
    world = processes.world
    if not processes.distributed:
        return
    n_train = len(data["train"])
    if world > n_train:
        raise RunError(f"torchrun started {world} processes but the training split has only {n_train} sequences; "
                       f"start at most {n_train} (--nproc_per_node) or use more training data (--max-train)")
    if world > args.batch_size:
        raise RunError(f"--batch-size {args.batch_size} is the global batch, split across the {world} processes; "
                       f"give --batch-size >= {world} or start fewer processes")
    if args.device == "cuda":
        gpus = torch.cuda.device_count()
        if processes.local_rank >= gpus:
            raise RunError(f"process {processes.rank} is local rank {processes.local_rank} but this host has "
                           f"{gpus} GPU(s); start at most {gpus} processes per host (--nproc_per_node {gpus})")


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _start_process_group(processes: Processes, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch_dist.init_process_group("nccl", device_id=device)
    else:
        torch_dist.init_process_group("gloo")


def run_main(args) -> int:
    """Run the benchmark as ``args`` (from :func:`add_run_arguments`) says; returns 0.

    Under torchrun (WORLD_SIZE > 1) this is one process of a DistributedDataParallel run.
    """
    processes = Processes.from_environment()
    settings = _validate_args(args)
    meta, data = _load_data(args)
    _check_processes(processes, args, data)
    config = run_config(args, settings, meta)
    config["processes"] = processes.world
    resumable = _prepare_output(args, config, settings["models"])
    device = torch.device(args.device, processes.local_rank) if args.device == "cuda" else torch.device("cpu")
    if not processes.distributed:
        return _run(args, settings, meta, data, config, resumable, device, processes)
    # torchrun stops the other processes with SIGTERM when one fails; exiting
    # through Python's unwinding lets a file being written remove its temporary.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _start_process_group(processes, device)
    try:
        # Every process has checked the inputs (and the output directory) before rank 0 writes anything.
        processes.barrier()
        return _run(args, settings, meta, data, config, resumable, device, processes)
    finally:
        torch_dist.destroy_process_group()


def _run(args, settings, meta, data, config, resumable, device, processes: Processes) -> int:
    # Everything is validated: from here on files are written.
    out = Path(args.output_dir)
    if processes.writer:
        if args.overwrite:
            for path in _known_outputs(out):
                if path.is_file():
                    path.unlink()
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "predictions").mkdir(exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress, write = _progress_factory(args.no_progress or not processes.writer)

    def log(msg: str) -> None:
        if processes.writer:
            write(msg, file=sys.stdout)

    model_config = ModelConfig(
        input_dim=features.feature_dim(args.features), num_classes=int(meta["num_classes"]),
        encoder=args.encoder, hidden_dim=args.hidden_dim, num_layers=args.num_layers,
        max_duration=args.max_duration, backend=settings["backend"], mixed_precision=args.precision == "bf16",
    )
    log(f"run: models {', '.join(settings['models'])}; encoder {args.encoder} (hidden {args.hidden_dim}, "
        f"{args.num_layers} layers), features {args.features}, K={args.max_duration}, device {args.device}, "
        f"backend {settings['backend']}; train/val/test {len(data['train'])}/{len(data['val'])}/{len(data['test'])} "
        f"sequences{f'; {processes.world} processes (DDP)' if processes.distributed else ''}")
    results, histories = {}, {}
    for name in settings["models"]:
        run = ModelRun(name, args, config, model_config, meta, data, device, out, progress, processes)
        if name in resumable:
            run.restore(resumable[name])
            log(f"{name}: resuming after epoch {run.epoch}")
        run.train(log)
        results[name] = run.evaluate(log)
        histories[name] = run.history
        if processes.writer:
            write_metrics(out, config, meta, data, results)
        # A finished model's results are on disk before any process starts the next model.
        processes.barrier()
        del run
    if not processes.writer:
        return 0
    write_figures(out, meta, data, results, histories, args.max_duration)

    from .compare import format_table, load_results

    print()
    print(format_table([load_results(out)]))
    print(f"\nresults in {out}")
    return 0
