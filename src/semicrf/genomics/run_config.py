"""The ``run`` command's flags and :class:`RunConfig`, the settings built once from them.

:func:`add_run_arguments` declares the flags; :meth:`RunConfig.from_args`
checks every value (and what the values need: a GPU, the encoder's package,
pytorch-crf, matplotlib) and normalises them, raising :class:`RunError` with a
message that names the flag and what to change. The rest of the runner reads
the frozen :class:`RunConfig`, never the argparse namespace;
:meth:`RunConfig.to_dict` is what checkpoints and ``metrics.json`` record.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..backends import ALIASES as _BACKEND_ALIASES
from ..backends import NAMES as _BACKEND_NAMES
from . import features
from .encoders import ENCODER_KINDS, STEM_KINDS, EncoderUnavailable, build_encoder, encoder_available
from .models import (DEFAULT_MODELS, GENE_EXON_ENDS, GENE_INNER_CUTS, GENE_LONG_RUNS, GENE_STARTS, OBJECTIVES,
                     available_models, parse_model_list)

# "streaming" first: it is the default and the name the benchmark documents.
BACKEND_CHOICES = tuple(dict.fromkeys((*_BACKEND_ALIASES, *_BACKEND_NAMES)))
LR_SCHEDULES = ("constant", "cosine")
# Settings that change what a checkpoint's training computes; --resume refuses to mix them.
IDENTITY_KEYS = ("data", "data_files", "encoder", "features", "max_duration", "hidden_dim", "num_layers",
                 "batch_size", "lr", "crf_lr_scale", "weight_decay", "grad_clip", "seed", "log_every", "max_train",
                 "max_val", "max_test", "precision", "warmup_steps", "lr_schedule", "min_lr_ratio", "stem",
                 "objective", "gene_long_runs", "gene_splice_sites", "gene_start", "gene_inner_cuts",
                 "gene_exon_ends")


class RunError(ValueError):
    """A ``run`` input that cannot be used; the message says what to change."""


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
    p.add_argument("--stem", default="linear", choices=STEM_KINDS,
                   help="how features enter the encoder: linear (a per-position projection, the spec's) or conv "
                        "(three convolutions of width 9 seeing 57 positions: splice sites, codon composition)")
    p.add_argument("--objective", default="labelling", choices=OBJECTIVES,
                   help="what semicrf and semicrf_uniform are trained to make probable: labelling (the gold "
                        "label sequence, summed over every way of cutting its runs into segments, the spec's "
                        "likelihood) or segmentation (the one path whose segments are the gold runs, a run longer "
                        "than K cut into equal pieces of at most K: the path Viterbi returns). linear is the same either way; "
                        "semicrf_gene always trains by segmentation")
    add_gene_arguments(p)
    p.add_argument("--no-recompute", action="store_true",
                   help="keep the encoder's activations for the backward pass instead of recomputing them "
                        "(faster; needs memory: several GiB per layer at the spec's size)")
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
    g = p.add_argument_group("learning-rate schedule (all parameter groups scaled alike)")
    g.add_argument("--warmup-steps", type=int, default=0,
                   help="raise the learning rate linearly over the first N optimizer steps")
    g.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                   help="after the warm-up: constant, or cosine decay to --min-lr-ratio x the learning rate at "
                        "the last step of --epochs")
    g.add_argument("--min-lr-ratio", type=float, default=0.1, help="where the cosine schedule ends, x --lr")
    g = p.add_argument_group("stopping and checkpoints (for long runs trained in several invocations)")
    g.add_argument("--step-budget", default=None, metavar="MODEL=N[,MODEL=N...]",
                   help="stop the named models after N optimizer steps (e.g. pytorch-crf=20); a budgeted model "
                        "validates when it stops and is evaluated from its best checkpoint")
    g.add_argument("--time-budget", default=None, metavar="MODEL=SECONDS[,MODEL=SECONDS...]",
                   help="stop the named models at the first step after SECONDS of their training (validation "
                        "included, summed over resumed invocations), e.g. pytorch-crf=1200: a model too slow for "
                        "--epochs gets the others' minutes; it validates when it stops and is evaluated from its "
                        "best checkpoint")
    g.add_argument("--patience", type=int, default=None,
                   help="stop a model after N validations without a better validation boundary F1 (None: never)")
    g.add_argument("--checkpoint-every", type=float, default=300.0, metavar="SECONDS",
                   help="also write <model>_last.pt at the first step boundary after this many seconds since "
                        "the last one (mid-epoch)")
    g.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop at the first step boundary after SECONDS of this invocation, write the last "
                        "checkpoints and exit with status 0 (no metrics for unfinished models); continue with "
                        "the same command plus --resume. SIGTERM/SIGINT also stop at a step boundary after "
                        "saving, with status 128 + signal number")
    return p


def add_gene_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of semicrf_gene's grammar and start (``--gene-*``)."""
    p.add_argument("--gene-long-runs", default="tail-ends", choices=GENE_LONG_RUNS,
                   help="how semicrf_gene scores an intergenic or intron run longer than --max-duration: "
                        "tail-ends (the default: a run of at most K bases is one segment scored by its class's "
                        "length law, a longer one a chain of tail pieces with a length law of their own, like a "
                        "gene finder's explicit lengths with a geometric tail, and a long intron's first and last "
                        "pieces are states of their own, so that its splice sites are checked as a whole "
                        "intron's are: 98 states on real genes, 44 on synthetic), tail (the same tail pieces "
                        "without the ends told apart: 62 and 26 states), pieces (every piece scored by the "
                        "class's law, so the pieces of long runs shape it; the first version), tail-exons "
                        "(tail states for exon runs as well), or grid (tail-ends with the intergenic run's ends "
                        "apart too, and the pieces of a long run meeting only at the multiples of K, so that "
                        "each run has one cutting and the best path is the best labelling's: 100 and 46 states)")
    p.add_argument("--gene-splice-sites", default="on", choices=("on", "off"),
                   help="semicrf_gene: a whole intron (at most K bases) whose first or last two bases are not "
                        "GT .. AG (+ strand; CT .. AC as read on + for the - strand) loses a learned penalty "
                        "(on, needs a tail mode of --gene-long-runs; with tail-ends a long intron's first and last "
                        "two bases too, with tail-exons a whole exon's bases beside an intron), or splice sites "
                        "are left to the encoder (off)")
    p.add_argument("--gene-inner-cuts", default="free", choices=GENE_INNER_CUTS,
                   help="semicrf_gene: a run longer than --max-duration is cut into tail pieces; free (the "
                        "default): the cuts inside it carry none of its class's start and end scores (site "
                        "tables, the encoder's boundary head), only a run's outer ends do, so the arbitrary places "
                        "of the gold pieces' cuts do not train them; scored: every piece's ends carry them (the "
                        "models trained before 2026-12-05)")
    p.add_argument("--gene-exon-ends", default="all", choices=GENE_EXON_ENDS,
                   help="semicrf_gene: which exon ends take the exon class's start and end scores (site tables, "
                        "the encoder's boundary head): all (the default): every exon end, so that each splice "
                        "junction is scored by both the exon's and the intron's tables; gene: only a gene's outer "
                        "ends, where an exon meets intergenic sequence, so that a junction is scored once, by the "
                        "intron's windows (which read the exon's side too)")
    p.add_argument("--gene-start", default="counts", choices=GENE_STARTS,
                   help="semicrf_gene: where its content (Markov chains of the bases per class and reading "
                        "frame), site (weight matrices around segment ends), length and transition tables start "
                        "before training: counts (the training split's counting estimates, a gene finder's "
                        "generative model) or zeros")


