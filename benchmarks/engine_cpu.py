"""CPU speed and memory of the engine, printed as a table.

    python benchmarks/engine_cpu.py            # our timings, and the peer's where it is installed
    python benchmarks/engine_cpu.py --quick    # the small row only

Rows: log_likelihood forward + backward and viterbi at the sizes of the project's targets.
When flash-semicrf is importable (install it separately, e.g. into a throw-away folder on
PYTHONPATH; it is never a dependency of semicrf), its `SemiMarkovCRFHead.compute_loss(...,
backend="streaming")` forward + backward runs on the same inputs in the same process and the
ratio is printed. A second table sets the engine at K = 1 (a linear-chain CRF) against
pytorch-crf 0.7.2, the benchmark's external linear CRF, on the same emissions: the
log-likelihood forward + backward and Viterbi decoding. Each timing is the best of several
repeats after a warm-up.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

import semicrf


def best_of(fn, repeats):
    fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def ours_loss(B, T, K, C, hidden=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, hidden, generator=g)
    proj = torch.nn.Linear(hidden, C)
    crf = semicrf.SemiCRF(C, K)
    lengths = torch.full((B,), T)
    labels = (torch.arange(T) // 200 % C).expand(B, T).contiguous()

    def step():
        crf.zero_grad()
        proj.zero_grad()
        loss = crf.nll(proj(h), labels, lengths).mean()
        loss.backward()

    def decode():
        with torch.no_grad():
            crf.decode(proj(h), lengths)

    return step, decode


def peer_loss(B, T, K, C, hidden=64, seed=0):
    try:
        from flash_semicrf import SemiMarkovCRFHead
    except ImportError:
        return None
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, hidden, generator=g)
    head = SemiMarkovCRFHead(num_classes=C, max_duration=K, hidden_dim=hidden)
    lengths = torch.full((B,), T)
    labels = (torch.arange(T) // 200 % C).expand(B, T).contiguous()

    def step():
        head.zero_grad()
        loss = head.compute_loss(h, lengths, labels, backend="streaming")
        loss.backward()

    return step


def linear_vs_pytorch_crf(B, T, C, seed=0):
    """(ours f+b, ours decode, pytorch-crf f+b, pytorch-crf decode) step functions, or None without it."""
    try:
        from torchcrf import CRF
    except ImportError:
        return None
    g = torch.Generator().manual_seed(seed)
    emissions = torch.randn(B, T, C, generator=g, requires_grad=True)
    labels = torch.randint(0, C, (B, T), generator=g)
    ours, theirs = semicrf.SemiCRF(C, 1), CRF(C, batch_first=True)

    def ours_step():
        emissions.grad = None
        ours.nll(emissions, labels).sum().backward()

    def theirs_step():
        emissions.grad = None
        (-theirs(emissions, labels, reduction="sum")).backward()

    def ours_decode():
        with torch.no_grad():
            ours.decode(emissions)

    def theirs_decode():
        with torch.no_grad():
            theirs.decode(emissions)

    return ours_step, ours_decode, theirs_step, theirs_decode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the small row")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-peer", action="store_true", help="skip flash-semicrf even if installed")
    args = ap.parse_args()
    rows = [(2, 1000, 50, 3)]
    if not args.quick:
        rows += [(1, 20_000, 1000, 3), (1, 100_000, 1000, 3)]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, semicrf {semicrf.__version__}")
    print(f"{'B':>3} {'T':>7} {'K':>5} {'C':>2} | {'ours loss f+b':>14} {'ours viterbi':>13} | "
          f"{'peer loss f+b':>14} {'ratio':>8}")
    for B, T, K, C in rows:
        step, decode = ours_loss(B, T, K, C)
        t_loss = best_of(step, args.repeats)
        t_vit = best_of(decode, args.repeats)
        peer = None if args.no_peer or T > 5000 else peer_loss(B, T, K, C)
        if peer is not None:
            t_peer = best_of(peer, 1)
            peer_txt = f"{t_peer:13.3f}s {t_peer / t_loss:7.0f}x"
        else:
            peer_txt = f"{'-':>14} {'-':>8}"
        print(f"{B:>3} {T:>7} {K:>5} {C:>2} | {t_loss:13.4f}s {t_vit:12.4f}s | {peer_txt}")
    print("\nK = 1 against pytorch-crf 0.7.2 (log-likelihood forward + backward; Viterbi)")
    print(f"{'B':>3} {'T':>7} {'C':>2} | {'ours f+b':>10} {'theirs f+b':>11} {'ratio':>7} | "
          f"{'ours decode':>11} {'theirs decode':>13} {'ratio':>7}")
    for B, T, C in [(16, 2000, 3)] + ([] if args.quick else [(1, 20_000, 3)]):
        fns = linear_vs_pytorch_crf(B, T, C)
        if fns is None:
            print("pytorch-crf is not installed (pip install pytorch-crf==0.7.2)")
            break
        t = [best_of(fn, args.repeats) for fn in fns]
        print(f"{B:>3} {T:>7} {C:>2} | {t[0]:9.4f}s {t[2]:10.4f}s {t[2] / t[0]:6.0f}x | "
              f"{t[1]:10.4f}s {t[3]:12.4f}s {t[3] / t[1]:6.0f}x")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
