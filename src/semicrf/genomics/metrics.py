"""Segmentation metrics of the synthetic-genomics benchmark.

Every function here is pure: it takes label arrays (or positions, or durations)
and returns numbers. Inputs are lists of 1-D integer arrays, one per sequence;
``true_labels[i]`` and ``pred_labels[i]`` must have the same length. All counts
are summed over sequences before any ratio is taken (micro-averaging), so a
long sequence weighs more than a short one.

Definitions
-----------
Boundary
    A position ``t`` in ``1 .. L-1`` with ``labels[t] != labels[t-1]``: the start
    of every segment but the first. Sequence edges are never boundaries.

Boundary matching at tolerance ``tol``
    Predicted and true boundaries of one sequence are paired one-to-one, a pair
    being allowed when ``|p - t| <= tol``; the number of matches is the size of
    a maximum matching. On a line, the two-pointer greedy over both sorted lists
    (pair the two smallest unprocessed points when they are within ``tol``,
    otherwise drop the smaller one, which can no longer be paired) is optimal:
    if the two smallest points ``t_i``, ``p_j`` are compatible, any maximum
    matching that pairs them elsewhere (``t_i``-``p_k``, ``t_l``-``p_j``) can be
    rewired to ``t_i``-``p_j``, ``t_l``-``p_k`` because ``t_i <= t_l`` and
    ``p_j <= p_k`` keep ``|t_l - p_k| <= tol``.
    Then ``P = matches / predicted``, ``R = matches / true`` and
    ``F1 = 2 P R / (P + R)``.

Segment
    A maximal run of equal labels (so adjacent same-label pieces are one
    segment). A predicted segment is correct iff its ``(start, end, label)``
    equals that of a true segment. ``P = correct / predicted``,
    ``R = correct / true``.

Position F1
    Per class ``c``, from the confusion counts over all positions of all
    sequences: ``F1_c = 2 TP / (2 TP + FP + FN)``; the macro F1 is the plain mean
    over the ``C`` classes.

Empty denominators (one rule everywhere)
    A ratio ``x / 0`` is 1 when the other side is empty too (nothing predicted
    and nothing true: a perfect answer) and 0 otherwise (nothing predicted
    while something is true gives ``P = 0``; nothing true while something is
    predicted gives ``R = 0``). F1 is 0 when ``P + R = 0``. Under this rule every
    F1 is symmetric in true and predicted. A class absent from both truth and
    prediction gets position F1 = 1.

Duration distributions
    The durations of class ``c`` are the lengths of its maximal runs; runs cut by
    a sequence edge count with the length they have.

    ``duration_histogram``: counts over bins ``d = 1 .. K`` (``K`` the model's
    longest segment); a duration longer than ``K`` is counted in the last bin,
    so that bin reads "K or longer". The counts are normalised to frequencies,
    ``eps`` is added to every bin and the result renormalised to sum to 1, so a
    bin is never exactly 0. With no durations at all the histogram is uniform.

    ``duration_kl``: ``KL(true || pred) = sum_d p_d log(p_d / q_d)`` of the two
    smoothed histograms. With the default ``eps = 1e-10`` a bin the model never
    fills but the truth does contributes about ``p_d * 23``, so the KL is
    finite but large; a model that predicts no segment of class ``c`` is
    compared with the uniform histogram, and ``evaluate`` reports the count
    (``duration_count_pred[c] == 0``) so that case is never mistaken for a fit.
    When the truth has no segment of class ``c`` the KL is undefined (NaN).

    ``log_duration_w1``: the Wasserstein-1 (earth mover's) distance between the
    empirical distributions of ``log(duration)``, true vs predicted, in natural
    log units; NaN if either side is empty. It uses no bins, so empty bins
    cannot dominate it, and it sees durations beyond ``K``: 0.1 means that,
    on average, durations are misplaced by about 10 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from .segments import labels_to_segments

DEFAULT_TOLERANCES = (0, 1, 2, 5, 10)
DEFAULT_EPS = 1e-10

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_TOLERANCES",
    "boundaries",
    "boundary_scores",
    "duration_histogram",
    "duration_kl",
    "evaluate",
    "log_duration_w1",
    "match_boundaries",
    "position_f1",
    "segment_scores",
]


# ----------------------------------------------------------------------------
# ratios with the empty-denominator rule


def _ratio(num: float, den: float, other: float) -> float:
    """``num / den``; with ``den == 0`` it is 1 if ``other == 0`` else 0."""
    if den == 0:
        return 1.0 if other == 0 else 0.0
    return float(num) / float(den)


def _prf(matched: int, num_true: int, num_pred: int) -> tuple[float, float, float]:
    precision = _ratio(matched, num_pred, num_true)
    recall = _ratio(matched, num_true, num_pred)
    f1 = 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)
    return precision, recall, f1


# ----------------------------------------------------------------------------
# input checks


def _as_label_array(x, name: str, index: int | None = None) -> np.ndarray:
    where = name if index is None else f"{name}[{index}]"
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(
            f"{where} must be a one-dimensional integer array, got shape {arr.shape}"
            + ("; pass a list with one 1-D array per sequence" if index is not None else "")
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.bool_) or not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{where} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_pair(true_labels, pred_labels) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if isinstance(true_labels, np.ndarray) and true_labels.ndim == 1:
        raise ValueError("true_labels must be a list of 1-D arrays (one per sequence), not a single 1-D array")
    if isinstance(pred_labels, np.ndarray) and pred_labels.ndim == 1:
        raise ValueError("pred_labels must be a list of 1-D arrays (one per sequence), not a single 1-D array")
    true_list = [_as_label_array(x, "true_labels", i) for i, x in enumerate(true_labels)]
    pred_list = [_as_label_array(x, "pred_labels", i) for i, x in enumerate(pred_labels)]
    if len(true_list) != len(pred_list):
        raise ValueError(
            f"true_labels has {len(true_list)} sequences but pred_labels has {len(pred_list)}; "
            "give one prediction per true sequence"
        )
    if not true_list:
        raise ValueError("true_labels is empty; give at least one sequence")
    for i, (t, p) in enumerate(zip(true_list, pred_list)):
        if t.shape != p.shape:
            raise ValueError(
                f"sequence {i}: true_labels[{i}] has length {t.shape[0]} but pred_labels[{i}] has "
                f"length {p.shape[0]}; predictions must cover exactly the true positions"
            )
    return true_list, pred_list


def _check_classes(x: np.ndarray, num_classes: int, name: str) -> None:
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(
            f"{name} holds labels outside 0..{num_classes - 1} (found {int(x.min())}..{int(x.max())}); "
            "check num_classes / class_names"
        )


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_tolerance(tol) -> int:
    if isinstance(tol, bool) or not isinstance(tol, (int, np.integer)) or tol < 0:
        raise ValueError(f"tolerance must be a non-negative integer, got {tol!r}")
    return int(tol)


def _check_durations(d, name: str) -> np.ndarray:
    arr = np.asarray(d)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of segment durations, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.bool_) or not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"{name} must hold integer durations, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 1:
        raise ValueError(f"{name} must hold durations >= 1, found {int(arr.min())}")
    return arr


# ----------------------------------------------------------------------------
# the whole data set as one concatenated sequence


class _Flat:
    """All sequences laid end to end, with what the metrics need of them.

    ``labels`` (N,), ``seq_start`` (S,) offsets, ``boundary`` (nb,) global
    positions of boundaries, ``boundary_seq`` (nb,) their sequence index,
    ``seg_start``/``seg_end``/``seg_label`` (ns,) maximal runs in global
    coordinates (never crossing a sequence edge).
    """

    def __init__(self, seqs: list[np.ndarray]):
        lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
        self.n = int(lengths.sum())
        self.labels = np.concatenate(seqs) if self.n else np.zeros(0, np.int64)
        self.seq_start = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        first = np.zeros(self.n, dtype=bool)
        first[self.seq_start[lengths > 0]] = True
        change = np.zeros(self.n, dtype=bool)
        change[1:] = self.labels[1:] != self.labels[:-1]
        self.boundary = np.flatnonzero(change & ~first)
        self.boundary_seq = np.searchsorted(self.seq_start, self.boundary, side="right") - 1
        self.seg_start = np.flatnonzero(change | first)
        self.seg_end = np.append(self.seg_start[1:], self.n)
        self.seg_label = self.labels[self.seg_start]

    def durations(self, c: int) -> np.ndarray:
        keep = self.seg_label == c
        return self.seg_end[keep] - self.seg_start[keep]


# ----------------------------------------------------------------------------
# boundaries


def boundaries(labels) -> np.ndarray:
    """Boundary positions of one label sequence.

    labels: (L,) ints. Returns (nb,) int64, increasing, values in ``1 .. L-1``:
    every ``t`` with ``labels[t] != labels[t-1]``.
    """
    labels = _as_label_array(labels, "labels")
    return np.flatnonzero(labels[1:] != labels[:-1]).astype(np.int64) + 1


@njit(cache=True)
def _greedy_matches(a, b, tol):  # pragma: no cover - compiled
    # a, b sorted ascending; see the module docstring for why greedy is optimal
    i = 0
    j = 0
    matched = 0
    while i < a.shape[0] and j < b.shape[0]:
        diff = a[i] - b[j]
        if diff > tol:
            j += 1
        elif diff < -tol:
            i += 1
        else:
            matched += 1
            i += 1
            j += 1
    return matched


def match_boundaries(true_pos, pred_pos, tol: int) -> int:
    """Size of a maximum one-to-one matching with ``|p - t| <= tol``.

    true_pos: (nt,) ints, pred_pos: (np,) ints, positions of one sequence in any
    order. Returns the number of matched pairs (``<= min(nt, np)``).
    """
    tol = _check_tolerance(tol)
    a = np.sort(_as_label_array(true_pos, "true_pos"))
    b = np.sort(_as_label_array(pred_pos, "pred_pos"))
    return int(_greedy_matches(a, b, tol))


def _boundary_scores_flat(t: _Flat, p: _Flat, tolerances) -> dict[int, tuple[float, float, float]]:
    out = {}
    for tol in tolerances:
        tol = _check_tolerance(tol)
        # spread the sequences apart by more than tol so that one greedy pass over
        # the whole data set can never pair boundaries of different sequences
        a = t.boundary + t.boundary_seq * (tol + 1)
        b = p.boundary + p.boundary_seq * (tol + 1)
        matched = int(_greedy_matches(a, b, tol)) if tol else int(np.intersect1d(a, b, assume_unique=True).size)
        out[tol] = _prf(matched, a.size, b.size)
    return out


def boundary_scores(
    true_labels: Sequence, pred_labels: Sequence, tolerances=DEFAULT_TOLERANCES
) -> dict[int, tuple[float, float, float]]:
    """Micro-averaged boundary precision, recall and F1 at each tolerance.

    true_labels, pred_labels: lists of (L_i,) int arrays. Returns
    ``{tol: (precision, recall, f1)}``.
    """
    t, p = _check_pair(true_labels, pred_labels)
    return _boundary_scores_flat(_Flat(t), _Flat(p), tolerances)


# ----------------------------------------------------------------------------
# segments


def _segment_scores_flat(t: _Flat, p: _Flat) -> tuple[float, float, float]:
    # both segmentations tile the same global range, so (start, end) pairs are
    # unique within each and one integer key identifies a span
    width = t.n + 1
    kt = t.seg_start * width + t.seg_end
    kp = p.seg_start * width + p.seg_end
    _, it, ip = np.intersect1d(kt, kp, assume_unique=True, return_indices=True)
    correct = int(np.count_nonzero(t.seg_label[it] == p.seg_label[ip]))
    return _prf(correct, kt.size, kp.size)


def segment_scores(true_labels: Sequence, pred_labels: Sequence) -> tuple[float, float, float]:
    """Micro-averaged segment (precision, recall, f1); a hit needs equal start, end and label.

    true_labels, pred_labels: lists of (L_i,) int arrays; segments are maximal runs.
    """
    t, p = _check_pair(true_labels, pred_labels)
    return _segment_scores_flat(_Flat(t), _Flat(p))


# ----------------------------------------------------------------------------
# positions


def _confusion(t: np.ndarray, p: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _f1_from_confusion(conf: np.ndarray) -> np.ndarray:
    tp = np.diag(conf).astype(np.float64)
    num_true = conf.sum(axis=1)
    num_pred = conf.sum(axis=0)
    f1 = np.empty(conf.shape[0])
    for c in range(conf.shape[0]):  # over classes, not positions
        f1[c] = _prf(tp[c], num_true[c], num_pred[c])[2]
    return f1


def position_f1(true_labels: Sequence, pred_labels: Sequence, num_classes: int) -> tuple[np.ndarray, float]:
    """Per-class position F1 over all positions of all sequences, and its macro mean.

    Returns ``(per_class, macro)`` with per_class of shape (num_classes,).
    """
    num_classes = _check_positive_int(num_classes, "num_classes")
    t, p = _check_pair(true_labels, pred_labels)
    tt = np.concatenate(t)
    pp = np.concatenate(p)
    _check_classes(tt, num_classes, "true_labels")
    _check_classes(pp, num_classes, "pred_labels")
    per_class = _f1_from_confusion(_confusion(tt, pp, num_classes))
    return per_class, float(per_class.mean())


# ----------------------------------------------------------------------------
# durations


def duration_histogram(durations, max_duration: int, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Smoothed duration frequencies over ``d = 1 .. K``.

    durations: (n,) ints >= 1; values above ``max_duration`` (K) go into the
    last bin. Returns (K,) float64 summing to 1:
    ``(counts / n + eps) / sum(counts / n + eps)``, uniform when n = 0.
    """
    max_duration = _check_positive_int(max_duration, "max_duration")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    d = _check_durations(durations, "durations")
    counts = np.bincount(np.minimum(d, max_duration) - 1, minlength=max_duration).astype(np.float64)
    freq = counts / max(d.size, 1) + eps
    return freq / freq.sum()


