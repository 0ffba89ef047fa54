#!/usr/bin/env python3
"""GPU timing table of the semi-CRF engine (Triton backend), with flash-semicrf 0.2.0 side by side.

    python benchmarks/engine_gpu.py [--sizes small,spec,long,wide] [--repeat 5] [--no-peer] [--json out.json]

Rows (B, T, K, C): small = 16, 2000, 100, 3; spec = 16, 20 000, 1000, 3; long = 4, 100 000, 1000, 3;
wide = 16, 20 000, 1000, 24. For each: ``log_likelihood`` forward + backward and ``viterbi`` with
full traceback (median of ``--repeat`` runs after a warm-up), the peak GPU memory beyond the inputs,
and, with ``--check-logz``, log Z against the float64 reference sweep. flash-semicrf is timed only if
it imports (it is never a dependency: install its wheel beside ours to compare) and only on the small
row, where it finishes in seconds; its head gets hidden states of width 64 and labels in runs of 200.
``--breakdown`` prints the GPU time of each kernel of one ``log_likelihood`` forward + backward
and of one ``viterbi``. ``--sweeps-only`` times only the sweep kernels (forward log sweep, both
directions, the four sweeps of ``log_likelihood`` in one launch, Viterbi sweep) for scanning
``--chunk`` and ``--warps``; a size may also be given as ``BxTxKxC``. The settings flags build one
``TritonConfig`` that every timed call is given (``Configured``); nothing global is changed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

try:
    import semicrf
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import semicrf

SIZES = {
    "small": (16, 2000, 100, 3),
    "spec": (16, 20_000, 1000, 3),
    "long": (4, 100_000, 1000, 3),
    "wide": (16, 20_000, 1000, 24),
}


def size_of(name: str) -> tuple[int, int, int, int]:
    """(B, T, K, C) of a named size or of ``BxTxKxC``."""
    if name in SIZES:
        return SIZES[name]
    try:
        B, T, K, C = (int(x) for x in name.split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: unknown size {name!r}; choose from {', '.join(SIZES)} or give BxTxKxC") from None
    return B, T, K, C


def timed(fn, repeat: int) -> float:
    """Median wall time in seconds of ``fn()`` (synchronised), after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def labels_in_runs(B, T, C, run=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = T // run + 1
    return torch.randint(0, C, (B, n), generator=g).repeat_interleave(run, dim=1)[:, :T]


def inputs(B, T, K, C):
    """(emissions, transitions, durations, labels, lengths) on the GPU, the scores needing gradients."""
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    em = torch.randn(B, T, C, device=dev, generator=g).requires_grad_()
    tr = (0.1 * torch.randn(C, C, device=dev, generator=g)).requires_grad_()
    du = (0.1 * torch.randn(K, C, device=dev, generator=g)).requires_grad_()
    return em, tr, du, labels_in_runs(B, T, C).to(dev), torch.full((B,), T, device=dev)


def ours(B, T, K, C, repeat, check_logz, config):
    from semicrf.backends import triton as tb
    em, tr, du, labels, lengths = inputs(B, T, K, C)
    backend = tb.Configured(config)

    def step():
        ll = semicrf.log_likelihood(em, labels, tr, du, lengths, backend=backend)
        (-ll.sum()).backward()
        return ll

    def decode():
        return semicrf.viterbi(em.detach(), tr.detach(), du.detach(), lengths, backend=backend)

    row = {}
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    row["ll_fwd_bwd_s"] = timed(step, repeat)
    row["peak_extra_gib"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    row["viterbi_s"] = timed(decode, repeat)
    from semicrf.problem import make_problem as _mk
    pv = _mk(em.detach(), tr.detach(), du.detach(), lengths)
    _, halves = tb.viterbi_halves(lengths)
    row["viterbi_sweep_only_s"] = timed(
        lambda: tb.Sweep(pv, reverse=True, semiring="max", lengths=halves, config=config), repeat)
    row["log_sweep_only_s"] = timed(lambda: tb.Sweep(pv, config=config), repeat)
    row["method"] = tb.Sweep(pv, config=config).method
    # Whether the four sweeps of log_likelihood ran with far-part helpers (config.split_far).
    row["helped"] = tb.Sweep(_mk(em.detach(), tr.detach(), du.detach(), lengths, labels=labels),
                             (False, True), reverse=True, config=config).helped
    # Bitwise reproducibility of the gradients across two runs.
    grads = []
    for _ in range(2):
        for x in (em, tr, du):
            x.grad = None
        step()
        grads.append([x.grad.clone() for x in (em, tr, du)])
    row["grads_bitwise_equal"] = all(torch.equal(a, b) for a, b in zip(*grads))
    if check_logz:
        from semicrf.backends import reference
        from semicrf.problem import make_problem
        p = make_problem(em.detach(), tr.detach(), du.detach(), lengths)
        lz = semicrf.log_partition(em.detach(), tr.detach(), du.detach(), lengths, backend=backend)
        ref = reference.forward_backward(p, need_marginals=False).log_z
        row["logz_rel_err"] = ((lz - ref).abs() / ref.abs()).max().item()
    return row


def sweeps(B, T, K, C, repeat, config):
    """Seconds of the forward log sweep and of the Viterbi sweep alone (no marginals, no traceback)."""
    from semicrf.backends import triton as tb
    from semicrf.problem import make_problem
    g = torch.Generator(device="cuda").manual_seed(0)
    p = make_problem(torch.randn(B, T, C, device="cuda", generator=g),
                     0.1 * torch.randn(C, C, device="cuda", generator=g),
                     0.1 * torch.randn(K, C, device="cuda", generator=g), torch.full((B,), T, device="cuda"))
    pl = make_problem(p.emissions, p.transitions, p.durations, p.lengths, labels=labels_in_runs(B, T, C).cuda())
    return {"log_sweep_s": timed(lambda: tb.Sweep(p, config=config), repeat),
            "fwd_bwd_sweeps_s": timed(lambda: tb.Sweep(p, reverse=True, config=config), repeat),
            "likelihood_sweeps_s": timed(lambda: tb.Sweep(pl, (False, True), reverse=True, config=config), repeat),
            "viterbi_sweep_s": timed(lambda: tb.Sweep(p, semiring="max", config=config), repeat),
            "method": tb.Sweep(p, config=config).method}


def breakdown(B, T, K, C, config):
    """GPU time per kernel of one log_likelihood forward + backward, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    from semicrf.backends import triton as tb
    em, tr, du, labels, _ = inputs(B, T, K, C)
    backend = tb.Configured(config)

    def step():
        (-semicrf.log_likelihood(em, labels, tr, du, backend=backend).sum()).backward()

    def decode():
        semicrf.viterbi(em.detach(), tr.detach(), du.detach(), backend=backend)

    for name, fn in (("log_likelihood forward + backward", step), ("viterbi + traceback", decode)):
        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        print(name)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=8), flush=True)


def peer(B, T, K, C, repeat):
    try:
        from flash_semicrf import SemiMarkovCRFHead
    except ImportError:
        return None
    dev = "cuda"
    head = SemiMarkovCRFHead(num_classes=C, max_duration=K, hidden_dim=64).to(dev)
    hidden = torch.randn(B, T, 64, device=dev).requires_grad_()
    labels = labels_in_runs(B, T, C).to(dev)
    lengths = torch.full((B,), T, device=dev)

    def step():
        loss = head.compute_loss(hidden, lengths, labels, backend="streaming")
        loss.backward()

    def decode():
        with torch.no_grad():
            head.decode_with_traceback(hidden.detach(), lengths, backend="streaming", max_traceback_length=10**7)

    return {"ll_fwd_bwd_s": timed(step, repeat), "viterbi_s": timed(decode, max(1, repeat // 3))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="small,spec,long,wide")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--check-logz", action="store_true", help="compare log Z with the float64 reference sweep")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--chunk", type=int, default=None, help="positions per chunk of the chunked look-back")
    ap.add_argument("--warps", type=int, default=None, help="warps per program of the chunked sweep")
    ap.add_argument("--far-tile", type=int, default=None,
                    help="far-part tile of the chunked sweep: about this many values per thread")
    ap.add_argument("--far-tile-max", type=int, default=None, help="the same for the max-plus (Viterbi) sweep")
    ap.add_argument("--split-far", choices=["auto", "off"], default="auto",
                    help="far-part helper programs of the chunked sweeps, both semirings (auto: where they all fit)")
    ap.add_argument("--near-blocks", type=int, default=None,
                    help="far-part blocks a row keeps when it has a helper (the helper takes the rest)")
    ap.add_argument("--sweeps-only", action="store_true",
                    help="time only the sweep kernels (for scanning configurations)")
    ap.add_argument("--breakdown", action="store_true",
                    help="print the GPU time of each kernel of one log_likelihood forward + backward")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("engine_gpu.py needs a CUDA GPU")
    card = torch.cuda.get_device_name()
    from semicrf.backends import triton as tb
    given = dict(chunk=args.chunk, chunk_warps=args.warps, far_tile=args.far_tile, far_tile_max=args.far_tile_max,
                 split_far=args.split_far, near_blocks=args.near_blocks)
    try:
        config = tb.TritonConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"chunk {config.chunk or 'auto'}, warps {config.chunk_warps or 'auto'}, "
          f"far tile {config.far_tile} (max-plus {config.far_tile_max}), "
          f"far-part helpers: {config.split_far} (rows keep {config.near_blocks} blocks)")
    if args.sweeps_only or args.breakdown:
        for name in args.sizes.split(","):
            B, T, K, C = size_of(name)
            if args.breakdown:
                print(f"size {name} ({card}):")
                breakdown(B, T, K, C, config)
            if args.sweeps_only:
                q, w = tb.chunk_config(K, config, C)
                print(json.dumps({"size": name, "card": card, "chunk": q, "warps": w,
                                  **sweeps(B, T, K, C, args.repeat, config)}), flush=True)
        return
    rows = []
    for name in args.sizes.split(","):
        B, T, K, C = size_of(name)
        q, w = tb.chunk_config(K, config, C)
        r = {"size": name, "B": B, "T": T, "K": K, "C": C, "card": card, "chunk": q, "warps": w}
        r["ours"] = ours(B, T, K, C, args.repeat, args.check_logz, config)
        r["peer"] = None if args.no_peer or name != "small" else peer(B, T, K, C, args.repeat)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n| B, T, K, C | call | ours | flash-semicrf 0.2.0 | ratio | card |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for key, label in (("ll_fwd_bwd_s", "log_likelihood fwd+bwd"), ("viterbi_s", "viterbi + traceback")):
            o = r["ours"][key]
            pv = r["peer"][key] if r["peer"] else None
            ratio = f"{pv / o:.0f}x" if pv else "-"
            pv_s = f"{pv:.3f} s" if pv else "-"
            print(f"| {r['B']}, {r['T']}, {r['K']}, {r['C']} | {label} | {o * 1e3:.1f} ms | {pv_s} | {ratio} | {card} |")
        extra = (f"{r['ours']['method']} look-back, helpers {r['ours']['helped']}, log sweep alone {r['ours']['log_sweep_only_s'] * 1e3:.1f} ms, "
                 f"viterbi sweep alone {r['ours']['viterbi_sweep_only_s'] * 1e3:.1f} ms, ")
        extra += f"peak extra {r['ours']['peak_extra_gib']:.3f} GiB, grads bitwise equal: {r['ours']['grads_bitwise_equal']}"
        if "logz_rel_err" in r["ours"]:
            extra += f", log Z rel err {r['ours']['logz_rel_err']:.2e}"
        print(f"|   |   | {extra} | | | |")
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
