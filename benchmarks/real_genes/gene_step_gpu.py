#!/usr/bin/env python3
"""Where a semicrf_gene training step on the imported fly loci spends its time, part by part.

    python3 benchmarks/real_genes/gene_step_gpu.py [--data-dir data/fly] [--batch 8] [--hidden-dim 128] \
        [--num-layers 2] [--max-duration 300] [--repeat 2] [--device cuda] [--json OUT]

The run's model (bilstm encoder, conv stem, the real layout's default states, 98 with
``--gene-long-runs tail-ends`` (62 with ``tail`` when this was first run), started from the training
split's counts) on three batches of training loci: two drawn at random and one holding the longest locus
(118 333 bases), padded as the run pads them. For each batch, ``--repeat`` times: the encoder, the state
scores, the engine's ``log_partition`` forward, the gold pieces' forward, and one backward through all,
each timed after a device sync; on a GPU also how many rows of the Triton sweeps went to the exact
kernel. Why (round 14, one H200): a GPU run of this model made no epoch of 55 steps in 9 minutes with
three runs on the card, and a first reading gave 5.8 s for the forward of a batch of 6 643 positions,
against 0.58 s for one of 31 030 (``docs/engine_gpu.md``, "fourteenth round").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exact_rows import count_exact_rows  # noqa: E402
from step_parts import path_step_parts  # noqa: E402

from semicrf.genomics import dataset  # noqa: E402
from semicrf.genomics.gene_model import TRAIN_STOP_PENALTY  # noqa: E402
from semicrf.genomics.models import ModelConfig, build_model  # noqa: E402


def batches(split, batch: int, seed: int = 0) -> list[list[int]]:
    """Three batches of indices: two at random, and the longest sequence with random others."""
    order = list(np.random.default_rng(seed).permutation(len(split)))
    longest = int(np.argmax([len(s) for s in split.sequences]))
    order.remove(longest)
    return [order[:batch], order[batch:2 * batch], [longest] + order[2 * batch:3 * batch - 1]]


def padded(split, index: list[int], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = np.array([len(split.sequences[i]) for i in index])
    codes = np.full((len(index), lengths.max()), 4, np.int64)
    labels = np.zeros_like(codes)
    for row, i in enumerate(index):
        codes[row, :lengths[row]] = split.sequences[i]
        labels[row, :lengths[row]] = split.labels[i]
    return (torch.from_numpy(codes).to(device), torch.from_numpy(labels).to(device),
            torch.from_numpy(lengths).to(device))


def measure(args) -> list[dict]:
    device = torch.device(args.device)
    train = dataset.load_split(args.data_dir, "train")
    config = ModelConfig(input_dim=5, num_classes=5, encoder="bilstm", hidden_dim=args.hidden_dim,
                         num_layers=args.num_layers, max_duration=args.max_duration, stem="conv")
    model = build_model("semicrf_gene", config, dataset.load_metadata(args.data_dir))
    model.initialise(train)
    model.to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for b, index in enumerate(batches(train, args.batch)):
        codes, labels, lengths = padded(train, index, device)
        x = torch.nn.functional.one_hot(codes, 5).float()
        for rep in range(args.repeat):
            t = {}
            sync()
            t0 = time.perf_counter()
            hidden = model.encode(x, lengths)
            sync()
            t["encoder_s"] = time.perf_counter() - t0
            parts, counts = path_step_parts(
                lambda: model.states_from_heads(*model.heads(hidden), codes, lengths, TRAIN_STOP_PENALTY),
                model.crf, labels, lengths, sync, count_exact_rows if device.type == "cuda" else None)
            t.update(parts)
            model.zero_grad(set_to_none=True)
            row = {"batch": b, "B": len(index), "T": int(codes.shape[1]), "repeat": rep, **t,
                   "exact_rows": counts[0], "sweep_rows": counts[1]}
            rows.append(row)
            print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="data/fly")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hidden-dim", type=int, default=128)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--max-duration", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gene_step_gpu: no CUDA GPU here; --device cpu runs the same steps on the CPU backend", file=sys.stderr)
        return 2
    rows = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "card": torch.cuda.get_device_name()
                                               if args.device == "cuda" else "cpu", "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