def duration_kl(true_durations, pred_durations, max_duration: int, eps: float = DEFAULT_EPS) -> float:
    """``KL(true || pred)`` of the smoothed duration histograms (nats); NaN if no true durations."""
    t = _check_durations(true_durations, "true_durations")
    if t.size == 0:
        # still check the other arguments so bad input is never silently accepted
        duration_histogram(pred_durations, max_duration, eps)
        return math.nan
    p_hist = duration_histogram(t, max_duration, eps)
    q_hist = duration_histogram(pred_durations, max_duration, eps)
    return float(np.sum(p_hist * (np.log(p_hist) - np.log(q_hist))))


def log_duration_w1(true_durations, pred_durations) -> float:
    """Wasserstein-1 distance between the empirical laws of ``log(duration)``; NaN if either is empty."""
    x = np.sort(np.log(_check_durations(true_durations, "true_durations")))
    y = np.sort(np.log(_check_durations(pred_durations, "pred_durations")))
    if x.size == 0 or y.size == 0:
        return math.nan
    # integral of |F_x - F_y| over the merged support, piecewise constant between points
    grid = np.concatenate((x, y))
    grid.sort(kind="mergesort")
    gaps = np.diff(grid)
    fx = np.searchsorted(x, grid[:-1], side="right") / x.size
    fy = np.searchsorted(y, grid[:-1], side="right") / y.size
    return float(np.sum(np.abs(fx - fy) * gaps))


