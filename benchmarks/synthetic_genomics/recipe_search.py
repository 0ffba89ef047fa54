#!/usr/bin/env python3
"""Race training recipes of one benchmark model against the clock, on one GPU.

The benchmark's question needs models that place boundaries; the spec's plain
recipe (one-hot features, linear stem, constant learning rate) places none in
the minutes a GPU call lasts. This script trains one model with one recipe
for a wall-clock budget and records validation boundary F1 against steps and
seconds, so that several recipes started side by side (one process each, on
one or more GPUs) can be compared on the same data::

    python3 recipe_search.py --data-dir D --output OUT.json --model semicrf \\
        --encoder mamba --stem conv --features kmer --hidden-dim 128 --num-layers 2 \\
        --batch-size 8 --lr 2e-3 --warmup-steps 100 --schedule cosine --total-steps 3000 \\
        --time-limit 420 --val-every 100 --max-val 40

The data pipeline never waits on the host: the whole training split's base
codes and labels sit on the GPU (20 MB at the spec's size) and every batch's
features are computed there (:func:`semicrf.genomics.features.encode_batch`).
Batches are drawn from ``--seed``. The output JSON (rewritten at every
validation) holds the recipe, the curve (step, seconds, train loss, validation
boundary / segment / exon position F1) and the median step time.
``recipe_search.py summarize RESULTS/*.json --figure curves.png`` prints a
table of several recipes and draws their curves.
"""

from __future__ import annotations

import argparse
import json
import math
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

from semicrf.genomics import dataset, features, metrics
from semicrf.genomics.encoders import STEM_KINDS
from semicrf.genomics.formats import atomic_output
from semicrf.genomics.models import ModelConfig, build_model
from semicrf.genomics.control import lr_factor
from semicrf.genomics.trainer import param_groups


def padded(split: dataset.Split, device: torch.device):
    """(codes (N, T) uint8, labels (N, T) uint8, lengths (N,)) of a whole split, on ``device``."""
    lengths = np.array([len(s) for s in split.sequences], dtype=np.int64)
    codes = np.full((len(lengths), int(lengths.max())), 4, dtype=np.uint8)
    labels = np.zeros_like(codes)
    for i, n in enumerate(lengths):
        codes[i, :n] = split.sequences[i]
        labels[i, :n] = split.labels[i]
    return (torch.from_numpy(codes).to(device), torch.from_numpy(labels).to(device),
            torch.from_numpy(lengths).to(device))


def batch(data, index: torch.Tensor, kind: str):
    codes, labels, lengths = data
    lengths = lengths[index]
    width = int(lengths.max())
    return (features.encode_batch(codes[index, :width], lengths, kind), labels[index, :width].long(), lengths)


@torch.no_grad()
def validate(model, data, kind: str, class_names, max_duration: int, batch_size: int) -> dict:
    model.eval()
    preds, truth = [], []
    n = data[0].shape[0]
    for s in range(0, n, batch_size):
        index = torch.arange(s, min(n, s + batch_size), device=data[0].device)
        x, y, lengths = batch(data, index, kind)
        preds += model.predict(x, lengths)
        truth += [y[i, :m].cpu().numpy() for i, m in enumerate(lengths.tolist())]
    model.train()
    scores = metrics.evaluate(truth, preds, class_names, max_duration)
    exon = class_names.index("exon") if "exon" in class_names else 1
    return {"boundary_f1": scores["boundary_f1"], "boundary_f1_10": scores["boundary_f1_tolerance"]["10"],
            "segment_f1": scores["segment_f1"], "exon_position_f1": scores["position_f1"][class_names[exon]],
            "duration_kl_mean": scores["duration_kl_mean"]}


