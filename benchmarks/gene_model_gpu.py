#!/usr/bin/env python3
"""Cost of semicrf_gene's engine call at the spec's size: its training objective forward + backward and
its Viterbi decode over the grammar's states.

    python3 benchmarks/gene_model_gpu.py [--batch 16 --length 20000 --max-duration 1000] [--repeat 5] \
        [--device cuda] [--split-far auto|off] [--chunk Q --warps W] [--no-decode] [--objective path|labelling] \
        [--json out.json]

Synthetic realistic sequences (C = 3: 16 states) from the generator, seed 0; random class and codon
scores in place of the heads' (float32, needing gradients); the grammar's codon rules from the bases;
the gold class labels. One timed step is ``GeneGrammar.state_scores`` (the scores over the states) and
the objective, forward and backward: ``path`` (default), what training runs,
``GeneGrammar.path_log_likelihood`` (the engine's ``log_partition`` and a forward over the gold pieces)
at the training stop penalty; ``labelling``, ``GeneGrammar.log_likelihood`` (one engine call with
``label_classes``) at the hard penalty, the objective measured before 2026-11-30. The decode is
``GeneGrammar.decode``. Median of ``--repeat`` after a warm-up, and on a GPU the peak memory beyond
the inputs, and how many rows of the Triton sweeps of one more step were sent to the exact kernel. Beside
them: the warm-up step's time (on a fresh GPU machine, the kernels' compilation for this state count) and
the ``path`` step split into its parts, each synchronised on its own (median of ``--repeat``): the state
scores, the engine's ``log_partition`` forward, the forward over the gold pieces, and the backward of both;
so a slow step says where it is slow. The issue's target on an H200: 60 ms and 1 GiB for the step. Time
it with nothing else on the GPU: processes sharing one GPU take turns on it, and each runs several times
slower (measured in round 16, docs/results.md). Runs on the CPU as well
(``--device cpu``: the CPU backend), for a smoke test at a small size.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:
    import semicrf  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exact_rows import count_exact_rows  # noqa: E402
from step_parts import PARTS, path_step_parts  # noqa: E402

from semicrf.genomics.gene_crf import long_run_states  # noqa: E402
from semicrf.genomics.gene_model import TRAIN_STOP_PENALTY, GeneGrammar  # noqa: E402
from semicrf.genomics.models import GENE_LONG_RUNS  # noqa: E402
from semicrf.genomics.synthetic import GeneratorConfig, generate_sequences  # noqa: E402


def gene_batch(batch: int, length: int, device: torch.device, seed: int = 0):
    """(codes (B, T) int64, 4 past each length; labels (B, T); lengths (B,)) of realistic sequences."""
    seqs = list(generate_sequences(GeneratorConfig(seq_length=length, content="realistic"), batch, seed=seed))
    lengths = np.array([len(s.labels) for s in seqs])
    T = int(lengths.max())
    codes = np.full((batch, T), 4, np.int64)
    labels = np.zeros((batch, T), np.int64)
    for i, s in enumerate(seqs):
        codes[i, :lengths[i]] = s.codes
        labels[i, :lengths[i]] = s.labels
    return (torch.from_numpy(codes).to(device), torch.from_numpy(labels).to(device),
            torch.from_numpy(lengths).to(device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, repeat: int, device: torch.device) -> tuple[float, float]:
    """(median of ``repeat`` timed calls after one warm-up, the warm-up's own time) in seconds."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), warm


def step_parts(grammar: GeneGrammar, class_scores, codon_scores, codes, labels, lengths, repeat: int,
               device: torch.device) -> dict:
    """The ``path`` objective's step in parts (``step_parts.path_step_parts``), median of ``repeat``, after
    the timed step has warmed every kernel."""
    runs = [path_step_parts(lambda: grammar.state_scores(class_scores, codon_scores, codes, lengths,
                                                         stop_penalty=TRAIN_STOP_PENALTY),
                            grammar, labels, lengths, lambda: _sync(device))[0] for _ in range(repeat)]
    return {part: statistics.median(r[part] for r in runs) for part in PARTS}


def measure(batch: int, length: int, max_duration: int, repeat: int, device: torch.device,
            split_far: str = "auto", objective: str = "path", long_runs: str = "tail", chunk: int | None = None,
            warps: int | None = None, decode_too: bool = True) -> dict:
    backend = "cpu" if device.type == "cpu" else "triton"
    if split_far != "auto" or chunk or warps:
        from semicrf.backends.triton import Configured, TritonConfig

        backend = Configured(TritonConfig(split_far=split_far, chunk=chunk, chunk_warps=warps))
    grammar = GeneGrammar(max_duration, backend=backend, num_classes=3, **long_run_states(long_runs)).to(device)
    codes, labels, lengths = gene_batch(batch, length, device)
    g = torch.Generator(device=device).manual_seed(0)
    T = codes.shape[1]
    class_scores = torch.randn(batch, T, 3, device=device, generator=g).requires_grad_()
    codon_scores = torch.randn(batch, T, 3, device=device, generator=g).requires_grad_()
    values = []

    def step():
        if objective == "path":  # what training runs: the gold pieces, the training stop penalty
            em, start, end = grammar.state_scores(class_scores, codon_scores, codes, lengths,
                                                  stop_penalty=TRAIN_STOP_PENALTY)
            ll = grammar.path_log_likelihood(em, start, end, labels, lengths)
        else:  # the class labelling's likelihood at the hard stop penalty (the objective until 2026-11-30)
            em, start, end = grammar.state_scores(class_scores, codon_scores, codes, lengths)
            ll = grammar.log_likelihood(em, start, end, labels, lengths)
        (-ll.sum()).backward()
        values.append(ll.detach())

    def decode():
        with torch.no_grad():
            em, start, end = grammar.state_scores(class_scores, codon_scores, codes, lengths)
            grammar.decode(em, start, end, lengths)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    step_s, warm_s = _timed(step, repeat, device)
    peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None
    decode_s, decode_warm_s = _timed(decode, repeat, device) if decode_too else (None, None)
    parts = step_parts(grammar, class_scores, codon_scores, codes, labels, lengths, repeat, device) \
        if objective == "path" else {}
    exact_rows = rows = None
    if device.type == "cuda":
        with count_exact_rows() as counts:
            step()
        exact_rows, rows = counts
    ll = values[-1].double().cpu()
    return {"B": batch, "T": T, "K": max_duration, "states": grammar.num_states, "device": str(device),
            "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "split_far": split_far, "chunk": chunk, "warps": warps, "objective": objective, "ll_fwd_bwd_s": step_s, "warm_up_step_s": warm_s,
            "warm_up_viterbi_s": decode_warm_s, **parts,
            "rows_to_exact_kernel": exact_rows, "sweep_rows": rows, "peak_extra_gib": peak, "viterbi_s": decode_s,
            "log_likelihood_per_position": float(ll.sum()) / int(lengths.sum()),
            "all_finite": bool(torch.isfinite(ll).all()) and all(math.isfinite(x.grad.abs().sum().item())
                                                                 for x in (class_scores, codon_scores))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=20_000)
    p.add_argument("--max-duration", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--split-far", default="auto", choices=("auto", "off"))
    p.add_argument("--chunk", type=int, default=None, help="positions per chunk of the chunked sweep (default: "
                   "chunk_config's, by K and the state count)")
    p.add_argument("--warps", type=int, default=None,
                   help="warps per program of the chunked sweep (default: by K and the state count)")
    p.add_argument("--no-decode", action="store_true", help="time the step only, not the Viterbi decode (whose "
                   "first call compiles for a minute or more on a fresh machine)")
    p.add_argument("--objective", default="path", choices=("path", "labelling"),
                   help="path: the training objective (GeneGrammar.path_log_likelihood, training stop penalty); "
                        "labelling: GeneGrammar.log_likelihood at the hard penalty, as measured before 2026-11-30")
    p.add_argument("--gene-long-runs", default="tail-ends", choices=GENE_LONG_RUNS,
                   help="tail-ends: the model's default states (44: tail copies of intergenic and introns, a long "
                        "intron's first and last pieces apart); tail: 26 (the tail copies alone); tail-exons: 32 "
                        "(exons too); pieces: the first version's 16 states")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU here; use --device cpu for a small smoke run")
    row = measure(args.batch, args.length, args.max_duration, args.repeat, torch.device(args.device), args.split_far,
                  args.objective, args.gene_long_runs, args.chunk, args.warps, not args.no_decode)
    print(json.dumps(row))
    peak = "-" if row["peak_extra_gib"] is None else f"{row['peak_extra_gib']:.2f} GiB"
    exact = "-" if row["sweep_rows"] is None else f"{row['rows_to_exact_kernel']} of {row['sweep_rows']}"
    viterbi = "-" if row["viterbi_s"] is None else f"{row['viterbi_s'] * 1e3:.1f} ms"
    print("\n| B, T, K, states | objective | fwd + bwd | peak beyond inputs | viterbi | rows to the exact kernel | card |")
    print("|---|---|---:|---:|---:|---:|---|")
    print(f"| {row['B']}, {row['T']}, {row['K']}, {row['states']} | {row['objective']} | {row['ll_fwd_bwd_s'] * 1e3:.1f} ms | {peak} | "
          f"{viterbi} | {exact} | {row['card']} |")
    if "log_partition_fwd_s" in row:
        print("\nparts of the step: " + ", ".join(
            f"{key[:-2].replace('_', ' ')} {row[key] * 1e3:.1f} ms"
            for key in ("state_scores_s", "log_partition_fwd_s", "gold_pieces_fwd_s", "backward_s"))
              + f"; warm-up step {row['warm_up_step_s']:.1f} s"
              + ("" if row["warm_up_viterbi_s"] is None else f", warm-up Viterbi {row['warm_up_viterbi_s']:.1f} s"))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=1) + "\n")
    return 0 if row["all_finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