# ----------------------------------------------------------------------------
# everything at once


def _json_float(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def evaluate(true_labels: Sequence, pred_labels: Sequence, class_names: Sequence[str], max_duration: int) -> dict:
    """All benchmark metrics of one model on one data split, as a JSON-ready dict.

    true_labels, pred_labels: lists of (L_i,) int arrays with labels in
    ``0 .. C-1``; class_names: C names; max_duration: the model's K (the last
    duration-histogram bin). Floats are plain Python floats, NaN is None.

    Keys: ``boundary_precision``, ``boundary_recall``, ``boundary_f1`` (exact);
    ``boundary_{precision,recall,f1}_tolerance`` ({"1", "2", "5", "10"} -> value);
    ``segment_precision``, ``segment_recall``, ``segment_f1``; ``position_f1``
    (name -> F1), ``position_f1_macro``, ``position_accuracy``, ``position_confusion``
    (true class -> predicted class -> positions); ``duration_kl``
    (name -> KL or None), ``duration_kl_mean`` (over classes with a defined KL);
    ``duration_w1_log`` (name -> W1 or None); ``duration_median``
    (name -> {"true", "pred"}); ``duration_count_true``, ``duration_count_pred``
    (name -> number of segments); ``num_segments`` ({"true", "pred"}).
    """
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a list of names, one per class, got the string {class_names!r}")
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("class_names is empty; give one name per class")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, got {names}")
    num_classes = len(names)
    max_duration = _check_positive_int(max_duration, "max_duration")
    t_list, p_list = _check_pair(true_labels, pred_labels)
    t, p = _Flat(t_list), _Flat(p_list)
    if t.n == 0:
        raise ValueError("all sequences are empty; there is nothing to evaluate")
    _check_classes(t.labels, num_classes, "true_labels")
    _check_classes(p.labels, num_classes, "pred_labels")

    bscores = _boundary_scores_flat(t, p, DEFAULT_TOLERANCES)
    seg_p, seg_r, seg_f1 = _segment_scores_flat(t, p)
    conf = _confusion(t.labels, p.labels, num_classes)
    pos_f1 = _f1_from_confusion(conf)

    kl, w1, median, count_true, count_pred = {}, {}, {}, {}, {}
    for c, name in enumerate(names):
        dt, dp = t.durations(c), p.durations(c)
        kl[name] = _json_float(duration_kl(dt, dp, max_duration))
        w1[name] = _json_float(log_duration_w1(dt, dp))
        median[name] = {
            "true": _json_float(np.median(dt)) if dt.size else None,
            "pred": _json_float(np.median(dp)) if dp.size else None,
        }
        count_true[name] = int(dt.size)
        count_pred[name] = int(dp.size)
    defined_kl = [v for v in kl.values() if v is not None]

    tol_keys = [tol for tol in DEFAULT_TOLERANCES if tol != 0]
    return {
        "boundary_precision": bscores[0][0],
        "boundary_recall": bscores[0][1],
        "boundary_f1": bscores[0][2],
        "boundary_precision_tolerance": {str(k): bscores[k][0] for k in tol_keys},
        "boundary_recall_tolerance": {str(k): bscores[k][1] for k in tol_keys},
        "boundary_f1_tolerance": {str(k): bscores[k][2] for k in tol_keys},
        "segment_precision": seg_p,
        "segment_recall": seg_r,
        "segment_f1": seg_f1,
        "position_f1": {name: float(pos_f1[c]) for c, name in enumerate(names)},
        "position_f1_macro": float(pos_f1.mean()),
        "position_accuracy": float(np.trace(conf) / t.n),
        "position_confusion": {name: {other: int(conf[c, o]) for o, other in enumerate(names)}
                               for c, name in enumerate(names)},
        "duration_kl": kl,
        "duration_kl_mean": float(np.mean(defined_kl)) if defined_kl else None,
        "duration_w1_log": w1,
        "duration_median": median,
        "duration_count_true": count_true,
        "duration_count_pred": count_pred,
        "num_segments": {"true": int(t.seg_start.size), "pred": int(p.seg_start.size)},
    }