def _parse_model_budget(text: str | None, models: list[str], flag: str, unit: str, example: str, kind: str,
                        convert) -> dict:
    """{model: value} from ``FLAG MODEL=V[,MODEL=V...]``; ``convert`` turns a value's text into a number > 0."""
    if text is None:
        return {}
    budget: dict = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise RunError(f"{flag}: {item.strip()!r} is not MODEL={unit}; give e.g. {flag} {example}")
        if name not in available_models():
            raise RunError(f"{flag}: unknown model {name!r}; choose from {', '.join(available_models())}")
        if name not in models:
            raise RunError(f"{flag} names {name}, which is not among --models ({','.join(models)}); "
                           f"add it to --models or leave it out of {flag}")
        if name == "oracle":
            raise RunError(f"{flag} names oracle, which trains nothing; leave it out")
        if name in budget:
            raise RunError(f"{flag} gives {name} twice; give each model once")
        amount = convert(value.strip())
        if amount is None:
            raise RunError(f"{flag} {name}={value.strip()}: the budget must be {kind}")
        budget[name] = amount
    return budget


def _positive_int(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if n >= 1 and str(n) == text else None


def _positive_seconds(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) and x > 0 else None


def parse_step_budget(text: str | None, models: list[str]) -> dict[str, int]:
    """{model: steps} from ``--step-budget MODEL=N[,MODEL=N...]``; raises :class:`RunError`."""
    return _parse_model_budget(text, models, "--step-budget", "N", "pytorch-crf=20", "an integer >= 1", _positive_int)


def parse_time_budget(text: str | None, models: list[str]) -> dict[str, float]:
    """{model: seconds} from ``--time-budget MODEL=SECONDS[,...]``; raises :class:`RunError`."""
    return _parse_model_budget(text, models, "--time-budget", "SECONDS", "pytorch-crf=1200", "a number of seconds > 0",
                               _positive_seconds)


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
    name = _BACKEND_ALIASES.get(backend, backend)
    if no_triton:
        if name == "triton":
            raise RunError("--backend triton contradicts --no-triton; drop one of them")
        if name == "auto":
            name = "cpu"
    return name


def _resolved_backend(name: str, device: str) -> str:
    """The engine backend that ``name`` selects on ``device`` (what "auto" becomes)."""
    from ..backends import resolve

    return resolve(name, device)


@dataclass(frozen=True)
class RunConfig:
    """Every ``run`` setting, checked and normalised (see :meth:`from_args`).

    ``data`` (the data set's fingerprint) and ``processes`` are known only
    once the data is loaded and the process group read: :meth:`with_data`
    fills them in.
    """

    data_dir: str
    output_dir: str
    encoder: str
    features: str
    max_duration: int
    hidden_dim: int
    num_layers: int
    batch_size: int
    lr: float
    crf_lr_scale: float
    weight_decay: float
    grad_clip: float
    epochs: int
    seed: int
    log_every: int
    max_train: int | None
    max_val: int | None
    max_test: int | None
    precision: str
    device: str
    backend: str
    engine_backend: str
    engine_backend_resolved: str
    no_triton: bool
    models: tuple[str, ...]
    stem: str = "linear"
    objective: str = "labelling"
    gene_long_runs: str = "tail-ends"
    gene_splice_sites: bool = True
    gene_start: str = "counts"
    gene_inner_cuts: str = "free"
    gene_exon_ends: str = "all"
    recompute: bool = True
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    step_budget: tuple[tuple[str, int], ...] = ()
    time_budget: tuple[tuple[str, float], ...] = ()
    patience: int | None = None
    checkpoint_every: float = 300.0
    time_limit: float | None = None
    resume: bool = False
    overwrite: bool = False
    threads: int | None = None
    no_progress: bool = False
    data: str | None = None
    data_files: str | None = None
    processes: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunConfig":
        """Check the parsed flags of :func:`add_run_arguments`; raises :class:`RunError`."""
        _check_numbers(args)
        models, backend = _check_choices(args)
        budget = parse_step_budget(args.step_budget, models)
        seconds = parse_time_budget(getattr(args, "time_budget", None), models)
        _check_environment(args, models)
        return cls(
            data_dir=str(args.data_dir), output_dir=str(args.output_dir), encoder=args.encoder,
            features=args.features, max_duration=args.max_duration, hidden_dim=args.hidden_dim,
            num_layers=args.num_layers, batch_size=args.batch_size, lr=args.lr, crf_lr_scale=args.crf_lr_scale,
            weight_decay=args.weight_decay, grad_clip=args.grad_clip, epochs=args.epochs, seed=args.seed,
            log_every=args.log_every, max_train=args.max_train, max_val=args.max_val, max_test=args.max_test,
            precision=args.precision, device=args.device, backend=args.backend, engine_backend=backend,
            engine_backend_resolved=_resolved_backend(backend, args.device), no_triton=bool(args.no_triton),
            models=tuple(models), stem=args.stem, objective=args.objective, gene_long_runs=args.gene_long_runs,
            gene_splice_sites=args.gene_splice_sites == "on", gene_start=args.gene_start,
            gene_inner_cuts=args.gene_inner_cuts, gene_exon_ends=args.gene_exon_ends, recompute=not args.no_recompute, warmup_steps=args.warmup_steps, lr_schedule=args.lr_schedule,
            min_lr_ratio=float(args.min_lr_ratio), step_budget=tuple(budget.items()),
            time_budget=tuple(seconds.items()), patience=args.patience,
            checkpoint_every=float(args.checkpoint_every),
            time_limit=None if args.time_limit is None else float(args.time_limit), resume=bool(args.resume), overwrite=bool(args.overwrite), threads=args.threads,
            no_progress=bool(args.no_progress),
        )

    def with_data(self, fingerprint: str, files_hash: str, processes: int) -> "RunConfig":
        """This config with the data set's fingerprint, its files' hash and the number of processes."""
        return dataclasses.replace(self, data=fingerprint, data_files=files_hash, processes=processes)

    def budget(self, model: str) -> int | None:
        """The optimizer-step budget of ``model`` (None: --epochs alone decides)."""
        return dict(self.step_budget).get(model)

    def seconds_budget(self, model: str) -> float | None:
        """The training-time budget of ``model`` in seconds (None: no limit)."""
        return dict(self.time_budget).get(model)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict:
        """The settings recorded in checkpoints and ``metrics.json`` (JSON types only)."""
        keys = ("encoder", "features", "max_duration", "hidden_dim", "num_layers", "batch_size", "lr",
                "crf_lr_scale", "weight_decay", "grad_clip", "epochs", "seed", "log_every", "max_train", "max_val",
                "max_test", "precision", "device", "backend", "engine_backend", "engine_backend_resolved",
                "no_triton")
        later = ("stem", "objective", "gene_long_runs", "gene_splice_sites", "gene_start", "gene_inner_cuts", "gene_exon_ends", "recompute", "warmup_steps", "lr_schedule", "min_lr_ratio", "patience", "checkpoint_every", "time_limit")
        return {"data": self.data, "data_files": self.data_files, "data_dir": str(Path(self.data_dir).resolve()),
                **{k: getattr(self, k) for k in keys}, "models": list(self.models), "processes": self.processes,
                **{k: getattr(self, k) for k in later}, "step_budget": dict(self.step_budget),
                "time_budget": dict(self.time_budget)}


def _check_numbers(args) -> None:
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
    _check_int("--warmup-steps", args.warmup_steps, minimum=0)
    if _check_float("--min-lr-ratio", args.min_lr_ratio, positive=False) > 1:
        raise RunError(f"--min-lr-ratio must lie in [0, 1] (a fraction of --lr), got {args.min_lr_ratio!r}")
    _check_int("--patience", args.patience, allow_none=True)
    _check_float("--checkpoint-every", args.checkpoint_every, positive=True)
    if args.time_limit is not None:
        _check_float("--time-limit", args.time_limit, positive=True)


def _check_choices(args) -> tuple[list[str], str]:
    """(models, engine backend) after the checks that need no package or device."""
    if args.resume and args.overwrite:
        raise RunError("--resume and --overwrite contradict each other: --resume continues the earlier run, "
                       "--overwrite deletes it; give one")
    if args.features not in features.FEATURE_KINDS:
        raise RunError(f"--features must be one of {features.FEATURE_KINDS}, got {args.features!r}")
    if args.gene_long_runs == "pieces" and args.gene_splice_sites == "on":
        raise RunError("--gene-splice-sites on scores the ends of whole introns, which only --gene-long-runs tail "
                       "tells from the pieces of a long one: give --gene-splice-sites off with pieces")
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
    return models, backend


def _check_environment(args, models: list[str]) -> None:
    """The packages the encoder, the models and the outputs need, and the encoder's sizes."""
    try:
        encoder_available(args.encoder)
    except EncoderUnavailable as e:
        raise RunError(str(e)) from None
    try:
        # Build the encoder once so that an unusable size is reported now, not after data loading.
        build_encoder(args.encoder, features.feature_dim(args.features), args.hidden_dim, 1, stem=args.stem)
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
