"""Tests of the benchmark metrics against hand-computed cases, brute force and invariants."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from semicrf.genomics import metrics as M

NAMES = ["intergenic", "exon", "intron"]


def arr(*xs):
    return np.array(xs, dtype=np.int64)


def random_labels(rng, num_seq, length, mean_run, num_classes=3):
    """Label sequences made of geometric runs (adjacent runs may share a label)."""
    out = []
    for _ in range(num_seq):
        runs = rng.geometric(1.0 / mean_run, size=length)
        runs = runs[: np.searchsorted(np.cumsum(runs), length) + 1]
        out.append(np.repeat(rng.integers(0, num_classes, size=runs.size), runs)[:length])
    return out


# ----------------------------------------------------------------------------
# boundaries


def test_boundaries_hand():
    # labels 0 0 | 1 1 1 | 2 | 0 : changes before positions 2, 5 and 6
    assert M.boundaries(arr(0, 0, 1, 1, 1, 2, 0)).tolist() == [2, 5, 6]
    assert M.boundaries(arr(1, 1, 1)).tolist() == []
    assert M.boundaries(arr(4)).tolist() == []
    assert M.boundaries(np.zeros(0, np.int64)).tolist() == []
    # every position a new segment: boundaries 1 .. L-1
    assert M.boundaries(arr(0, 1, 0, 1)).tolist() == [1, 2, 3]


def test_match_boundaries_hand():
    # true 10, 20; pred 11, 12, 19; tol 1: 10-11 and 20-19 -> 2
    assert M.match_boundaries(arr(10, 20), arr(11, 12, 19), 1) == 2
    assert M.match_boundaries(arr(10, 20), arr(11, 12, 19), 0) == 0
    # true 5, 6; pred 6, 7; tol 1. Pairing each prediction with its nearest true
    # boundary would take 6-6 and leave 7 without a partner (|7-5| = 2); the
    # maximum matching is 5-6, 6-7 -> 2. At tol 0 only 6-6 -> 1.
    assert M.match_boundaries(arr(5, 6), arr(6, 7), 1) == 2
    assert M.match_boundaries(arr(5, 6), arr(6, 7), 0) == 1
    # order of the inputs does not matter
    assert M.match_boundaries(arr(6, 5), arr(7, 6), 1) == 2
    # one true boundary cannot be matched twice: true 10; pred 9, 10, 11 -> 1
    assert M.match_boundaries(arr(10), arr(9, 10, 11), 5) == 1
    assert M.match_boundaries(arr(), arr(3), 2) == 0
    assert M.match_boundaries(arr(), arr(), 2) == 0


def _brute_max_matching(t, p, tol):
    """Exhaustive maximum matching: try every partner (or none) for the first true point."""
    t, p = list(t), list(p)

    def best(i, used):
        if i == len(t):
            return 0
        result = best(i + 1, used)  # t[i] unmatched
        for j in range(len(p)):
            if not used & (1 << j) and abs(t[i] - p[j]) <= tol:
                result = max(result, 1 + best(i + 1, used | (1 << j)))
        return result

    return best(0, 0)


def test_match_boundaries_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(400):
        nt, npred = rng.integers(0, 7, size=2)
        span = int(rng.integers(5, 30))
        t = rng.choice(np.arange(1, span), size=min(nt, span - 1), replace=False)
        p = rng.choice(np.arange(1, span), size=min(npred, span - 1), replace=False)
        tol = int(rng.integers(0, 5))
        assert M.match_boundaries(t, p, tol) == _brute_max_matching(t, p, tol), (t, p, tol)


def test_match_boundaries_rejects_bad_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        M.match_boundaries(arr(1), arr(1), -1)
    with pytest.raises(ValueError, match="tolerance"):
        M.match_boundaries(arr(1), arr(1), 1.5)


def test_boundary_scores_hand():
    true = [arr(0, 0, 0, 1, 1, 1, 1, 2, 2, 2), arr(1, 1, 1, 1, 1)]  # boundaries {3, 7} and {}
    pred = [arr(0, 0, 1, 1, 1, 1, 1, 1, 2, 2), arr(1, 1, 0, 1, 1)]  # boundaries {2, 8} and {2, 3}
    s = M.boundary_scores(true, pred, tolerances=(0, 1, 2))
    # tol 0: no match; 2 true, 4 predicted -> P = R = F1 = 0
    assert s[0] == (0.0, 0.0, 0.0)
    # tol 1: 3-2 and 7-8 match; P = 2/4, R = 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert s[1] == pytest.approx((0.5, 1.0, 2 / 3))
    # tol 2: the second sequence has no true boundary, nothing more to match
    assert s[2] == pytest.approx((0.5, 1.0, 2 / 3))
    assert set(M.boundary_scores(true, pred)) == {0, 1, 2, 5, 10}


def test_boundary_scores_never_match_across_sequences():
    # the true boundary of sequence 0 is at its last position (4), the predicted
    # one of sequence 1 at its position 1: neighbours once the data are laid end
    # to end, but in different sequences, so never a match
    true = [arr(0, 0, 0, 0, 1), arr(2, 2, 2)]
    pred = [arr(0, 0, 0, 0, 0), arr(2, 0, 0)]
    assert M.boundary_scores(true, pred, tolerances=(10,))[10] == (0.0, 0.0, 0.0)


def test_boundary_scores_empty_cases():
    flat = [arr(1, 1, 1)]
    split = [arr(1, 2, 2)]
    # nothing true and nothing predicted: perfect
    assert M.boundary_scores(flat, flat, (0,))[0] == (1.0, 1.0, 1.0)
    # something true, nothing predicted: P = 0 (den 0, other side not empty), R = 0/1
    assert M.boundary_scores(split, flat, (0,))[0] == (0.0, 0.0, 0.0)
    # nothing true, something predicted: P = 0/1, R = 0 by the same rule
    assert M.boundary_scores(flat, split, (0,))[0] == (0.0, 0.0, 0.0)


def test_boundary_scores_equal_sum_of_per_sequence_matchings():
    rng = np.random.default_rng(2)
    true = random_labels(rng, 6, 400, 20)
    pred = random_labels(rng, 6, 400, 6)
    for tol in (0, 1, 3, 10):
        matched = sum(M.match_boundaries(M.boundaries(t), M.boundaries(p), tol) for t, p in zip(true, pred))
        nt = sum(M.boundaries(t).size for t in true)
        npred = sum(M.boundaries(p).size for p in pred)
        prec, rec, f1 = M.boundary_scores(true, pred, (tol,))[tol]
        assert prec == pytest.approx(matched / npred)
        assert rec == pytest.approx(matched / nt)
        assert f1 == pytest.approx(2 * prec * rec / (prec + rec))


def test_boundary_scores_symmetric_and_monotone():
    rng = np.random.default_rng(3)
    true = random_labels(rng, 5, 300, 15)
    pred = random_labels(rng, 5, 300, 8)
    fwd = M.boundary_scores(true, pred)
    bwd = M.boundary_scores(pred, true)
    previous = -1.0
    for tol in sorted(fwd):
        p, r, f = fwd[tol]
        assert bwd[tol] == pytest.approx((r, p, f))  # swapping swaps P and R, keeps F1
        assert f >= previous  # a larger tolerance can only match more
        previous = f


# ----------------------------------------------------------------------------
# segments


def test_segment_scores_hand():
    # true (0,2,0) (2,5,1) (5,7,0); pred (0,2,0) (2,4,1) (4,7,0): one hit of 3 and 3
    true = [arr(0, 0, 1, 1, 1, 0, 0)]
    pred = [arr(0, 0, 1, 1, 0, 0, 0)]
    assert M.segment_scores(true, pred) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # same spans, one wrong label: (0,2,0) hits, (2,4,1) vs (2,4,2) does not
    assert M.segment_scores([arr(0, 0, 1, 1)], [arr(0, 0, 2, 2)]) == pytest.approx((0.5, 0.5, 0.5))


def test_segment_scores_respect_sequence_edges():
    # seq 0: (0,3,0) both sides. seq 1: true (0,1,0) (1,2,1), pred (0,2,0).
    # Runs never continue into the next sequence, so 3 true, 2 predicted, 1 hit:
    # P = 1/2, R = 1/3, F1 = 2 (1/6) / (5/6) = 0.4
    true = [arr(0, 0, 0), arr(0, 1)]
    pred = [arr(0, 0, 0), arr(0, 0)]
    assert M.segment_scores(true, pred) == pytest.approx((0.5, 1 / 3, 0.4))


def test_segment_scores_single_run_split_run_and_no_merging_across_sequences():
    # one run each: a single correct segment
    assert M.segment_scores([arr(2, 2, 2, 2)], [arr(2, 2, 2, 2)]) == (1.0, 1.0, 1.0)
    # true 1 1 1 1 is one segment (0,4,1); a prediction split by a different
    # label in the middle has 3 segments, none equal to it
    assert M.segment_scores([arr(1, 1, 1, 1)], [arr(1, 0, 1, 1)]) == (0.0, 0.0, 0.0)
    # two sequences holding one run of the same label each: two segments, not one across the seam
    res = M.evaluate([arr(0, 0), arr(0, 0)], [arr(0, 0), arr(0, 0)], ["a", "b"], 5)
    assert res["num_segments"] == {"true": 2, "pred": 2}


# ----------------------------------------------------------------------------
# positions


def test_position_f1_hand():
    true = [arr(0, 0, 1, 1, 2)]
    pred = [arr(0, 1, 1, 1, 0)]
    # class 0: TP 1 (pos 0), FP 1 (pos 4), FN 1 (pos 1) -> 2/(2+1+1) = 0.5
    # class 1: TP 2, FP 1 (pos 1), FN 0 -> 4/5 = 0.8
    # class 2: TP 0, FN 1 -> 0
    # class 3: absent from both -> 1 (nothing to find, nothing claimed)
    per_class, macro = M.position_f1(true, pred, 4)
    assert per_class == pytest.approx([0.5, 0.8, 0.0, 1.0])
    assert macro == pytest.approx(2.3 / 4)
    per_class, macro = M.position_f1(true, pred, 3)
    assert macro == pytest.approx(1.3 / 3)


def test_position_f1_micro_over_sequences():
    # split the sequence of the hand case in two: the counts, hence the scores, do not change
    per_class, _ = M.position_f1([arr(0, 0), arr(1, 1, 2)], [arr(0, 1), arr(1, 1, 0)], 3)
    assert per_class == pytest.approx([0.5, 0.8, 0.0])


# ----------------------------------------------------------------------------
# durations


def test_duration_histogram_hand():
    # durations 1 1 3 7 with K = 5: 7 goes into the last bin; counts 2 0 1 0 1 of 4
    # eps 0.1: 0.6 0.1 0.35 0.1 0.35, sum 1.5
    h = M.duration_histogram(arr(1, 1, 3, 7), 5, eps=0.1)
    assert h == pytest.approx(np.array([0.6, 0.1, 0.35, 0.1, 0.35]) / 1.5)
    h = M.duration_histogram(arr(1, 1, 3, 7), 5)
    assert h == pytest.approx([0.5, 0.0, 0.25, 0.0, 0.25], abs=1e-9)
    assert h.sum() == pytest.approx(1.0) and h.min() > 0
    assert M.duration_histogram(arr(), 4) == pytest.approx([0.25] * 4)


def test_duration_kl_hand():
    # p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    assert M.duration_kl(arr(1, 1, 2, 2), arr(1, 2, 2, 2), 2) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-8)
    # no predicted segment: compared with uniform over K = 4 -> ln 4 - ln 2 = ln 2, finite
    assert M.duration_kl(arr(1, 2), arr(), 4) == pytest.approx(math.log(2), rel=1e-8)
    # disjoint supports: p ~ (1, eps), q ~ (eps, 1): KL ~ ln((1 + eps) / eps), large but finite
    eps = 1e-10
    assert M.duration_kl(arr(1), arr(2), 2, eps=eps) == pytest.approx(math.log((1 + eps) / eps), rel=1e-6)
    # everything longer than K lands in the last bin, so these agree
    assert M.duration_kl(arr(5, 9, 100), arr(5, 5, 5), 5) == pytest.approx(0.0, abs=1e-12)
    # no true segment: undefined
    assert math.isnan(M.duration_kl(arr(), arr(3), 5))


def test_duration_kl_invariants():
    rng = np.random.default_rng(4)
    a = rng.integers(1, 60, size=200)
    b = rng.integers(1, 60, size=150)
    assert M.duration_kl(a, a, 50) == pytest.approx(0.0, abs=1e-12)
    assert M.duration_kl(a, b, 50) > 0
    # only the histogram matters, not the order or the multiplicity scale
    assert M.duration_kl(a, np.concatenate([b, b])[::-1], 50) == pytest.approx(M.duration_kl(a, b, 50))


def test_log_duration_w1_hand():
    # {ln 10} vs {ln 100}: a shift by ln 10
    assert M.log_duration_w1(arr(10), arr(100)) == pytest.approx(math.log(10))
    # {0, ln 100} vs {ln 10, ln 10}: sorted pairs differ by ln 10 each
    assert M.log_duration_w1(arr(1, 100), arr(10, 10)) == pytest.approx(math.log(10))
    # {0} vs {0, ln 100}: |F_x - F_y| = 1/2 on [0, ln 100] -> ln 10
    assert M.log_duration_w1(arr(1), arr(1, 100)) == pytest.approx(math.log(10))
    assert math.isnan(M.log_duration_w1(arr(), arr(3)))
    assert math.isnan(M.log_duration_w1(arr(3), arr()))


def test_log_duration_w1_against_sorted_pairing():
    # for n and m points, replicating each sample to lcm(n, m) points gives equal
    # sizes, where W1 is the mean distance between sorted samples
    rng = np.random.default_rng(5)
    for _ in range(50):
        n, m = rng.integers(1, 9, size=2)
        x = rng.integers(1, 5000, size=n)
        y = rng.integers(1, 5000, size=m)
        size = math.lcm(int(n), int(m))
        xs = np.sort(np.log(np.repeat(x, size // n)))
        ys = np.sort(np.log(np.repeat(y, size // m)))
        assert M.log_duration_w1(x, y) == pytest.approx(np.mean(np.abs(xs - ys)))
    # scaling every duration by 10 is a shift by ln 10 of the log law
    x = rng.integers(1, 500, size=30)
    assert M.log_duration_w1(x, 10 * x) == pytest.approx(math.log(10))


def test_duration_functions_reject_bad_input():
    with pytest.raises(ValueError, match="durations >= 1"):
        M.duration_histogram(arr(0, 3), 5)
    with pytest.raises(ValueError, match="max_duration"):
        M.duration_histogram(arr(3), 0)
    with pytest.raises(ValueError, match="eps"):
        M.duration_histogram(arr(3), 5, eps=0.0)
    with pytest.raises(ValueError, match="pred_durations"):
        M.log_duration_w1(arr(3), np.ones((2, 2), np.int64))
    with pytest.raises(ValueError, match="max_duration"):
        M.duration_kl(arr(), arr(3), -1)


# ----------------------------------------------------------------------------
# evaluate


def test_evaluate_hand():
    # seq 0 true: 0 0 0 1 1 2 2 2 2 2   segs (0,3,0) (3,5,1) (5,10,2), boundaries 3 5
    #      pred: 0 0 0 0 1 1 2 2 2 2   segs (0,4,0) (4,6,1) (6,10,2), boundaries 4 6
    # seq 1 true: 1 1 1 1               seg  (0,4,1)
    #      pred: 1 1 1 1               seg  (0,4,1)
    true = [arr(0, 0, 0, 1, 1, 2, 2, 2, 2, 2), arr(1, 1, 1, 1)]
    pred = [arr(0, 0, 0, 0, 1, 1, 2, 2, 2, 2), arr(1, 1, 1, 1)]
    r = M.evaluate(true, pred, NAMES, 4)
    json.dumps(r, allow_nan=False)  # plain JSON, no NaN

    # boundaries: exact none of 2; within 1 both -> P = R = F1 = 1 from tol 1 on
    assert (r["boundary_precision"], r["boundary_recall"], r["boundary_f1"]) == (0.0, 0.0, 0.0)
    assert set(r["boundary_f1_tolerance"]) == {"1", "2", "5", "10"}
    assert r["boundary_f1_tolerance"] == {"1": 1.0, "2": 1.0, "5": 1.0, "10": 1.0}
    assert r["boundary_precision_tolerance"]["1"] == 1.0 and r["boundary_recall_tolerance"]["5"] == 1.0
    # segments: only (0,4,1) of seq 1 matches; 4 true, 4 predicted
    assert (r["segment_precision"], r["segment_recall"], r["segment_f1"]) == pytest.approx((0.25, 0.25, 0.25))
    # positions: 14 in all, wrong at seq-0 positions 3 (1 -> 0) and 5 (2 -> 1)
    # class 0: TP 3, FP 1, FN 0 -> 6/7; class 1: TP 5 (1 + 4), FP 1, FN 1 -> 10/12;
    # class 2: TP 4, FP 0, FN 1 -> 8/9
    assert r["position_f1"] == pytest.approx({"intergenic": 6 / 7, "exon": 10 / 12, "intron": 8 / 9})
    assert r["position_f1_macro"] == pytest.approx((6 / 7 + 10 / 12 + 8 / 9) / 3)
    assert r["position_accuracy"] == pytest.approx(12 / 14)
    # true -> predicted positions: intergenic 3 -> 3; exon 6 -> 5 exon, 1 intergenic; intron 5 -> 4 intron, 1 exon
    assert r["position_confusion"] == {"intergenic": {"intergenic": 3, "exon": 0, "intron": 0},
                                       "exon": {"intergenic": 1, "exon": 5, "intron": 0},
                                       "intron": {"intergenic": 0, "exon": 1, "intron": 4}}
    # durations, K = 4 (5 goes to bin 4):
    # intergenic true {3} pred {4}: KL ~ ln(1/eps); exon true {2, 4} pred {2, 4}: 0;
    # intron true {5 -> 4} pred {4}: 0
    assert r["duration_kl"]["intergenic"] == pytest.approx(math.log(1e10), rel=1e-6)
    assert r["duration_kl"]["exon"] == pytest.approx(0.0, abs=1e-12)
    assert r["duration_kl"]["intron"] == pytest.approx(0.0, abs=1e-12)
    assert r["duration_kl_mean"] == pytest.approx(math.log(1e10) / 3, rel=1e-6)
    # W1 on log durations: ln(4/3), 0, ln(5/4) (no clipping at K here)
    assert r["duration_w1_log"] == pytest.approx({"intergenic": math.log(4 / 3), "exon": 0.0, "intron": math.log(5 / 4)})
    assert r["duration_median"] == {
        "intergenic": {"true": 3.0, "pred": 4.0},
        "exon": {"true": 3.0, "pred": 3.0},
        "intron": {"true": 5.0, "pred": 4.0},
    }
    assert r["duration_count_true"] == {"intergenic": 1, "exon": 2, "intron": 1}
    assert r["duration_count_pred"] == {"intergenic": 1, "exon": 2, "intron": 1}
    assert r["num_segments"] == {"true": 4, "pred": 4}


def test_evaluate_perfect_prediction():
    rng = np.random.default_rng(6)
    true = random_labels(rng, 8, 500, 30)
    r = M.evaluate(true, [t.copy() for t in true], NAMES, 40)
    for key in ("boundary_precision", "boundary_recall", "boundary_f1", "segment_f1", "position_f1_macro", "position_accuracy"):
        assert r[key] == 1.0
    assert all(v == 1.0 for v in r["boundary_f1_tolerance"].values())
    assert all(v == 1.0 for v in r["position_f1"].values())
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in r["duration_kl"].values())
    assert all(v == 0.0 for v in r["duration_w1_log"].values())
    assert all(m["true"] == m["pred"] for m in r["duration_median"].values())


def test_evaluate_absent_classes():
    # intron never occurs in the truth; exon occurs but is never predicted
    true = [arr(0, 0, 1, 1, 0, 0)]
    pred = [arr(0, 0, 0, 0, 0, 0)]
    r = M.evaluate(true, pred, NAMES, 10)
    json.dumps(r, allow_nan=False)
    assert r["duration_kl"]["intron"] is None  # nothing true to compare with
    assert r["duration_w1_log"]["intron"] is None
    assert r["duration_median"]["intron"] == {"true": None, "pred": None}
    # exon: predicted nowhere; KL finite against the uniform histogram, and reported
    assert r["duration_count_pred"]["exon"] == 0 and r["duration_count_true"]["exon"] == 1
    assert r["duration_kl"]["exon"] == pytest.approx(math.log(10), rel=1e-6)  # p = bin 2, q uniform over 10
    assert r["duration_w1_log"]["exon"] is None
    assert r["duration_median"]["exon"] == {"true": 2.0, "pred": None}
    # mean KL over the defined classes only (intergenic and exon)
    kl = r["duration_kl"]
    assert r["duration_kl_mean"] == pytest.approx((kl["intergenic"] + kl["exon"]) / 2)
    # position F1: intron absent from both -> 1; exon never predicted -> 0
    assert r["position_f1"]["intron"] == 1.0 and r["position_f1"]["exon"] == 0.0


def test_evaluate_no_boundaries_anywhere():
    r = M.evaluate([arr(2, 2, 2)], [arr(2, 2, 2)], NAMES, 5)
    assert r["boundary_f1"] == 1.0 and r["segment_f1"] == 1.0
    assert r["duration_kl"]["intergenic"] is None and r["duration_kl"]["intron"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "true, pred, names, k, match",
    [
        ([arr(0, 1)], [arr(0, 1, 1)], NAMES, 5, "length"),
        ([arr(0, 1)], [arr(0, 1), arr(0)], NAMES, 5, "sequences"),
        ([arr(0, 3)], [arr(0, 1)], NAMES, 5, "true_labels holds labels outside"),
        ([arr(0, 1)], [arr(-1, 1)], NAMES, 5, "pred_labels holds labels outside"),
        ([arr(0, 1)], [arr(0, 1)], NAMES, 0, "max_duration"),
        ([arr(0, 1)], [arr(0, 1)], ["a", "a", "b"], 5, "distinct"),
        ([arr(0, 1)], [arr(0, 1)], [], 5, "class_names"),
        ([], [], NAMES, 5, "empty"),
        ([arr(0, 1)], [arr(0, 1)], "ab", 5, "list of names"),
        (arr(0, 1), arr(0, 1), NAMES, 5, "list of 1-D arrays"),
        ([np.zeros((2, 2), np.int64)], [np.zeros((2, 2), np.int64)], NAMES, 5, r"true_labels\[0\]"),
        ([np.array([0.5, 1.0])], [arr(0, 1)], NAMES, 5, "integers"),
    ],
)
def test_evaluate_rejects_bad_input(true, pred, names, k, match):
    with pytest.raises(ValueError, match=match):
        M.evaluate(true, pred, names, k)


def test_evaluate_speed_at_benchmark_size():
    # 200 sequences of 20 000 positions; the prediction flickers (many boundaries)
    rng = np.random.default_rng(7)
    true = random_labels(rng, 200, 20_000, 400)
    pred = [np.where(rng.random(t.size) < 0.05, rng.integers(0, 3, size=t.size), t) for t in true]
    M.evaluate(true[:2], pred[:2], NAMES, 1000)  # compile once
    start = time.perf_counter()
    r = M.evaluate(true, pred, NAMES, 1000)
    elapsed = time.perf_counter() - start
    assert 0 < r["boundary_f1"] < r["boundary_f1_tolerance"]["10"] <= 1
    assert elapsed < 3.0, f"evaluate took {elapsed:.2f} s"
