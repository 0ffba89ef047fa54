"""Precision of the engine at length, against closed forms (no reference run needed).

    python3 benchmarks/engine_precision.py --lengths 20000,100000,1000000 --backend cpu [--windows whole|auto|N]

The model: C labels with equal scores, a constant emission e and durations lam * d. Then
log Z = e T + log(weighted compositions of T) (:func:`log_weighted_compositions`, an O(T)
recurrence), every occupancy marginal is exactly 1/C by symmetry, and every segmentation scores
(e + lam) T, so the Viterbi score is known. Prints, per length, the errors of log Z (relative),
of the marginals (largest |m - 1/C|) and of the Viterbi score (relative), and the time of each call.
The constant model repeats the same roundings at every step; the last column checks the marginals
on random scores (normal emissions, transitions and duration scores, seed 0), where the truth is
not known but every position's occupancies must still sum to 1: the largest |sum_c m - 1|.
``--windows``: how log_partition and marginals treat the long rows: ``whole`` (default; one chain),
``auto`` (the engine's default, :data:`semicrf.windows.DEFAULT_WINDOWS`: windows from 2^20 positions
on) or a number N (windows of N positions at every length, :mod:`semicrf.windows`).
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def log_weighted_compositions(T: int, K: int, C: int, lam: float) -> float:
    """log of the sum over every segmentation of T positions into parts of length d <= K, each part
    weighted C * exp(lam * d): a_t = C * sum_{d <= K} e^(lam d) a_(t-d), a_0 = 1, by the window sum
    S_(t+1) = e^lam (S_t + a_t) - e^(lam (K + 1)) a_(t-K), rescaled as it grows (for lam <= 0 no
    cancellation: the subtracted term is at most e^(lam K) of S)."""
    q, window, S, log_scale = math.exp(lam), [1.0], math.exp(lam), 0.0  # window ends with a_t
    for t in range(1, T + 1):
        a = C * S
        window.append(a)
        old = window[-K - 1] if t >= K else 0.0
        S = q * (S + a) - q ** (K + 1) * old
        if a > 1e100:
            window = [x / a for x in window[-K - 1:]]
            S /= a
            log_scale += math.log(a)
        elif len(window) > 4 * K:
            window = window[-K - 1:]
    return log_scale + math.log(window[-1])


def problem(T: int, K: int, C: int, e: float, lam: float, device: str = "cpu"):
    em = torch.full((1, T, C), e, dtype=torch.float64, device=device)
    tr = torch.zeros(C, C, dtype=torch.float64, device=device)
    du = (lam * torch.arange(1, K + 1, dtype=torch.float64, device=device))[:, None].expand(K, C).contiguous()
    return em, tr, du


def random_problem(T: int, K: int, C: int, device: str = "cpu"):
    g = torch.Generator().manual_seed(0)
    em = torch.randn(1, T, C, generator=g, dtype=torch.float64) + 0.3
    tr = torch.randn(C, C, generator=g, dtype=torch.float64)
    du = -0.01 * torch.arange(1, K + 1, dtype=torch.float64)[:, None] + 0.5 * torch.randn(K, C, generator=g,
                                                                                         dtype=torch.float64)
    return em.to(device), tr.to(device), du.to(device)


def main(argv=None) -> int:
    import semicrf

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="20000,100000,1000000")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-duration", type=int, default=300)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--windows", default="whole", help="whole, auto or a chunk length N")
    args = p.parse_args(argv)
    from semicrf.windows import DEFAULT_WINDOWS, WindowConfig

    if args.windows in ("whole", "auto"):
        windows = None if args.windows == "whole" else DEFAULT_WINDOWS
    elif args.windows.isdigit() and int(args.windows) > 0:
        windows = WindowConfig(min_length=1, chunk=int(args.windows))
    else:
        p.error(f"--windows: whole, auto or a positive chunk length, got {args.windows!r}")
    K, C, e, lam = args.max_duration, args.classes, 0.3, -0.01
    print(f"backend {args.backend}, device {args.device}, K = {K}, C = {C}, emission {e}, durations {lam} d, "
          f"windows {args.windows}")
    print("| T | log Z rel. error | max abs(marginal - 1/C) | Viterbi score rel. error | log Z (s) | marginals (s) "
          "| viterbi (s) | random scores: max abs(sum of marginals - 1) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for T in (int(x) for x in args.lengths.split(",")):
        em, tr, du = problem(T, K, C, e, lam, args.device)
        log_z = e * T + log_weighted_compositions(T, K, C, lam)
        t0 = time.perf_counter()
        got = semicrf.log_partition(em, tr, du, backend=args.backend, windows=windows).item()
        t1 = time.perf_counter()
        m = semicrf.marginals(em, tr, du, backend=args.backend, windows=windows)
        dev = (m - 1 / C).abs().max().item()
        t2 = time.perf_counter()
        v = semicrf.viterbi(em, tr, du, backend=args.backend).score.item()
        t3 = time.perf_counter()
        best = (e + lam) * T
        rm = semicrf.marginals(*random_problem(T, K, C, args.device), backend=args.backend, windows=windows)
        off = (rm.sum(-1) - 1).abs().max().item()
        print(f"| {T} | {abs(got - log_z) / abs(log_z):.1e} | {dev:.1e} | {abs(v - best) / best:.1e} | "
              f"{t1 - t0:.2f} | {t2 - t1:.2f} | {t3 - t2:.2f} | {off:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
