#!/usr/bin/env python3
"""The chunked log sweep at many labels: time, registers and spills for each chunk length and warp
count, to choose them by the label count as well as by K.

    python3 benchmarks/sweep_lanes.py --scan [--sizes 16x20000x1000x44,8x6643x300x98] \
        [--configs 64x16,32x16,16x16,32x8,16x8] [--repeat 3] [--timeout 60] [--jsonl OUT]
    python3 benchmarks/sweep_lanes.py --one BxTxKxC --chunk Q --warps W [--repeat 3]
    python3 benchmarks/sweep_lanes.py --offline [--sizes ...] [--configs ...] [--arch 90]   # no GPU needed

Why: ``chunk_config`` picked (chunk, warps) by K alone, measured at C = 3 (docs/engine_gpu.md, "Chunk
and warps"; by the label count too since "Chunk and warps by labels"); the chunked sweep keeps
(chunk, lanes) tiles of float64 in registers, lanes = C rounded up to a power of two. semicrf_gene's 44 states (64 lanes) ran past 150 s for a step that takes
0.40 s at 26 states (32 lanes), and the fly model's 98 states (128 lanes) took 27 s for the
``log_partition`` forward of 8 x 6 643 positions (round 17, an H100). Spilled registers are the
suspect; this measures it.

``--one`` times ``Sweep(p)`` (the forward log sweep alone, random scores, seed 0) after a first call
(compilation) and prints a JSON line with the median, the first call's time, whether any row went to
the exact kernel, and the registers and spills of the compiled kernels. ``--scan`` runs ``--one`` in
a process per (size, config): first all at once (they compile on the CPU side by side), then one
after the other for the times (nothing else on the GPU), each under ``--timeout`` seconds. A
candidate then goes through the whole step: ``gene_model_gpu.py --chunk Q --warps W --no-decode``.

``--offline`` needs no GPU: for each (size, config) it records the chunked kernel's launch (the
arguments' types and the compile-time constants, from a run under Triton's interpreter, in a child
process) and compiles it for ``sm_<arch>`` with the installed Triton's ptxas, then reads the
registers, stack frame and shared memory per thread from the cubin (``cuobjdump -res-usage``) and the
bytes of spill stores and loads from ``ptxas -v`` on the same PTX (the stack frame also holds arrays
that are indexed at run time, so it is not all spills); once
without and once with the far-part helper role (``HELP``, with its fence), as the GPU picks by the
row count. The numbers are this Triton's (the device machine may have another version) and leave out
the argument specialisations (alignment, values of 1) that a real launch adds; no times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(size: str, chunk: int, warps: int, repeat: int) -> dict:
    """One (size, chunk, warps): the row of the module docstring. Without a GPU, under Triton's
    interpreter on CPU tensors (a smoke test: times mean nothing there)."""
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


KERNEL = "chunk_linear_sweep_kernel"
_POINTEE = {"float64": "fp64", "float32": "fp32", "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8",
            "uint8": "u8", "bool": "i1"}


def arg_type(value) -> str | None:
    """The Triton signature type of one runtime argument of a launch (None for None: a constant)."""
    import torch

    if value is None:
        return None
    if torch.is_tensor(value):
        return "*" + _POINTEE[str(value.dtype).removeprefix("torch.")]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
    return "fp32"


def launch_spec(size: str, chunk: int, warps: int) -> dict:
    """The chunked kernel's launch for random scores of ``size`` (run under the interpreter: set
    TRITON_INTERPRET=1 before importing Triton): its argument types, compile-time constants and warps."""
    import inspect

    import torch

    sys.path.insert(0, str(ROOT / "src"))
    from semicrf.backends import triton as tb
    from semicrf.backends import triton_kernels as kernels
    from semicrf.problem import make_problem

    names = list(inspect.signature(getattr(kernels, KERNEL).fn).parameters)
    spec = {}

    class Recorded(Exception):
        pass

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                sig = {name: arg_type(v) for name, v in zip(names, args)}
                consts = {k: v for k, v in kwargs.items() if k not in ("num_warps", "num_stages")}
                spec.update(signature={**sig, **{k: "constexpr" for k in consts}}, constexprs=consts,
                            num_warps=kwargs.get("num_warps", 4))
                raise Recorded
            return launch

    B, T, K, C = (int(x) for x in size.split("x"))
    g = torch.Generator().manual_seed(0)
    p = make_problem(torch.randn(B, T, C, generator=g), 0.1 * torch.randn(C, C, generator=g),
                     0.1 * torch.randn(K, C, generator=g), torch.full((B,), T))
    kernel = getattr(kernels, KERNEL)
    setattr(kernels, KERNEL, Recorder())
    try:
        tb.Sweep(p, config=tb.TritonConfig(chunk=chunk, chunk_warps=warps))
    except Recorded:
        return spec
    finally:
        setattr(kernels, KERNEL, kernel)
    raise RuntimeError(f"{size}: the chunked kernel was not launched")


def resources(spec: dict, arch: int, helped: bool) -> dict:
    """Registers, stack and shared memory per thread of the kernel of ``spec`` compiled for sm_<arch>."""
    import re
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sys.path.insert(0, str(ROOT / "src"))
    from semicrf.backends import triton_kernels as kernels

    consts = {**spec["constexprs"], "HELP": helped, "FENCE": helped}
    src = ASTSource(fn=getattr(kernels, KERNEL), signature=spec["signature"], constexprs=consts)
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": spec["num_warps"]})
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    with tempfile.TemporaryDirectory() as tmp:
        cubin, ptx = os.path.join(tmp, "k.cubin"), os.path.join(tmp, "k.ptx")
        Path(cubin).write_bytes(compiled.asm["cubin"])
        Path(ptx).write_text(compiled.asm["ptx"])
        text = subprocess.run([str(tools / "cuobjdump"), "-res-usage", cubin], capture_output=True, text=True,
                              check=True).stdout
        # ptxas -v tells the spills apart from the rest of the stack frame (arrays indexed at run time).
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        try:  # the ptxas Triton itself uses for this arch (it ships more than one)
            from triton.backends.nvidia.compiler import get_ptxas

            ptxas = get_ptxas(arch).path
        except ImportError:
            ptxas = str(tools / "ptxas")
        verbose = subprocess.run([ptxas, "-v", f"--gpu-name={gpu}", ptx, "-o", os.devnull],
                                 capture_output=True, text=True, check=True).stderr
    line = text[text.index(f"Function {KERNEL}"):]
    out = {k.lower(): int(re.search(rf"\b{k}:(\d+)", line).group(1)) for k in ("REG", "STACK", "SHARED", "LOCAL")}
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", verbose)
    out["spill_stores"], out["spill_loads"] = (int(spills.group(1)), int(spills.group(2))) if spills else (None, None)
    return out


def _record(row: dict, jsonl: Path | None) -> None:
    """Print one result row as a JSON line, and append it to ``jsonl`` when given."""
    print(json.dumps(row), flush=True)
    if jsonl:
        with jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")


def offline(sizes: list, configs: list, arch: int, jsonl: Path | None) -> None:
    rows = []
    env = dict(os.environ, TRITON_INTERPRET="1")  # the launch is recorded under the interpreter
    for size in sizes:
        for q, w in configs:
            out = subprocess.run([sys.executable, __file__, "--spec", size, "--chunk", str(q), "--warps", str(w)],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip().splitlines()[-1])
            spec = json.loads(out.stdout.strip().splitlines()[-1])
            for helped in (False, True):
                row = {"size": size, "chunk": q, "warps": w, "QS": spec["constexprs"]["QS"], "helper": helped,
                       "arch": f"sm_{arch}", **resources(spec, arch, helped)}
                rows.append(row)
                _record(row, jsonl)
    import triton

    print(f"\nTriton {triton.__version__}, compiled for sm_{arch} without a GPU (registers per thread, "
          "stack frame and spills in bytes per thread)")
    print("| B x T x K x C | chunk | warps | sub-block | helper role | registers | stack B | spill stores / "
          "loads B | shared B |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | {r['chunk']} | {r['warps']} | {r['QS']} | {'yes' if r['helper'] else 'no'} | "
              f"{r['reg']} | {r['stack']} | {r['spill_stores']} / {r['spill_loads']} | {r['shared']} |")


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
        _record(row, jsonl)
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
    ap.add_argument("--offline", action="store_true", help="registers and spills without a GPU (see above)")
    ap.add_argument("--spec", metavar="BxTxKxC", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--arch", type=int, default=90, help="--offline: compile for sm_ARCH (90: H100, H200)")
    ap.add_argument("--sizes", default="16x20000x1000x44,8x6643x300x98")
    ap.add_argument("--configs", default="64x16,32x16,16x16,32x8,16x8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=60, help="seconds for each timed process")
    ap.add_argument("--jsonl", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.chunk, args.warps, args.repeat)))
        return 0
    if args.spec:
        print(json.dumps(launch_spec(args.spec, args.chunk, args.warps)))
        return 0
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    if args.offline:
        offline(args.sizes.split(","), configs, args.arch, args.jsonl)
        return 0
    if not args.scan:
        ap.error("give --scan, --offline or --one BxTxKxC")
    scan(args.sizes.split(","), configs, args.repeat, args.timeout, args.jsonl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