def summarize(paths: list[Path], figure: Path | None) -> str:
    """A markdown table of the recipes' curves (last and best validation), and optionally their figure."""
    runs = [(Path(p).stem, json.loads(Path(p).read_text())) for p in sorted(paths)]
    lines = ["| recipe | model | stem | features | hidden x layers | batch | lr (warm-up, schedule) | steps | "
             "s / step (shared) | val boundary F1 (last / best) | @10 bp (last) | segment F1 (last) | "
             "exon position F1 (last) |", "|---|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in runs:
        a, c = r["recipe"], r["curve"]
        if not c:
            lines.append(f"| {name} | {a['model']} | no validation reached | | | | | | | | | | |")
            continue
        last, best = c[-1], max(v["boundary_f1"] for v in c)
        lines.append(
            f"| {name} | {a['model']} | {a['stem']} | {a['features']} | {a['hidden_dim']} x {a['num_layers']} | "
            f"{a['batch_size']} | {a['lr']:g} ({a['warmup_steps']}, {a['schedule']}) | {r.get('steps', last['step'])} | "
            f"{r['step_time_median_s']:.2f} | {last['boundary_f1']:.3f} / {best:.3f} | {last['boundary_f1_10']:.3f} | "
            f"{last['segment_f1']:.3f} | {last['exon_position_f1']:.3f} |")
    if figure is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for name, r in runs:
            c = r["curve"]
            if c:
                for ax, key in zip(axes, ("boundary_f1", "exon_position_f1")):
                    ax.plot([v["seconds"] for v in c], [v[key] for v in c], marker="o", ms=3, label=name)
        for ax, title in zip(axes, ("validation boundary F1 (exact)", "validation exon position F1")):
            ax.set_xlabel("seconds since start (GPU shared by 4 runs)")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        with atomic_output(figure, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        plt.close(fig)
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["summarize"]:
        s = argparse.ArgumentParser(description="Table (and figure) of recipe_search.py results")
        s.add_argument("json", nargs="+", type=Path)
        s.add_argument("--figure", type=Path, default=None)
        args = s.parse_args(argv[1:])
        print(summarize(args.json, args.figure))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--output", required=True, help="JSON file of the curve (rewritten at each validation)")
    p.add_argument("--model", default="semicrf")
    p.add_argument("--encoder", default="mamba")
    p.add_argument("--stem", default="linear", choices=STEM_KINDS)
    p.add_argument("--features", default="onehot", choices=features.FEATURE_KINDS)
    p.add_argument("--hidden-dim", type=int, default=256)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--max-duration", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--crf-lr-scale", type=float, default=20.0)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
    p.add_argument("--total-steps", type=int, default=3000, help="length of the cosine schedule")
    p.add_argument("--time-limit", type=float, default=400.0, help="seconds of training")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-val", type=int, default=40)
    p.add_argument("--no-recompute", action="store_true", help="keep the encoder's activations")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    meta = dataset.load_metadata(args.data_dir)
    class_names = list(meta["class_names"])
    train = dataset.load_split(args.data_dir, "train")
    if args.max_train:
        train = dataset.Split(train.sequences[:args.max_train], train.labels[:args.max_train],
                              train.names[:args.max_train])
    val = dataset.load_split(args.data_dir, "val")
    val = dataset.Split(val.sequences[:args.max_val], val.labels[:args.max_val], val.names[:args.max_val])
    train_data, val_data = padded(train, device), padded(val, device)

    torch.manual_seed(args.seed)
    config = ModelConfig(input_dim=features.feature_dim(args.features), num_classes=len(class_names),
                         encoder=args.encoder, hidden_dim=args.hidden_dim, num_layers=args.num_layers,
                         max_duration=args.max_duration, stem=args.stem, recompute=not args.no_recompute)
    model = build_model(args.model, config, meta).to(device)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay, args.lr, args.crf_lr_scale), lr=args.lr)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    n_train = train_data[0].shape[0]
    record = {"recipe": vars(args), "parameters": sum(p.numel() for p in model.parameters()),
              "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "curve": []}
    step, losses, step_times, started = 0, [], [], time.perf_counter()
    order = torch.randperm(n_train, generator=gen)
    cursor = 0
    while time.perf_counter() - started < args.time_limit and step < (args.max_steps or math.inf):
        if cursor + args.batch_size > n_train:
            order, cursor = torch.randperm(n_train, generator=gen), 0
        index = order[cursor:cursor + args.batch_size].to(device)
        cursor += args.batch_size
        factor = lr_factor(step, args.total_steps, args.warmup_steps, args.schedule, 0.1)
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * factor
        t0 = time.perf_counter()
        x, y, lengths = batch(train_data, index, args.features)
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y, lengths)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))  # the host sync that also makes the step time honest
        step_times.append(time.perf_counter() - t0)
        step += 1
        if not math.isfinite(losses[-1]):
            record["failed"] = f"loss {losses[-1]} at step {step}"
            break
        if step % args.val_every == 0:
            v = validate(model, val_data, args.features, class_names, args.max_duration, args.batch_size)
            v.update(step=step, seconds=time.perf_counter() - started,
                     train_loss=float(np.mean(losses[-args.val_every:])))
            record["curve"].append(v)
            record["step_time_median_s"] = statistics.median(step_times[1:] or step_times)
            with atomic_output(Path(args.output), "w") as f:
                json.dump(record, f, indent=1)
            print(f"{args.output}: step {step} {v['seconds']:.0f}s loss {v['train_loss']:.4f} "
                  f"bF1 {v['boundary_f1']:.3f} @10 {v['boundary_f1_10']:.3f} segF1 {v['segment_f1']:.3f} "
                  f"exonF1 {v['exon_position_f1']:.3f}", flush=True)
    record["steps"] = step
    record["step_time_median_s"] = statistics.median(step_times[1:] or step_times) if step_times else None
    with atomic_output(Path(args.output), "w") as f:
        json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
