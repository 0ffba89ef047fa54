"""Which of a trained model's parameter groups moved its decoding: swap them between two checkpoints.

A run keeps two checkpoints of each model, ``<model>_best.pt`` (the best validation boundary F1) and
``<model>_last.pt`` (the last step). When the validation boundary F1 falls over training while the loss
keeps falling, this script tells which parameters carry the fall: it decodes the first ``--limit``
sequences of a split with one checkpoint's parameters, some of them taken from the other, and prints
boundary F1, segment F1, the loss per position and the number of predicted segments for each swap.

    python3 table_swap.py --data-dir syn --run-dir OUT --model semicrf_gene --limit 12 \\
        --swap best last last:encoder=best last:sites.weight=best

A swap is ``BASE`` (one checkpoint whole) or ``BASE:GROUP=DONOR[,GROUP=DONOR...]``: BASE's parameters
with each GROUP from DONOR. A GROUP is ``encoder`` (the shared encoder and the heads on it:
``encoder.*``, ``emission.*``, ``boundary_head.*``), ``tables`` (every other parameter: content, sites,
the grammar's transitions, lengths and penalties) or a parameter's name (``crf.durations``).
The parameter names of a checkpoint: ``--list``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semicrf.genomics import dataset
from semicrf.genomics.batches import Batcher
from semicrf.genomics.checkpoints import best_path, last_path, load_checkpoint
from semicrf.genomics.evaluation import predict_split
from semicrf.genomics.metrics import boundary_scores, segment_scores
from semicrf.genomics.models import ModelConfig, build_model

ENCODER_PREFIXES = ("encoder.", "emission.", "boundary_head.")


def group_names(state: dict, group: str) -> list[str]:
    """The parameter names of ``group`` in a state dict (see the module docstring)."""
    if group == "encoder":
        return [k for k in state if k.startswith(ENCODER_PREFIXES)]
    if group == "tables":
        return [k for k in state if not k.startswith(ENCODER_PREFIXES)]
    if group in state:
        return [group]
    raise SystemExit(f"--swap: {group!r} is neither encoder, tables nor a parameter of the checkpoint "
                     f"(--list shows them)")


def parse_swap(text: str, states: dict) -> dict:
    """The state dict that a swap ``BASE[:GROUP=DONOR,...]`` names."""
    base, _, rest = text.partition(":")
    if base not in states:
        raise SystemExit(f"--swap {text}: the base must be best or last, got {base!r}")
    state = dict(states[base])
    for part in filter(None, rest.split(",")):
        group, _, donor = part.partition("=")
        if donor not in states:
            raise SystemExit(f"--swap {text}: give each group as GROUP=best or GROUP=last, got {part!r}")
        for name in group_names(state, group):
            state[name] = states[donor][name]
    return state


def segment_count(labels) -> int:
    return sum(int((np.diff(y) != 0).sum()) + 1 for y in labels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="the data set the run was trained on")
    p.add_argument("--run-dir", required=True, help="the run's --output-dir (its checkpoints/ folder)")
    p.add_argument("--model", default="semicrf_gene", help="the model whose checkpoints to swap")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--limit", type=int, default=12, help="decode the split's first N sequences")
    p.add_argument("--swap", nargs="+", default=["best", "last"], help="swaps to decode (module docstring)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--list", action="store_true", help="print the checkpoint's parameter names and exit")
    args = p.parse_args(argv)
    if args.limit < 1:
        raise SystemExit(f"--limit must be at least 1, got {args.limit}")
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    ckpts = {k: load_checkpoint(f(run_dir, args.model)) for k, f in (("best", best_path), ("last", last_path))}
    states = {k: c["state_dict"] for k, c in ckpts.items()}
    if args.list:
        for name, value in states["last"].items():
            print(name, tuple(value.shape))
        return 0
    meta = dataset.load_metadata(args.data_dir)
    split = dataset.load_split(args.data_dir, args.split)
    n = min(args.limit, len(split))
    split = dataset.Split(split.sequences[:n], split.labels[:n], split.names[:n])
    config = ModelConfig(**{**ckpts["best"]["model_config"], "backend": "auto", "mixed_precision": False})
    batcher = Batcher(split, "onehot", args.batch_size, torch.device("cpu"))
    print(f"{args.model} of {args.run_dir}: the first {n} {args.split} sequences, {segment_count(split.labels)} "
          f"true segments; best = epoch {ckpts['best'].get('epoch')}, last = step {ckpts['last'].get('global_step')}")
    print("| swap | boundary P / R / F1 | segment F1 | loss per position | segments | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for text in args.swap:
        model = build_model(args.model, config, meta)
        model.load_state_dict(parse_swap(text, states))
        start = time.perf_counter()
        preds, loss, _ = predict_split(model, batcher, with_loss=True)
        prec, rec, f1 = boundary_scores(split.labels, preds, (0,))[0]
        seg_f1 = segment_scores(split.labels, preds)[2]
        print(f"| {text} | {prec:.3f} / {rec:.3f} / {f1:.3f} | {seg_f1:.3f} | {loss:.5f} | {segment_count(preds)} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
