"""Gradient agreement of the Triton kernels with the reference backend (``semicrf-gradcheck``).

    semicrf-gradcheck --seq-length N [--checkpoint-interval M] [--batch-size B]

Compares log Z and the gradients of every input (emissions, transitions, durations,
initial, final, start and end scores) between ``backend="triton"`` and
``backend="reference"`` on random inputs, prints one PASS / FAIL line per criterion
with the measured errors, and exits with status 1 on any failure. The thresholds are
the benchmark's acceptance criteria (relative 1e-4 on log Z, max relative 1e-2 on
parameter gradients, mean absolute 1e-3 on per-position gradients); both backends
compute in float64, so the printed errors are expected to be many orders lower.

Runs on a CUDA GPU, or on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``,
set automatically when no GPU is present; slow, so keep N small there).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

THRESHOLDS = {"forward_rel": 1e-4, "param_max_rel": 1e-2, "position_mean_abs": 1e-3}
PARAMS = ("transitions", "durations", "initial", "final")
POSITIONS = ("emissions", "start_scores", "end_scores")


def make_inputs(B: int, T: int, C: int, K: int, seed: int, device: str) -> dict:
    """Random inputs with mixed lengths (the first sequence is full length)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(device)

    lengths = torch.randint(max(1, T // 2), T + 1, (B,), generator=g)
    lengths[0] = T
    return dict(emissions=r(B, T, C), transitions=r(C, C, s=0.5), durations=r(K, C, s=0.5), lengths=lengths.to(device),
                initial=r(C, s=0.5), final=r(C, s=0.5), start_scores=r(B, T, C, s=0.1), end_scores=r(B, T, C, s=0.1))


def log_z_and_grads(kw: dict, backend):
    """log Z and the gradients of its sum, through the engine's autograd; ``backend`` a name or a
    configured backend (:class:`semicrf.backends.triton.Configured`)."""
    import semicrf

    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if k != "lengths"}
    lz = semicrf.log_partition(lengths=kw["lengths"], **leaves, backend=backend)
    lz.sum().backward()
    return lz.detach(), {k: v.grad for k, v in leaves.items()}


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().clamp_min(1e-300)
    rel = (a - b).abs() / scale
    rel = torch.where((a - b).abs() == 0, torch.zeros_like(rel), rel)
    return rel.max().item()


def report(kw: dict, chunk: int, out=None) -> bool:
    """Print the comparison (to ``out``, default stdout), the Triton backend's duration-gradient
    kernel with tiles of ``chunk`` positions; True when every criterion passes."""
    from semicrf.backends import triton as tb

    out = out if out is not None else sys.stdout
    lz_t, g_t = log_z_and_grads(kw, tb.Configured(tb.TritonConfig(dgrad_chunk=chunk)))
    lz_r, g_r = log_z_and_grads(kw, "reference")
    ok_all = True

    def verdict(ok):
        nonlocal ok_all
        ok_all &= bool(ok)
        return "[PASS]" if ok else "[FAIL]"

    fmt = lambda x: "[" + ", ".join(f"{v:.2f}" for v in x.tolist()) + "]"  # noqa: E731
    rel = ((lz_t - lz_r).abs() / lz_r.abs().clamp_min(1e-300)).max().item()
    print("Forward partition comparison:", file=out)
    print(f"  Triton:  {fmt(lz_t)}", file=out)
    print(f"  PyTorch: {fmt(lz_r)}", file=out)
    print(f"  Rel diff: {rel:.2e}  {verdict(rel < THRESHOLDS['forward_rel'])}", file=out)
    print("", file=out)
    print("Backward gradient comparison:", file=out)
    for name in POSITIONS:
        a, b = g_t[name], g_r[name]
        diff = (a - b).abs()
        print(f"  grad_{name}:", file=out)
        print(f"    Max abs diff: {diff.max().item():.2e}", file=out)
        print(f"    Max rel diff: {_max_rel(a, b):.2e}", file=out)
        mean = diff.mean().item()
        print(f"    Mean abs diff: {mean:.2e}  {verdict(mean < THRESHOLDS['position_mean_abs'])}", file=out)
    for name in PARAMS:
        m = _max_rel(g_t[name], g_r[name])
        print(f"  grad_{name}:", file=out)
        print(f"    Max rel diff: {m:.2e}  {verdict(m < THRESHOLDS['param_max_rel'])}", file=out)
    print("", file=out)
    print("PASS: All criteria met" if ok_all else "FAIL: some criteria not met", file=out)
    return ok_all


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="semicrf-gradcheck", description=__doc__.splitlines()[0])
    ap.add_argument("--seq-length", type=int, required=True, help="sequence length T")
    ap.add_argument("--checkpoint-interval", type=int, default=None,
                    help="positions per tile of the kernels' duration-gradient pass (rounded up to a power of two)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--num-classes", type=int, default=3)
    ap.add_argument("--max-duration", type=int, default=100, help="K, the longest segment")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    args = ap.parse_args(argv)
    for name in ("seq_length", "batch_size", "num_classes", "max_duration"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.checkpoint_interval is not None and args.checkpoint_interval < 1:
        ap.error(f"--checkpoint-interval must be at least 1, got {args.checkpoint_interval}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is visible")
    if device == "cpu":
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            ap.error("on the CPU the kernels run under Triton's interpreter: set TRITON_INTERPRET=1")
        os.environ["TRITON_INTERPRET"] = "1"
    from semicrf.backends import triton as tb
    if not tb.usable():
        print("Triton is not usable here (install triton, and use a CUDA GPU or TRITON_INTERPRET=1)", file=sys.stderr)
        return 2
    config = tb.TritonConfig(dgrad_chunk=args.checkpoint_interval or tb.DEFAULT_CONFIG.dgrad_chunk)
    kw = make_inputs(args.batch_size, args.seq_length, args.num_classes, args.max_duration, args.seed, device)
    print(f"B={args.batch_size} T={args.seq_length} K={args.max_duration} C={args.num_classes} "
          f"device={torch.cuda.get_device_name() if device == 'cuda' else 'cpu (Triton interpreter)'} "
          f"checkpoint interval={config.dgrad_positions}\n")
    return 0 if report(kw, config.dgrad_chunk) else 1


if __name__ == "__main__":
    sys.exit(main())
