#!/usr/bin/env python3
"""Peak GPU memory and time of one training step of each benchmark model.

At the spec's default size (B = 16 sequences of the generator at T = 20 000,
hidden 256, 4 encoder layers, K = 1000) this builds each model as the ``run``
command does (same encoder, bfloat16 autocast, AdamW, gradient clipping) and
times full optimizer steps on one batch of real synthetic sequences after
``--warmup`` untimed steps, then one no-grad prediction of the batch.

    python3 step_profile.py --encoder mamba --steps 3 --json profile.json

The first optimizer steps of a fresh semi-CRF model are slower than the rest: at
the spec's default on an H200 (2026-12-03) semicrf's steps 4 and 5 took 414 ms and
every later one 330 ms (softmax: 308 ms from the first). The default of 6
warm-up steps keeps that out of the timed steps; the JSON keeps the warm-up
steps' times (``warmup_s``). Before 2026-12-03 one warm-up step was taken and
the table of docs/results.md, "Step time", measured that transient.

Prints a table; ``--json`` also writes the numbers. A model that does not fit
or fails is reported with its error and the others still run.

The phase breakdown times ``--steps`` more steps with a device synchronisation
between the phases: encoder forward, output layer forward (for the CRF models:
the emission and boundary heads and the CRF's log-likelihood), output layer
backward (the CRF's gradient assembly included), encoder backward, optimizer.
"head share" is the output layer's part of that sum: for semicrf, the semi-CRF's
share of its step. ``--trace-head FILE`` also writes the profiler's table of the
output layer's operators (forward and backward) of each model, and Python's
cProfile table of one more output-layer forward timed as in the breakdown (the
host's view: where the wall time goes between the operators).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import numpy as np
import torch

from semicrf.genomics import features
from semicrf.genomics.encoders import STEM_KINDS
from semicrf.genomics.models import MODEL_NAMES, ModelConfig, build_model
from semicrf.genomics.synthetic import GeneratorConfig, generate_sequences
from semicrf.genomics.run_config import add_run_arguments
from semicrf.genomics.trainer import param_groups


def run_optimizer(model):
    """(AdamW, the run command's default settings): the optimizer ``run`` builds for ``model`` by default
    (its parameter groups, weight decay and CRF learning-rate scale); ``settings.grad_clip`` is its clip."""
    settings = add_run_arguments(argparse.ArgumentParser()).parse_args(["--data-dir", "-", "--output-dir", "-"])
    groups = param_groups(model, settings.weight_decay, settings.lr, settings.crf_lr_scale)
    return torch.optim.AdamW(groups, lr=settings.lr), settings


def make_batch(batch: int, length: int, device: torch.device, seed: int = 0):
    """(features (B, T, 5), labels (B, T), lengths (B,)) from the synthetic generator."""
    seqs = list(generate_sequences(GeneratorConfig(seq_length=length), batch, seed=seed))
    lengths = np.array([len(s.labels) for s in seqs])
    total = int(lengths.max())
    x = np.zeros((batch, total, features.feature_dim("onehot")), np.float32)
    y = np.zeros((batch, total), np.int64)
    for i, s in enumerate(seqs):
        x[i, :lengths[i]] = features.encode(s.codes, "onehot")
        y[i, :lengths[i]] = s.labels
    return (torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), torch.from_numpy(lengths).to(device))


def _phase_times(model, opt, batch, steps: int, device: torch.device, grad_clip: float) -> dict:
    """Median seconds of each phase of a training step (synchronised between phases)."""
    x, y, lengths = batch
    names = ("encoder_forward", "head_forward", "head_backward", "encoder_backward", "optimizer")
    samples = {n: [] for n in names}
    allocator = []
    for _ in range(steps):
        marks = []

        def mark():
            torch.cuda.synchronize(device)
            marks.append(time.perf_counter())

        mark()
        opt.zero_grad(set_to_none=True)
        hidden = model.encode(x, lengths)
        mark()
        detached = hidden.detach().requires_grad_()
        before = torch.cuda.memory_stats(device)
        loss = model.head_loss(detached, y, lengths)
        mark()
        allocator.append(_allocator_delta(before, torch.cuda.memory_stats(device)))
        loss.backward()
        mark()
        hidden.backward(detached.grad)
        mark()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        mark()
        for n, a, b in zip(names, marks, marks[1:]):
            samples[n].append(b - a)
    out = {n: statistics.median(v) for n, v in samples.items()}
    total = sum(out.values())
    out["head_share"] = (out["head_forward"] + out["head_backward"]) / total
    out["head_forward_allocator"] = allocator
    return out


ALLOCATOR_COUNTERS = ("num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams",
                      "segment.all.allocated", "segment.all.freed")


def _allocator_delta(before: dict, after: dict) -> dict:
    """How the caching allocator's counters moved: device allocations and frees, retries, segments."""
    return {k: after.get(k, 0) - before.get(k, 0) for k in ALLOCATOR_COUNTERS}


def _trace_head(model, batch, device: torch.device) -> str:
    """The profiler's operator table (by device time) of the output layer's forward and backward,
    run as in a training step: while the encoder's graph is alive (its backward follows, untraced)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    x, y, lengths = batch
    hidden = model.encode(x, lengths)
    detached = hidden.detach().requires_grad_()
    torch.cuda.synchronize(device)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model.head_loss(detached, y, lengths).backward()
        torch.cuda.synchronize(device)
    hidden.backward(detached.grad)
    model.zero_grad(set_to_none=True)
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=25) + "\n" + _host_profile_head(model, batch, device)


def _host_profile_head(model, batch, device: torch.device) -> str:
    """The output layer's forward timed as in :func:`_phase_times` (synchronised before and after,
    the encoder's graph alive) under Python's cProfile: where its host time goes, kernels' waits
    included (the torch profiler's table counts operators only, not the Python between them)."""
    import cProfile
    import io
    import pstats

    x, y, lengths = batch
    hidden = model.encode(x, lengths)
    detached = hidden.detach().requires_grad_()
    torch.cuda.synchronize(device)
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    loss = model.head_loss(detached, y, lengths)
    torch.cuda.synchronize(device)
    prof.disable()
    wall = time.perf_counter() - start
    loss.backward()
    hidden.backward(detached.grad)
    model.zero_grad(set_to_none=True)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(35)
    return f"-- output layer forward under cProfile: {wall * 1000:.1f} ms wall\n{out.getvalue()}"


def _set_split_far(model, split_far: str) -> bool:
    """Give the model's semi-CRF (if any) the Triton backend with far-part helpers ``split_far``
    ("auto": the default, "off"). Returns whether the model has one."""
    from semicrf import SemiCRF

    crf = getattr(model, "crf", None)
    if not isinstance(crf, SemiCRF):
        return False
    if split_far != "auto":
        from semicrf.backends.triton import Configured, TritonConfig

        crf.backend = Configured(TritonConfig(split_far=split_far))
    return True


def profile(name: str, config: ModelConfig, batch, steps: int, device: torch.device, trace: bool = False,
            split_far: str = "auto", warmup: int = 6) -> dict:
    torch.manual_seed(0)
    model = build_model(name, config).to(device)
    if not _set_split_far(model, split_far) and split_far != "auto":
        return {"model": name, "split_far": split_far, "error": "no semi-CRF: --split-far does not apply"}
    # The run command's default optimizer settings.
    opt, run = run_optimizer(model)
    x, y, lengths = batch
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    model.train()
    for _ in range(warmup + steps):  # the first steps compile kernels and are slower: not timed
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y, lengths)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak_train = torch.cuda.max_memory_allocated(device) / 2**30
    phases = _phase_times(model, opt, batch, steps, device, run.grad_clip)
    head_trace = _trace_head(model, batch, device) if trace else None
    model.eval()
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        model.predict(x, lengths)
        torch.cuda.synchronize(device)
        predict_s = time.perf_counter() - start
    peak_predict = torch.cuda.max_memory_allocated(device) / 2**30
    return {"model": name if split_far == "auto" else f"{name} [split_far={split_far}]", "split_far": split_far,
            "step_s_median": statistics.median(times[warmup:]), "step_s_all": times[warmup:],
            "first_step_s": times[0], "warmup_s": times[:warmup], "peak_train_gib": peak_train, "predict_s": predict_s,
            "peak_predict_gib": peak_predict, "losses": losses, "phases": phases, "head_trace": head_trace,
            "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="mamba", choices=("mamba", "mamba_stub", "bilstm"))
    p.add_argument("--models", default=",".join(MODEL_NAMES))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-length", type=int, default=20_000)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--max-duration", type=int, default=1000)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up steps")
    p.add_argument("--warmup", type=int, default=6, help="untimed steps first (compilation, and the slower first steps)")
    p.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    p.add_argument("--stem", default="linear", choices=STEM_KINDS)
    p.add_argument("--no-recompute", action="store_true", help="keep the encoder's activations for backward")
    p.add_argument("--split-far", default="auto",
                   help="comma-separated far-part helper settings of the Triton semi-CRF (auto, off): each "
                        "CRF model is profiled once per setting, to tell whether the helpers cost the step time")
    p.add_argument("--trace-head", default=None, help="write the output layers' profiler tables here")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("step_profile.py measures GPU memory and needs a CUDA GPU")
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the first step compiles the kernels)")
    device = torch.device("cuda")
    config = ModelConfig(input_dim=features.feature_dim("onehot"), num_classes=3, encoder=args.encoder,
                         hidden_dim=args.hidden_dim, num_layers=args.num_layers, max_duration=args.max_duration,
                         backend="auto", mixed_precision=args.precision == "bf16", stem=args.stem,
                         recompute=not args.no_recompute)
    batch = make_batch(args.batch_size, args.seq_length, device)
    settings = args.split_far.split(",")
    if any(v not in ("auto", "off") for v in settings):
        p.error(f"--split-far: each setting is auto or off, got {args.split_far!r}")
    rows = []
    for name, split_far in ((n, v) for n in args.models.split(",") for v in settings):
        try:
            row = profile(name, config, batch, args.steps, device, trace=args.trace_head is not None,
                          split_far=split_far, warmup=args.warmup)
        except Exception as e:  # out of memory, say: report it and go on
            row = {"model": name, "split_far": split_far, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            torch.cuda.empty_cache()
        if "error" in row and split_far != "auto" and row["error"].startswith("no semi-CRF"):
            continue  # softmax and pytorch-crf once, under "auto"
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("step_s_all", "losses", "head_trace")}),
              flush=True)
    info = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "encoder": args.encoder,
            "batch_size": args.batch_size, "positions": int(batch[2].sum()), "hidden_dim": args.hidden_dim,
            "num_layers": args.num_layers, "max_duration": args.max_duration, "precision": args.precision,
            "stem": args.stem, "recompute": not args.no_recompute, "steps": args.steps, "warmup": args.warmup,
            "rows": rows}
    print(f"\n{info['gpu']}, encoder {args.encoder}, B={args.batch_size}, T~{args.seq_length}, "
          f"hidden {args.hidden_dim}, {args.num_layers} layers, K={args.max_duration}, {args.precision}")
    print("| model | step (s, median) | encoder fwd / bwd (s) | output layer fwd / bwd (s) | optimizer (s) "
          "| output layer share | peak memory, training (GiB) | predict (s) | peak memory, predict (GiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['model']} | failed: {r['error'][:80]} | | | | | | | |")
        else:
            ph = r["phases"]
            print(f"| {r['model']} | {r['step_s_median']:.3f} | {ph['encoder_forward']:.3f} / "
                  f"{ph['encoder_backward']:.3f} | {ph['head_forward']:.4f} / {ph['head_backward']:.4f} | "
                  f"{ph['optimizer']:.4f} | {100 * ph['head_share']:.1f}% | {r['peak_train_gib']:.2f} | "
                  f"{r['predict_s']:.3f} | {r['peak_predict_gib']:.2f} |")
    if args.trace_head:
        with open(args.trace_head, "w") as f:
            for r in rows:
                if r.get("head_trace"):
                    f.write(f"== {r['model']}\n{r['head_trace']}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
