"""Brute-force enumeration of every segmentation of tiny sequences: the independent truth."""

from __future__ import annotations

import itertools
import math

import numpy as np


def segmentations(L: int, K: int):
    """Every composition of L into parts of size 1..K, as lists of (start, end)."""
    if L == 0:
        yield []
        return
    for d in range(1, min(K, L) + 1):
        for rest in segmentations(L - d, K):
            yield [(0, d)] + [(s + d, e + d) for s, e in rest]


def paths(L: int, K: int, C: int):
    for cuts in segmentations(L, K):
        for labs in itertools.product(range(C), repeat=len(cuts)):
            yield [(s, e, c) for (s, e), c in zip(cuts, labs)]


def path_score(path, em, trans, dur, init, final, start=None, end=None):
    """Score of one segmentation of one sequence (numpy float64 inputs)."""
    total = 0.0
    for i, (s, e, c) in enumerate(path):
        total += em[s:e, c].sum() + dur[e - s - 1, c]
        if start is not None:
            total += start[s, c]
        if end is not None:
            total += end[e - 1, c]
        total += init[c] if i == 0 else trans[path[i - 1][2], c]
    return total + final[path[-1][2]]


def logsumexp(xs):
    xs = [x for x in xs if x != -math.inf]
    if not xs:
        return -math.inf
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def path_labels(path, L):
    out = np.empty(L, dtype=np.int64)
    for s, e, c in path:
        out[s:e] = c
    return out


def enumerate_all(em, trans, dur, init, final, start=None, end=None):
    """log Z, per-position marginals, duration/transition expectations and the best path."""
    L, C = em.shape
    K = dur.shape[0]
    scored = [(p, path_score(p, em, trans, dur, init, final, start, end)) for p in paths(L, K, C)]
    log_z = logsumexp([s for _, s in scored])
    occ = np.zeros((L, C))
    dur_exp = np.zeros((K, C))
    trans_exp = np.zeros((C, C))
    by_labels = {}
    for p, s in scored:
        w = math.exp(s - log_z) if s != -math.inf else 0.0
        for i, (a, b, c) in enumerate(p):
            occ[a:b, c] += w
            dur_exp[b - a - 1, c] += w
            if i:
                trans_exp[p[i - 1][2], c] += w
        key = tuple(path_labels(p, L))
        by_labels.setdefault(key, []).append(s)
    best = max(scored, key=lambda ps: ps[1])
    label_ll = {k: logsumexp(v) - log_z for k, v in by_labels.items()}
    return dict(log_z=log_z, occupancy=occ, durations=dur_exp, transitions=trans_exp,
                best_score=best[1], best_path=best[0], label_log_likelihood=label_ll)
