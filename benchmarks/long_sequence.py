#!/usr/bin/env python3
"""One long sequence: log_partition and marginals whole (the chain walked step after step) and in
windows that run side by side (semicrf.windows), side by side, with their agreement.

    python3 benchmarks/long_sequence.py [--length 21000000] [--max-duration 1000] [--labels 3] \
        [--device cuda|cpu] [--threads N] [--chunk 65536] [--warm-up N] [--repeat 1] [--json OUT]

Random scores (seed 0; emissions N(0, 1), transitions and durations 0.1 N(0, 1)), B = 1, float32
inputs as a user gives them. For each of log_partition and marginals: the time whole
(``windows=None``) and in windows (``WindowConfig(min_length=1, chunk, warm_up)``), the second
call of each timed (the first compiles on a GPU), the peak GPU memory of each beyond the inputs,
the windows' largest boundary distance, how far the two answers are apart (log Z: absolute
and relative; marginals: the largest absolute difference), and for each the largest departure of
a position's marginals from summing to 1 (an invariant, so a measure of each one's own error). ``--skip-whole`` leaves out the
whole-row calls (on the CPU they take one thread a long time). Prints a table and, with --json,
the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import semicrf  # noqa: E402
from semicrf import backends  # noqa: E402
from semicrf.problem import make_problem  # noqa: E402
from semicrf.windows import WindowConfig, forward_alpha  # noqa: E402


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, repeat: int):
    """(result of the last call, median seconds of ``repeat`` calls after a first, untimed one,
    the first call's seconds, peak GPU GiB beyond what was allocated before)."""
    base = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    times.sort()
    peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**30 if dev.type == "cuda" else None
    return out, (times[len(times) // 2] if times else first), first, peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=21_000_000)
    ap.add_argument("--max-duration", type=int, default=1000)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--chunk", type=int, default=1 << 16)
    ap.add_argument("--warm-up", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="timed calls after the first (0: time the first)")
    ap.add_argument("--skip-whole", action="store_true", help="only the windows")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU here; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    T, K, C = args.length, args.max_duration, args.labels
    g = torch.Generator(device=dev).manual_seed(0)
    em = torch.randn(1, T, C, device=dev, generator=g)
    tr = 0.1 * torch.randn(C, C, device=dev, generator=g)
    du = 0.1 * torch.randn(K, C, device=dev, generator=g)
    cfg = WindowConfig(min_length=1, chunk=args.chunk, warm_up=args.warm_up)
    chunk, warm = cfg.sizes(K)
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    row = {"T": T, "K": K, "C": C, "device": card, "chunk": chunk, "warm_up": warm}
    with torch.no_grad():
        p = make_problem(em, tr, du)
        mod = backends.get("auto", p)
        _, dists = forward_alpha(mod, p, cfg)
        row["boundary_distance"] = max(dists)
        calls = {"log_partition": lambda w: semicrf.log_partition(em, tr, du, windows=w),
                 "marginals": lambda w: semicrf.marginals(em, tr, du, windows=w)}
        for name, call in calls.items():
            out_w, s, first, peak = timed(lambda: call(cfg), dev, args.repeat)
            row[f"{name}_windows_s"], row[f"{name}_windows_first_s"], row[f"{name}_windows_gib"] = s, first, peak
            if name == "marginals":  # an invariant: the labels' probabilities sum to 1 at every position
                row["marginals_windows_sum_err"] = (out_w.sum(-1) - 1).abs().max().item()
            if args.skip_whole:
                continue
            out, s, first, peak = timed(lambda: call(None), dev, args.repeat)
            row[f"{name}_whole_s"], row[f"{name}_whole_first_s"], row[f"{name}_whole_gib"] = s, first, peak
            if name == "marginals":
                row["marginals_whole_sum_err"] = (out.sum(-1) - 1).abs().max().item()
            diff = (out_w.double() - out.double()).abs().max().item()
            row[f"{name}_max_abs_diff"] = diff
            if name == "log_partition":
                row["log_z"] = out.item()
                row["log_z_rel_diff"] = diff / abs(out.item())
            del out
            del out_w
    print(json.dumps(row))
    print(f"\n| call | whole | windows | ratio | peak whole / windows | agreement | device |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name in calls:
        w = row[f"{name}_windows_s"]
        whole = row.get(f"{name}_whole_s")
        gib = lambda k: "-" if row.get(k) is None else f"{row[k]:.2f} GiB"  # noqa: E731
        agree = "-" if whole is None else (f"log Z rel {row['log_z_rel_diff']:.1e}" if name == "log_partition"
                                           else f"max abs {row['marginals_max_abs_diff']:.1e}")
        print(f"| {name} (T {T}, K {K}, C {C}) | {'-' if whole is None else f'{whole:.2f} s'} | {w:.2f} s | "
              f"{'-' if whole is None else f'{whole / w:.1f}x'} | {gib(f'{name}_whole_gib')} / {gib(f'{name}_windows_gib')} | "
              f"{agree} | {card} |")
    print(f"\nwindows: chunk {chunk}, warm-up {warm}, largest boundary distance {row['boundary_distance']:.2e} nats; "
          f"largest |sum over labels of P - 1|: windows {row['marginals_windows_sum_err']:.1e}, whole "
          f"{row.get('marginals_whole_sum_err', float('nan')):.1e}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
