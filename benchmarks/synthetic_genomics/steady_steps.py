#!/usr/bin/env python3
"""Every full training step's time, from the first: where a model's step settles, and what the
semi-CRF costs in a step once it has.

    python3 steady_steps.py [--encoder mamba] [--models softmax,semicrf] [--warmup 3] [--steps 6] \
        [--trace-dir DIR] [--count-exact] [--json out.json]

At the spec's default size (B = 16 generator sequences of T ~ 20 000, hidden 256, 4 layers, K = 1000,
bfloat16 autocast, AdamW with the run command's defaults, gradient clipping), each model is built as
``run`` builds it and takes ``--warmup`` untimed steps, then ``--steps`` timed ones in each of three
forms, with a device synchronisation only around each step:

- ``plain``: ``loss(x)`` and its backward, as the trainer runs it;
- ``sync_after_encode``: the same with a synchronisation between the encoder and the output layer;
- ``detached_head``: the output layer on a detached copy of the encoder states, its gradient then
  sent back through the encoder (how ``step_profile.py``'s phase breakdown runs it).

For semicrf also ``plain`` without the Triton sweep's far-part helpers (``split_far="off"``), and with
``--trace-dir`` a PyTorch profiler trace of two more plain steps (``steps_trace_<encoder>.json.gz``: the
GPU's timeline, to look for gaps between kernels). With ``--count-exact``, a fresh semicrf then takes
``--warmup`` + ``--steps`` plain steps again, untimed, counting the rows its sweeps send to the exact
kernel at each (``exact_rows.py``; a sync per sweep): is the slower start of a fresh model those rows?
Prints every step's time and the medians; the
semi-CRF's cost in a step is the difference of semicrf's and softmax's plain medians (the same encoder,
features and optimizer). Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exact_rows import count_exact_rows  # noqa: E402
from step_profile import make_batch, run_optimizer  # noqa: E402

from semicrf.genomics import models  # noqa: E402

FORMS = ("plain", "sync_after_encode", "detached_head")


def _step(model, opt, batch, form: str, grad_clip: float) -> None:
    x, y, lengths = batch
    opt.zero_grad(set_to_none=True)
    if form == "plain":
        model.loss(x, y, lengths).backward()
    elif form == "sync_after_encode":
        hidden = model.encode(x, lengths)
        torch.cuda.synchronize()
        model.head_loss(hidden, y, lengths).backward()
    else:
        hidden = model.encode(x, lengths)
        detached = hidden.detach().requires_grad_()
        model.head_loss(detached, y, lengths).backward()
        hidden.backward(detached.grad)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()


def _times(model, opt, batch, form: str, n: int, grad_clip: float) -> list[float]:
    out = []
    for _ in range(n):
        torch.cuda.synchronize()
        start = time.perf_counter()
        _step(model, opt, batch, form, grad_clip)
        torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="mamba", choices=("mamba", "mamba_stub", "bilstm"))
    p.add_argument("--models", default="softmax,semicrf")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--trace-dir", default=None)
    p.add_argument("--count-exact", action="store_true",
                   help="then count, step by step, the rows a fresh semicrf's sweeps send to the exact kernel")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("steady_steps.py times GPU steps and needs a CUDA GPU")
    device = torch.device("cuda")
    batch = make_batch(16, 20_000, device)
    rows: dict[str, list[float]] = {}

    def report(label, values):
        rows[label] = values
        print(f"{label}: median {statistics.median(values) * 1e3:.1f} ms; "
              f"{', '.join(f'{v * 1e3:.1f}' for v in values)}", flush=True)

    def build(name):
        torch.manual_seed(0)
        config = models.ModelConfig(input_dim=batch[0].shape[-1], num_classes=3, encoder=args.encoder, hidden_dim=256,
                                    num_layers=4, max_duration=1000)
        return models.build_model(name, config).to(device)

    for name in args.models.split(","):
        model = build(name)
        opt, run = run_optimizer(model)
        report(f"{name} warm-up", _times(model, opt, batch, "plain", args.warmup, run.grad_clip))
        for form in FORMS:
            report(f"{name} {form}", _times(model, opt, batch, form, args.steps, run.grad_clip))
        if name != "semicrf":
            continue
        if args.trace_dir:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(2):
                    _step(model, opt, batch, "plain", run.grad_clip)
                    torch.cuda.synchronize()
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "trace.json"
                prof.export_chrome_trace(str(raw))
                with gzip.open(Path(args.trace_dir) / f"steps_trace_{args.encoder}.json.gz", "wb") as f:
                    f.write(raw.read_bytes())
        from semicrf.backends.triton import Configured, TritonConfig

        model.crf.backend = Configured(TritonConfig(split_far="off"))
        _times(model, opt, batch, "plain", 2, run.grad_clip)
        report(f"{name} plain, split_far=off", _times(model, opt, batch, "plain", args.steps, run.grad_clip))
    exact = None
    if args.count_exact:
        model = build("semicrf")
        opt, run = run_optimizer(model)
        exact = []
        for _ in range(args.warmup + args.steps):
            with count_exact_rows() as counts:
                _step(model, opt, batch, "plain", run.grad_clip)
            exact.append(list(counts))
        print("semicrf, fresh: rows sent to the exact kernel at each step (flagged / rows): "
              + ", ".join(f"{a} / {b}" for a, b in exact), flush=True)
    if "softmax plain" in rows and "semicrf plain" in rows:
        soft, semi = statistics.median(rows["softmax plain"]), statistics.median(rows["semicrf plain"])
        print(f"\n{torch.cuda.get_device_name(device)}, encoder {args.encoder}, B=16, T~20000, K=1000: the semi-CRF "
              f"costs {(semi - soft) * 1e3:.1f} ms of semicrf's {semi * 1e3:.1f} ms step "
              f"({100 * (semi - soft) / semi:.1f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(device), "encoder": args.encoder,
                                               "warmup": args.warmup, "steps_s": rows,
                                               "exact_rows_per_step": exact}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
