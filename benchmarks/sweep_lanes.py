#!/usr/bin/env python3
"""The chunked log sweep at many labels: time, registers and spills for each chunk length and warp
count, to choose them by the label count as well as by K.

    python3 benchmarks/sweep_lanes.py --scan [--sizes 16x20000x1000x44,8x6643x300x98] \
        [--configs 64x16,32x16,16x16,32x8,16x8] [--repeat 3] [--timeout 60] [--jsonl OUT]
    python3 benchmarks/sweep_lanes.py --one BxTxKxC --chunk Q --warps W [--repeat 3]

Why: ``chunk_config`` picks (chunk, warps) by K alone, measured at C = 3 (docs/engine_gpu.md, "Chunk
and warps"); the chunked sweep keeps (chunk, lanes) tiles of float64 in registers, lanes = C rounded
up to a power of two. semicrf_gene's 44 states (64 lanes) ran past 150 s for a step that takes
0.40 s at 26 states (32 lanes), and the fly model's 98 states (128 lanes) took 27 s for the
``log_partition`` forward of 8 x 6 643 positions (round 17, an H100). Spilled registers are the
suspect; this measures it.

``--one`` times ``Sweep(p)`` (the forward log sweep alone, random scores, seed 0) after a first call
(compilation) and prints a JSON line with the median, the first call's time, whether any row went to
the exact kernel, and the registers and spills of the compiled kernels. ``--scan`` runs ``--one`` in
a process per (size, config): first all at once (they compile on the CPU side by side), then one
after the other for the times (nothing else on the GPU), each under ``--timeout`` seconds. A
candidate then goes through the whole step: ``gene_model_gpu.py --chunk Q --warps W --no-decode``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(size: str, chunk: int, warps: int, repeat: int) -> dict:
    """One (size, chunk, warps): the row of the module docstring. Without a GPU, under Triton's
    interpreter on CPU tensors (a smoke test: times mean nothing there)."""
    import os

    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sys.path.insert(0, str(ROOT / "src"))
    from semicrf.backends import triton as tb
    from semicrf.backends import triton_kernels as kernels
    from semicrf.problem import make_problem

    B, T, K, C = (int(x) for x in size.split("x"))
    g = torch.Generator(device=dev).manual_seed(0)
    p = make_problem(torch.randn(B, T, C, device=dev, generator=g), 0.1 * torch.randn(C, C, device=dev, generator=g),
                     0.1 * torch.randn(K, C, device=dev, generator=g), torch.full((B,), T, device=dev))
    cfg = tb.TritonConfig(chunk=chunk, chunk_warps=warps)

    def run():
        t0 = time.perf_counter()
        s = tb.Sweep(p, config=cfg)
        if dev == "cuda":
            torch.cuda.synchronize()
        return s, time.perf_counter() - t0

    sweep, first = run()
    times = sorted(run()[1] for _ in range(repeat))
    compiled = {}
    for name in ("chunk_linear_sweep_kernel", "sweep_kernel"):
        for cache in getattr(getattr(kernels, name), "device_caches", {}).values():
            table = cache[0] if isinstance(cache, tuple) else cache
            compiled[name] = [{"regs": getattr(k, "n_regs", None), "spills": getattr(k, "n_spills", None)}
                              for k in table.values()]
    return {"size": size, "chunk": chunk, "warps": warps,
            "card": torch.cuda.get_device_name() if dev == "cuda" else "cpu (interpreter)",
            "first_s": round(first, 3), "median_ms": round(1e3 * times[len(times) // 2], 2) if times else None,
            "method": sweep.method, "helped": sweep.helped, "compiled": compiled}


def scan(sizes: list, configs: list, repeat: int, timeout: int, jsonl: Path | None) -> None:
    jobs = [(s, *c) for s in sizes for c in configs]

    def cmd(size, q, w, rep):
        return [sys.executable, __file__, "--one", size, "--chunk", str(q), "--warps", str(w), "--repeat", str(rep)]

    t0 = time.perf_counter()
    warm = [subprocess.Popen(cmd(*j, 0), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for j in jobs]
    for proc in warm:
        try:
            proc.wait(timeout=max(1.0, 4 * timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"compiled side by side in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for size, q, w in jobs:
        try:
            out = subprocess.run(cmd(size, q, w, repeat), capture_output=True, text=True, timeout=timeout)
            line = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None
            row = json.loads(line) if line else {"size": size, "chunk": q, "warps": w,
                                                 "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
        except subprocess.TimeoutExpired:
            row = {"size": size, "chunk": q, "warps": w, "error": f"past {timeout} s"}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if jsonl:
            with jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print("\n| B x T x K x C | chunk | warps | log sweep | first call | regs / spills (chunked kernel) | card |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        k = (r.get("compiled") or {}).get("chunk_linear_sweep_kernel") or [{}]
        med = r.get("median_ms")
        print(f"| {r['size']} | {r['chunk']} | {r['warps']} | {r.get('error') or f'{med:.1f} ms'} | "
              f"{r.get('first_s', '-')} | {k[-1].get('regs')} / {k[-1].get('spills')} | {r.get('card', '-')} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--one", metavar="BxTxKxC", default=None)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--warps", type=int, default=16)
    ap.add_argument("--scan", action="store_true")
    ap.add_argument("--sizes", default="16x20000x1000x44,8x6643x300x98")
    ap.add_argument("--configs", default="64x16,32x16,16x16,32x8,16x8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=60, help="seconds for each timed process")
    ap.add_argument("--jsonl", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.chunk, args.warps, args.repeat)))
        return 0
    if not args.scan:
        ap.error("give --scan or --one BxTxKxC")
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    scan(args.sizes.split(","), configs, args.repeat, args.timeout, args.jsonl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
