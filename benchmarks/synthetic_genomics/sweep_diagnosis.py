#!/usr/bin/env python3
"""Which sequences of a training batch make the Triton sweeps fall back to the exact kernel?

The step profile measured semicrf's output layer at 109 ms on 16 generator
sequences where the engine benchmark's log-likelihood takes 23 ms (and the
first 8 of the same sequences 23 ms). The chunked sweep flags rows whose
scores its linear-space look-back cannot hold exactly, and those rows are
redone by the exact per-step kernel. This script builds the same batch
(generator sequences, random content, seed 0), scores it with random
emissions, and reports per sequence and for the batch whether the sweeps of
``log_likelihood`` (unconstrained and constrained to the gold labels) took the
chunked or the exact path, and their time::

    python3 sweep_diagnosis.py --batch-size 16 --json out.json
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

from semicrf.backends import triton as tb
from semicrf.genomics.synthetic import GeneratorConfig, generate_sequences
from semicrf.problem import make_problem


def batch_problem(seqs, K: int, scale: float, device, seed: int = 0):
    lengths = torch.tensor([len(s.labels) for s in seqs])
    T = int(lengths.max())
    labels = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        labels[i, :len(s.labels)] = torch.from_numpy(s.labels.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    em = (scale * torch.randn(len(seqs), T, 3, generator=gen)).to(device)
    return make_problem(em, torch.zeros(3, 3, device=device), torch.zeros(K, 3, device=device),
                        lengths.to(device), labels=labels.to(device))


def timed_pair(p, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat + 1):
        torch.cuda.synchronize()
        start = time.perf_counter()
        tb.forward_backward_pair(p, need_marginals=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-length", type=int, default=20_000)
    ap.add_argument("--max-duration", type=int, default=1000)
    ap.add_argument("--scale", type=float, default=0.5, help="standard deviation of the random emissions")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device("cuda")
    seqs = list(generate_sequences(GeneratorConfig(seq_length=args.seq_length), args.batch_size, seed=0))
    out = {"gpu": torch.cuda.get_device_name(), "batch_size": args.batch_size, "K": args.max_duration,
           "scale": args.scale, "sequences": []}
    for name, part in (("batch", seqs), ("first half", seqs[: len(seqs) // 2])):
        p = batch_problem(part, args.max_duration, args.scale, device)
        sweep = tb.Sweep(p, (False, True), reverse=True)
        out[name] = {"method": sweep.method, "helped": sweep.helped, "pair_s": timed_pair(p)}
        print(name, out[name], flush=True)
    for i, s in enumerate(seqs):
        p = batch_problem([s], args.max_duration, args.scale, device, seed=i)
        runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, s.labels, -1]) != 0))
        row = {"index": i, "length": len(s.labels), "longest_run": int(runs.max()),
               "method": tb.Sweep(p, (False, True), reverse=True).method,
               "method_unconstrained": tb.Sweep(p, (False,), reverse=True).method,
               "method_constrained": tb.Sweep(p, (True,), reverse=True).method}
        out["sequences"].append(row)
        print(row, flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
