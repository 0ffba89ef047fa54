"""CPU cost of semicrf_gene's log-likelihood and gradient on one fly locus (43 states, both strands).

    python3 benchmarks/real_genes/gene_model_cost.py --data-dir data/fly --length 5000 --repeat 5

Random emissions over the model's states, the grammar's tables at zero parameters, the gold class
labels of the first training locus of at least ``--length`` bases (cut to that length). Four
ways, each timed forward + backward on one thread (median of ``--repeat`` after a warm-up):

- ``log_partition``: the unconstrained sum alone (the part no gold pass can avoid);
- ``penalty pair``: the gold pass as two ``log_partition`` calls, the states of other classes
  forbidden by a 1e4 emission penalty (how the model trained before ``label_classes``);
- ``label_classes``: ``log_likelihood(labels, label_classes=...)``, both sweeps in one call (the
  class labelling's likelihood: the model's objective until 2026-11-30);
- ``gold pieces``: ``GeneGrammar.path_log_likelihood``, the gold segmentation's likelihood, what
  the model trains by now: ``log_partition`` and a forward over the gold pieces.

Prints the times and how far the two likelihoods and their gradients differ.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from semicrf import log_likelihood, log_partition
from semicrf.genomics import dataset
from semicrf.genomics.gene_crf import long_run_states
from semicrf.genomics.gene_model import GeneGrammar
from semicrf.genomics.models import GENE_LONG_RUNS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data/fly", help="an imported fly data set (make fly-data)")
    p.add_argument("--length", type=int, default=5000)
    p.add_argument("--max-duration", type=int, default=300)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--gene-long-runs", default="tail-ends", choices=GENE_LONG_RUNS,
                   help="tail-ends: the model's default states (98); tail: 62; tail-exons: 80; pieces: the first "
                        "version's 43")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    split = dataset.load_split(args.data_dir, "train")
    i = next((i for i, s in enumerate(split.sequences) if len(s) >= args.length), None)
    if i is None:
        p.error(f"--length {args.length}: no training locus is that long")
    T = args.length
    grammar = GeneGrammar(max_duration=args.max_duration, backend="cpu", num_classes=5,
                          **long_run_states(args.gene_long_runs))
    S = grammar.num_states
    labels = torch.as_tensor(split.labels[i][:T]).long()[None]
    em = torch.randn(1, T, S, generator=torch.Generator().manual_seed(0), dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, T, S, dtype=torch.float64)
    lengths = torch.tensor([T])

    def full():
        return log_partition(em, lengths=lengths, start_scores=zero, end_scores=zero, backend="cpu",
                             **grammar.state_tables())

    def penalty():
        em_y, st_y, en_y = grammar.constrain(em, zero, zero, labels)
        gold = log_partition(em_y, lengths=lengths, start_scores=st_y, end_scores=en_y, backend="cpu",
                             **grammar.state_tables())
        return gold - full()

    def classes():
        return log_likelihood(em, labels, lengths=lengths, start_scores=zero, end_scores=zero, backend="cpu",
                              label_classes=grammar.state_class, **grammar.state_tables())

    def pieces():
        return grammar.path_log_likelihood(em, zero, zero, labels, lengths)

    rows, values = [], {}
    ways = (("log_partition", full), ("penalty pair", penalty), ("label_classes", classes), ("gold pieces", pieces))
    for name, f in ways:
        times = []
        for _ in range(args.repeat + 1):
            em.grad = None
            t0 = time.perf_counter()
            v = f()
            v.sum().backward()
            times.append(time.perf_counter() - t0)
        values[name] = (v.item(), em.grad.clone())
        rows.append((name, statistics.median(times[1:])))
    print(f"locus {split.names[i] if hasattr(split, 'names') else i}, T = {T}, {S} states, K = {args.max_duration}, "
          "one thread")
    print("| way | forward + backward (s, median) |\n|---|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} |")
    (a, ga), (b, gb) = values["penalty pair"], values["label_classes"]
    print(f"log P(gold): penalty pair {a:.9f}, label_classes {b:.9f}; |difference| {abs(a - b):.2e}; "
          f"largest gradient difference {(ga - gb).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
