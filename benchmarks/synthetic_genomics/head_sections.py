#!/usr/bin/env python3
"""Where the semicrf output layer's forward spends its wall time in a training step, section by section.

    python3 head_sections.py [--encoder mamba|mamba_stub|bilstm] [--batch-size 16] [--repeat 4] [--gc-off | --gc-freeze]
                             [--optimizer-step]

At the spec's default size (T = 20 000, hidden 256, 4 layers, K = 1000), after two warm-up steps,
each of ``--repeat`` steps times, with a device synchronisation before and after each: the encoder's
forward, the output layer's forward on the detached encoder states (``head_loss``: the emission and
boundary heads and the semi-CRF's log-likelihood), its backward and the encoder's backward. Then the
same steps again with the main sections of the head's forward wrapped in synchronised timers: the
heads (``SemiCRFTagger._scores``), ``make_problem`` (input checks), the backend lookup, the Triton
``Sweep`` (the chunked sweep and the exact reruns) and ``_forward_backward`` (sweep and marginals).
A section's time includes the wait for its kernels. Python's garbage collector's pauses are timed
too (``gc.callbacks``), per head forward; ``--gc-off`` disables the collector during the timed steps,
``--gc-freeze`` moves every object alive after the warm-up out of its reach (``gc.freeze``: a full
collection then skips the model, the modules and the libraries; one took 135 ms on the project's
CPU in a process holding the benchmark's modules and a small model, 325 000 objects). The suspect for the output layer's extra 85 ms after Mamba's kernels
(docs/results.md, "Step time", round 9). ``--optimizer-step`` ends each step as training does (gradient
clipping and an AdamW step with the run command's defaults, then ``zero_grad``), so that the semi-CRF's
scores change between steps as in ``step_profile.py``; the sections pass also counts the rows the chunked
sweep flagged for the exact kernel.
Prints the median of each (the first step of each set left out) and all the samples. Needs a CUDA GPU; complements ``step_profile.py``, whose
breakdown gives the phases only.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exact_rows import count_exact_rows  # noqa: E402
from step_profile import make_batch, run_optimizer  # noqa: E402

from semicrf import backends, core  # noqa: E402
from semicrf.backends import triton as triton_backend  # noqa: E402
from semicrf.genomics import models  # noqa: E402


def _timer(samples: dict, device: torch.device):
    def timed(label, fn, *args, **kwargs):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        torch.cuda.synchronize(device)
        samples.setdefault(label, []).append(time.perf_counter() - start)
        return out
    return timed


def _gc_pauses() -> list[float]:
    """A list that receives the length of every garbage collection from now on (seconds)."""
    pauses, start = [], []

    def callback(phase, info):
        if phase == "start":
            start[:] = [time.perf_counter()]
        elif start:
            pauses.append(time.perf_counter() - start[0])
    gc.callbacks.append(callback)
    return pauses


def _optimizer_step(model):
    """A step of the run command's optimizer (its default settings) on ``model``: clip, AdamW, zero_grad."""
    opt, run = run_optimizer(model)

    def step():
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def _wrap(owner, name: str, label: str, timed) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return timed(label, fn, *args, **kwargs)
    setattr(owner, name, wrapped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="mamba", choices=("mamba", "mamba_stub", "bilstm"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeat", type=int, default=4)
    gc_mode = p.add_mutually_exclusive_group()
    gc_mode.add_argument("--gc-off", action="store_true", help="disable Python's garbage collector while timing")
    gc_mode.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after the warm-up steps")
    p.add_argument("--optimizer-step", action="store_true",
                   help="clip and take an AdamW step after each step's backward (the run command's defaults)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        p.error("head_sections.py times GPU work and needs a CUDA GPU")
    device = torch.device("cuda")
    x, y, lengths = make_batch(args.batch_size, 20_000, device)
    config = models.ModelConfig(input_dim=x.shape[-1], num_classes=3, encoder=args.encoder, hidden_dim=256,
                                num_layers=4, max_duration=1000)
    model = models.build_model("semicrf", config).to(device)
    step = _optimizer_step(model) if args.optimizer_step else (lambda: None)
    for _ in range(2):  # kernels compile and tune
        model.loss(x, y, lengths).backward()
        step()
    samples: dict[str, list[float]] = {}
    timed = _timer(samples, device)
    pauses = _gc_pauses()
    if args.gc_off:
        gc.disable()
    if args.gc_freeze:
        gc.freeze()
    for _ in range(args.repeat):
        hidden = timed("encoder forward", model.encode, x, lengths)
        detached = hidden.detach().requires_grad_()
        pauses.clear()
        loss = timed("head forward", model.head_loss, detached, y, lengths)
        samples.setdefault("  garbage collector pauses in it", []).append(sum(pauses))
        timed("head backward", loss.backward)
        timed("encoder backward", hidden.backward, detached.grad)
        timed("optimizer step", step)
    _wrap(triton_backend.Sweep, "_chunked_sweep", "  Sweep._chunked_sweep", timed)
    _wrap(models.SemiCRFTagger, "_scores", "  heads (_scores)", timed)
    _wrap(core, "make_problem", "  make_problem", timed)
    _wrap(backends, "get", "  backends.get", timed)
    _wrap(triton_backend, "Sweep", "  Sweep (chunked sweep, exact reruns)", timed)
    _wrap(triton_backend, "_forward_backward", "  _forward_backward (sweep + marginals)", timed)
    for _ in range(args.repeat):
        hidden = model.encode(x, lengths)
        detached = hidden.detach().requires_grad_()
        with count_exact_rows() as counts:
            loss = timed("head forward, sections timed", model.head_loss, detached, y, lengths)
        samples.setdefault("  rows flagged for the exact kernel (count)", []).append(counts[0] / 1e3)
        loss.backward()
        hidden.backward(detached.grad)
        step()
    gc.enable()
    gc.unfreeze()  # frozen objects are never collected; nanobind reports them as leaks at exit
    print(f"{torch.cuda.get_device_name(device)}, encoder {args.encoder}, B={args.batch_size}, T~20000, K=1000, "
          f"garbage collector {'off' if args.gc_off else 'frozen after warm-up' if args.gc_freeze else 'on'}, "
          f"optimizer step {'on' if args.optimizer_step else 'off'}")
    print("| section | median ms | all ms |\n|---|---:|---|")
    for label, values in samples.items():
        rest = values[1:] if len(values) > 1 else values
        print(f"| {label} | {statistics.median(rest) * 1e3:.1f} | {', '.join(f'{v * 1e3:.1f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
