#!/usr/bin/env python3
"""How long each Triton kernel of a semicrf_gene training step takes to compile, without a GPU.

    python3 benchmarks/compile_times.py [--gene-long-runs tail-ends] [--length 1500] [--max-duration 1000] \
        [--arch 90] [--json OUT]

Why: on a fresh GPU machine, training processes of the 44-state layout (``--gene-long-runs tail-ends``)
spent more than five minutes on the CPU (one core each, the GPU idle) before their first step, where
the 26-state layout began within seconds (docs/results.md, "Round 20"). A step's kernels are compiled
on its first call; this tells which one takes the time.

How: a child process runs one training step of a counts-started ``semicrf_gene`` (the loss forward and
backward, then the Viterbi decode) on a small generated data set under Triton's interpreter, and
records each kernel launch: its argument types, its compile-time constants and its warps (the sizes
that matter to the code, K and the state count, are the real ones; only T is small). This process then
compiles each distinct launch for ``sm_<arch>`` with the installed Triton and prints the seconds each
took. The device machine may run another Triton version; the argument specialisations of a real launch
(alignment, values of 1) are left out.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_lanes import arg_type  # noqa: E402  (argument types as Triton names them)


def record(args: argparse.Namespace) -> list[dict]:
    """Run one step under the interpreter and return each distinct kernel launch (in the child)."""
    import torch

    from semicrf.backends import triton_kernels as kernels
    from semicrf.genomics import dataset
    from semicrf.genomics.batches import Batcher
    from semicrf.genomics.dataset import GeneratorConfig, generate_dataset
    from semicrf.genomics.models import ModelConfig, build_model

    launches: dict[str, dict] = {}

    class Recorder:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel
            params = inspect.signature(kernel.fn).parameters
            self.names = list(params)
            self.constexpr = {n for n, p in params.items() if "constexpr" in str(p.annotation)}

        def __getitem__(self, grid):
            def launch(*a, **kw):
                sig, consts = {}, {}
                for n, v in [*zip(self.names, a), *kw.items()]:
                    if n in ("num_warps", "num_stages"):
                        continue
                    kind = arg_type(v)
                    if n in self.constexpr or kind is None:
                        consts[n] = v
                    else:
                        sig[n] = kind
                spec = {"kernel": self.name, "signature": {**sig, **{k: "constexpr" for k in consts}},
                        "constexprs": consts, "num_warps": kw.get("num_warps", 4),
                        "num_stages": kw.get("num_stages", 3)}
                launches.setdefault(json.dumps(spec, sort_keys=True, default=str), spec)
                return self.kernel[grid](*a, **kw)
            return launch

    for name in dir(kernels):
        if name.endswith("_kernel"):
            setattr(kernels, name, Recorder(name, getattr(kernels, name)))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "syn"
        generate_dataset(data, GeneratorConfig(seq_length=args.length, content="realistic"), num_train=8, num_val=1,
                         num_test=1, seed=1)
        meta, train = dataset.load_metadata(data), dataset.load_split(data, "train")
    config = ModelConfig(input_dim=5, num_classes=3, encoder="bilstm", hidden_dim=16, num_layers=1, stem="conv",
                         max_duration=args.max_duration, backend="triton", mixed_precision=False,
                         gene_long_runs=args.gene_long_runs, gene_inner_cuts=args.gene_inner_cuts)
    model = build_model("semicrf_gene", config, meta)
    model.initialise(train)
    index, (x, y, lengths) = next(iter(Batcher(train, "onehot", 2, torch.device("cpu")).in_length_order()))
    model.train()
    model.loss(x, y, lengths).backward()
    model.eval()
    with torch.no_grad():
        model.predict(x, lengths)
    return list(launches.values())


def compile_one(spec: dict, arch: int) -> float:
    """Seconds to compile one recorded launch for sm_<arch> (this process, no interpreter)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from semicrf.backends import triton_kernels as kernels

    src = ASTSource(fn=getattr(kernels, spec["kernel"]), signature=spec["signature"], constexprs=spec["constexprs"])
    start = time.perf_counter()
    triton.compile(src, target=GPUTarget("cuda", arch, 32),
                   options={"num_warps": spec["num_warps"], "num_stages": spec["num_stages"]})
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gene-long-runs", default="tail-ends")
    ap.add_argument("--gene-inner-cuts", default="free")
    ap.add_argument("--length", type=int, default=1500, help="bases per generated sequence (T of the step)")
    ap.add_argument("--max-duration", type=int, default=1000)
    ap.add_argument("--arch", type=int, default=90, help="compile for sm_ARCH (90: H100, H200)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--record", action="store_true", help=argparse.SUPPRESS)  # the child's part
    args = ap.parse_args(argv)
    if args.record:
        print(json.dumps(record(args), default=str))
        return 0
    env = dict(os.environ, TRITON_INTERPRET="1", TRITON_CACHE_DIR=tempfile.mkdtemp())
    child = [sys.executable, __file__, "--record", "--gene-long-runs", args.gene_long_runs, "--gene-inner-cuts",
             args.gene_inner_cuts, "--length", str(args.length), "--max-duration", str(args.max_duration)]
    out = subprocess.run(child, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stderr.strip()[-2000:])
    specs = json.loads(out.stdout.strip().splitlines()[-1])
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp()  # nothing from an earlier compile
    import triton

    rows = []
    for spec in specs:
        seconds = compile_one(spec, args.arch)
        keys = {k: v for k, v in spec["constexprs"].items() if k.isupper()}
        rows.append({"kernel": spec["kernel"], "seconds": round(seconds, 2), "num_warps": spec["num_warps"],
                     "constexprs": keys})
        print(json.dumps(rows[-1], default=str), flush=True)
    print(f"\nsemicrf_gene --gene-long-runs {args.gene_long_runs}, K = {args.max_duration}: every kernel of a "
          f"training step and a decode, compiled for sm_{args.arch} with Triton {triton.__version__}, no GPU")
    print("| kernel | warps | compile-time constants | compile s |")
    print("|---|---:|---|---:|")
    for r in rows:
        print(f"| {r['kernel']} | {r['num_warps']} | {r['constexprs']} | {r['seconds']:.1f} |")
    print(f"| total | | | {sum(r['seconds'] for r in rows):.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
