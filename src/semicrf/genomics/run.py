"""The ``run`` command: train the benchmark models, evaluate them, write the results.

Output directory (``--output-dir``)::

    metrics.json                 per-model test metrics, the run's config, versions
    duration_comparison.png      true vs predicted segment durations (and learned priors)
    training_curves.png          training loss and validation F1 per model
    checkpoints/<model>_best.pt  weights at the best validation boundary F1
    checkpoints/<model>_last.pt  everything --resume needs, at the latest epoch end or step boundary
    predictions/<model>.gff3     the model's test-split predictions as gene models
    predictions/<model>.bed

The steps, each in its own module: the flags become a checked
:class:`~run_config.RunConfig` (``run_config``), the data is loaded
(``run_data``), the process group is checked and formed (``distributed``),
the output directory and any checkpoints to resume from are checked
(``checkpoints``) -- every input is checked before anything is written --
then each model is trained (``trainer``, with the schedule and the stops of
``control``) and evaluated (``evaluation``), and metrics.json and the figures
are written (``outputs``).

A run may end early and be continued with ``--resume``: ``--time-limit``
stops it at the first step boundary after that many seconds (status 0, the
last checkpoints written, metrics only for the models that finished);
SIGTERM or SIGINT stop it at the next step boundary after saving (status
128 + signal number).

Several processes (``torchrun --nproc_per_node=N ... run ...``): the run
trains with DistributedDataParallel, one process per GPU (NCCL) or per CPU
process (gloo). ``--batch-size`` stays the global batch: each batch of the
one-process order is split across the processes (sequence ``i`` of a batch
goes to rank ``i mod N``), every process scales its loss so that the
gradients DDP averages are exactly those of the whole batch's mean loss per
position, and every optimizer step therefore equals the one-process step up
to the order of floating-point additions. Validation and test predictions are
sharded over the processes and gathered, every process takes the same
best-epoch decision, and only rank 0 writes files. If one process fails,
torchrun stops the others; files are replaced atomically, so what is on disk
is the last complete state.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from . import features
from .checkpoints import check_output_dir, make_output_dir
from .control import Interrupted, TrainingControl
from .distributed import Processes, check_processes, process_group
from .evaluation import evaluate_model
from .models import ModelConfig, check_data
from .outputs import write_figures, write_metrics
from .run_config import RunConfig, RunError, add_run_arguments
from .run_data import data_files_hash, data_fingerprint, load_run_data
from .trainer import ModelRun


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


def run_main(args: argparse.Namespace) -> int:
    """Run the benchmark as ``args`` (from :func:`add_run_arguments`) says; returns the exit status.

    0 when every model finished or ``--time-limit`` stopped the run; 128 +
    signal number when SIGTERM / SIGINT did. Under torchrun (WORLD_SIZE > 1)
    this is one process of a DistributedDataParallel run.
    """
    started = time.monotonic()
    processes = Processes.from_environment()
    config = RunConfig.from_args(args)
    meta, data = load_run_data(config)
    try:  # a model that cannot be built for this data set is refused before any model trains
        check_data(config.models, meta)
    except ValueError as e:
        raise RunError(f"--models: {e}") from None
    check_processes(processes, config, len(data["train"]))
    config = config.with_data(data_fingerprint(meta), data_files_hash(config.data_dir), processes.world)
    resumable = check_output_dir(config)
    device = processes.device(config.device)
    control = TrainingControl(config.time_limit, config.checkpoint_every, processes, device, started)
    with process_group(processes, device), control.signals():
        # Everything is validated: from here on files are written.
        if processes.writer:
            make_output_dir(config)
        try:
            return _train_and_report(config, meta, data, resumable, device, processes, control)
        except Interrupted as stop:
            print(f"run: {stop}; continue with the same command plus --resume", file=sys.stderr)
            return 128 + stop.signum


def _progress_factory(disabled: bool):
    from tqdm import tqdm

    def progress(iterable, **kw):
        return tqdm(iterable, file=sys.stderr, disable=True if disabled else None, dynamic_ncols=True, **kw)

    return progress, tqdm.write


def _model_config(config: RunConfig, meta: dict) -> ModelConfig:
    return ModelConfig(
        input_dim=features.feature_dim(config.features), num_classes=int(meta["num_classes"]),
        encoder=config.encoder, hidden_dim=config.hidden_dim, num_layers=config.num_layers,
        max_duration=config.max_duration, backend=config.engine_backend, mixed_precision=config.precision == "bf16",
        stem=config.stem, recompute=config.recompute, objective=config.objective,
        gene_long_runs=config.gene_long_runs, gene_splice_sites=config.gene_splice_sites,
        gene_start=config.gene_start, gene_inner_cuts=config.gene_inner_cuts, gene_exon_ends=config.gene_exon_ends,
    )


def _stopped_early(config: RunConfig, control: TrainingControl, where: str, log) -> int:
    log(f"stopped early: --time-limit {config.time_limit:g} s reached after {control.elapsed():.1f} s; {where}. "
        f"Finished models' results are in {config.output_path / 'metrics.json'}; continue with the same command "
        "plus --resume")
    return 0


def _train_and_report(config: RunConfig, meta, data, resumable, device, processes: Processes,
                      control: TrainingControl) -> int:
    if config.threads:
        torch.set_num_threads(config.threads)
    progress, write = _progress_factory(config.no_progress or not processes.writer)

    def log(msg: str) -> None:
        if processes.writer:
            write(msg, file=sys.stdout)

    log(f"run: models {', '.join(config.models)}; encoder {config.encoder} (hidden {config.hidden_dim}, "
        f"{config.num_layers} layers, {config.stem} stem), features {config.features}, K={config.max_duration}, "
        f"device {config.device}, backend {config.engine_backend}; train/val/test {len(data['train'])}/{len(data['val'])}/"
        f"{len(data['test'])} sequences{f'; {processes.world} processes (DDP)' if processes.distributed else ''}")
    model_config = _model_config(config, meta)
    out, record = config.output_path, config.to_dict()
    results, histories = {}, {}
    for name in config.models:
        if control.stop_between_models(name):
            return _stopped_early(config, control, f"{name} and the models after it not started", log)
        run = ModelRun(name, config, model_config, meta, data, device, progress, processes)
        if name in resumable:
            run.restore(resumable[name])
            log(f"{name}: resuming at {run.position()}")
        if not run.train(log, control):
            return _stopped_early(config, control, f"{name} saved at {run.position()}", log)
        results[name] = evaluate_model(run, log)
        histories[name] = run.history
        if processes.writer:
            write_metrics(out, record, meta, data, results)
        # A finished model's results are on disk before any process starts the next model.
        processes.barrier()
        del run
    if not processes.writer:
        return 0
    write_figures(out, meta, data, results, histories, config.max_duration)

    from .compare import format_table, load_results

    print()
    print(format_table([load_results(out)]))
    print(f"\nresults in {out}")
    return 0
