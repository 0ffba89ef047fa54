#!/usr/bin/env python3
"""How far semicrf_gene's look-back values spread inside the Triton sweep's blocks: what decides whether
its chunked sweep holds a row or sends it to the exact kernel.

    python3 benchmarks/gene_model_spread.py [--length 20000] [--max-duration 1000] [--seed 0]

One synthetic realistic sequence (the generator, seed 0), random class and codon scores as in
``gene_model_gpu.py``, the grammar's states at their start (``--gene-long-runs tail``, splice sites on) at
the training stop penalty. The reference backend's forward sweep gives ``g[s, c] = u - cum + start`` at
every position and state; per block of the chunked sweep's positions (64 for K > 256, else 32) and state,
the finite g's distance below the block's largest is what the kernel's guard compares with its limit
(``weights_kernel``'s gsp: 700 less the state's finite duration scores' spread, at least 400). Prints
the worst distance, the count of values past 400 and past the limit, and where the worst is. CPU only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gene_model_gpu import gene_batch  # noqa: E402

from semicrf.backends import reference  # noqa: E402
from semicrf.backends.triton import PRODUCT_SPREAD, SPREAD_G, chunk_config  # noqa: E402
from semicrf.genomics.gene_crf import long_run_states  # noqa: E402
from semicrf.genomics.gene_model import TRAIN_STOP_PENALTY, GeneGrammar  # noqa: E402
from semicrf.problem import make_problem  # noqa: E402


def block_spreads(g: torch.Tensor, q: int) -> torch.Tensor:
    """(T, S) distances of each finite g below the largest finite g of its block of q positions and
    state (0 where g is -inf)."""
    T, S = g.shape
    pad = (-T) % q
    x = torch.cat([g, torch.full((pad, S), float("-inf"), dtype=g.dtype)]).view(-1, q, S)
    top = x.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return torch.where(torch.isfinite(x), top - x, torch.zeros_like(x)).view(-1, S)[:T]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--length", type=int, default=20_000)
    p.add_argument("--max-duration", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    K = args.max_duration
    grammar = GeneGrammar(K, backend="cpu", num_classes=3, **long_run_states("tail"))
    codes, labels, lengths = gene_batch(1, args.length, torch.device("cpu"), seed=args.seed)
    T = codes.shape[1]
    gen = torch.Generator().manual_seed(args.seed)
    class_scores, codon_scores = torch.randn(1, T, 3, generator=gen), torch.randn(1, T, 3, generator=gen)
    with torch.no_grad():
        em, start, end = grammar.state_scores(class_scores, codon_scores, codes, lengths,
                                              stop_penalty=TRAIN_STOP_PENALTY)
        tables = grammar.state_tables()
        prob = make_problem(em, tables["transitions"], tables["durations"], lengths, tables["initial"],
                            tables["final"], start, end)
        _, g = reference._forward(prob, reference.duration_limits(prob, False))
    q = chunk_config(K, labels=grammar.num_states)[0]
    spread = block_spreads(g[0], q)
    d = prob.durations
    fin = torch.isfinite(d)
    d_spread = torch.where(fin.any(0), d.masked_fill(~fin, -torch.inf).amax(0) - d.masked_fill(~fin, torch.inf).amin(0),
                           0.0)
    limit = (PRODUCT_SPREAD - d_spread).clamp(min=SPREAD_G)  # the kernel's rule, on the host
    worst = float(spread.max())
    t, s = divmod(int(spread.argmax()), spread.shape[1])
    print(f"T = {T}, K = {K}, {grammar.num_states} states, blocks of {q}, training stop penalty {TRAIN_STOP_PENALTY}")
    print("| worst spread (nats) | values past 400 | values past the limit | limit (min over states) | worst at |")
    print("|---:|---:|---:|---:|---|")
    print(f"| {worst:.1f} | {int((spread > SPREAD_G).sum())} | {int((spread > limit[None]).sum())} | "
          f"{float(limit.min()):.0f} | position {t}, state {s} ({'exon' if bool(grammar.is_exon[s]) else 'other'}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
