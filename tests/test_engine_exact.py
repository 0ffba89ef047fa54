"""The engine against brute-force enumeration of every segmentation (both backends)."""

import itertools
import math

import numpy as np
import pytest
import torch

import semicrf
from brute import enumerate_all, path_score

BACKENDS = ["reference", "cpu"]
CASES = [  # (T, C, K)
    (1, 1, 1), (4, 1, 2), (5, 2, 1), (5, 2, 2), (6, 3, 3), (6, 2, 7), (5, 3, 4), (6, 3, 1),
]


def make_inputs(T, C, K, B=3, optional=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    kw = dict(emissions=r(B, T, C), transitions=r(C, C), durations=r(K, C))
    if optional:
        kw.update(initial=r(C), final=r(C), start_scores=r(B, T, C), end_scores=r(B, T, C))
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    kw["lengths"] = lengths
    return kw


def truth(kw, b):
    L = int(kw["lengths"][b])
    C = kw["emissions"].shape[2]
    z = np.zeros((L, C))
    args = [kw["emissions"][b, :L].numpy(), kw["transitions"].numpy(), kw["durations"].numpy(),
            kw.get("initial", torch.zeros(C)).numpy(), kw.get("final", torch.zeros(C)).numpy(),
            kw["start_scores"][b, :L].numpy() if "start_scores" in kw else z,
            kw["end_scores"][b, :L].numpy() if "end_scores" in kw else z]
    return enumerate_all(*args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,C,K", CASES)
@pytest.mark.parametrize("optional", [False, True])
def test_partition_marginals_viterbi(backend, T, C, K, optional):
    kw = make_inputs(T, C, K, optional=optional, seed=T * 100 + C * 10 + K)
    log_z = semicrf.log_partition(**kw, backend=backend)
    marg = semicrf.marginals(**kw, backend=backend)
    vit = semicrf.viterbi(**kw, backend=backend)
    for b in range(3):
        L = int(kw["lengths"][b])
        ref = truth(kw, b)
        assert log_z[b].item() == pytest.approx(ref["log_z"], abs=1e-10)
        np.testing.assert_allclose(marg[b, :L].numpy(), ref["occupancy"], atol=1e-10)
        assert torch.all(marg[b, L:] == 0)
        np.testing.assert_allclose(marg[b, :L].sum(-1).numpy(), 1.0, atol=1e-12)
        assert vit.score[b].item() == pytest.approx(ref["best_score"], abs=1e-10)
        segs = vit.segments[b]
        # The segments tile [0, L), match the labels, and score exactly the best score (ties may differ).
        assert segs[0][0] == 0 and segs[-1][1] == L
        assert all(a[1] == b_[0] for a, b_ in zip(segs, segs[1:]))
        assert all(1 <= e - s <= K for s, e, _ in segs)
        lab = vit.labels[b]
        assert torch.all(lab[L:] == -1)
        for s, e, c in segs:
            assert torch.all(lab[s:e] == c)
        C_ = kw["emissions"].shape[2]
        z = np.zeros((L, C_))
        sc = path_score(segs, kw["emissions"][b, :L].numpy(), kw["transitions"].numpy(), kw["durations"].numpy(),
                        kw.get("initial", torch.zeros(C_)).numpy(), kw.get("final", torch.zeros(C_)).numpy(),
                        kw["start_scores"][b, :L].numpy() if "start_scores" in kw else z,
                        kw["end_scores"][b, :L].numpy() if "end_scores" in kw else z)
        assert sc == pytest.approx(ref["best_score"], abs=1e-10)


def _every_labelling(T, C, K, seed):
    """One sequence of length T and its enumeration, with every labelling: (inputs, truth, labels (C^T, T),
    the inputs expanded to one sequence per labelling, lengths aside)."""
    kw = make_inputs(T, C, K, B=1, seed=seed)
    kw["lengths"] = torch.tensor([T])
    all_labels = torch.tensor(list(itertools.product(range(C), repeat=T)))  # (C^T, T)
    n = all_labels.shape[0]
    big = {k: (v.expand(n, *v.shape[1:]) if k in ("emissions", "start_scores", "end_scores") else v)
           for k, v in kw.items() if k != "lengths"}
    return kw, truth(kw, 0), all_labels, big


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,C,K", [(4, 2, 2), (5, 3, 3), (6, 2, 1), (5, 2, 9), (6, 3, 2)])
def test_log_likelihood_matches_enumeration_and_normalises(backend, T, C, K):
    kw, ref, all_labels, big = _every_labelling(T, C, K, seed=7 + T + K)
    n = all_labels.shape[0]
    ll = semicrf.log_likelihood(labels=all_labels, lengths=torch.full((n,), T), **big, backend=backend)
    assert torch.all(ll <= 1e-12)
    assert torch.logsumexp(ll, 0).item() == pytest.approx(0.0, abs=1e-10)
    for i in range(n):
        key = tuple(all_labels[i].tolist())
        assert ll[i].item() == pytest.approx(ref["label_log_likelihood"][key], abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_are_the_expected_counts(backend):
    kw = make_inputs(6, 3, 3, B=3, seed=11)
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if k != "lengths"}
    semicrf.log_partition(lengths=kw["lengths"], **leaves, backend=backend).sum().backward()
    for b in range(3):
        L = int(kw["lengths"][b])
        ref = truth(kw, b)
        np.testing.assert_allclose(leaves["emissions"].grad[b, :L].numpy(), ref["occupancy"], atol=1e-10)
        assert torch.all(leaves["emissions"].grad[b, L:] == 0)
    tot_dur = sum(truth(kw, b)["durations"] for b in range(3))
    tot_tr = sum(truth(kw, b)["transitions"] for b in range(3))
    np.testing.assert_allclose(leaves["durations"].grad.numpy(), tot_dur, atol=1e-10)
    np.testing.assert_allclose(leaves["transitions"].grad.numpy(), tot_tr, atol=1e-10)
    # Each of the 3 sequences has exactly one first and one last segment.
    assert leaves["initial"].grad.sum().item() == pytest.approx(3.0, abs=1e-10)
    assert leaves["final"].grad.sum().item() == pytest.approx(3.0, abs=1e-10)
    # Every segment has one duration, one start and one end: the three totals are the expected segment count.
    n_segments = tot_dur.sum()
    assert leaves["durations"].grad.sum().item() == pytest.approx(n_segments, abs=1e-10)
    assert leaves["start_scores"].grad.sum().item() == pytest.approx(n_segments, abs=1e-10)
    assert leaves["end_scores"].grad.sum().item() == pytest.approx(n_segments, abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", ["log_partition", "log_likelihood"])
def test_gradcheck_against_finite_differences(backend, fn):
    kw = make_inputs(6, 3, 3, B=2, seed=5)
    lengths = kw.pop("lengths")
    labels = torch.tensor([[0, 0, 1, 1, 1, 2], [2, 2, 2, 2, 0, 1]])
    names = list(kw)

    def f(*xs):
        args = dict(zip(names, xs))
        if fn == "log_partition":
            return semicrf.log_partition(lengths=lengths, backend=backend, **args)
        return semicrf.log_likelihood(labels=labels, lengths=lengths, backend=backend, **args)

    xs = tuple(kw[n].clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_paths_are_minus_inf_not_nan(backend):
    kw = make_inputs(6, 3, 3, B=2, optional=True, seed=3)
    kw["transitions"][0, 1] = -math.inf
    kw["durations"][0, :] = -math.inf  # no segment of length 1
    kw["end_scores"][:, :, 2] = -math.inf  # label 2 can never end
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if k != "lengths"}
    lz = semicrf.log_partition(lengths=kw["lengths"], **leaves, backend=backend)
    for b in range(2):
        assert lz[b].item() == pytest.approx(truth(kw, b)["log_z"], abs=1e-10)
    lz.sum().backward()
    for v in leaves.values():
        assert not torch.isnan(v.grad).any()
    # A sequence whose only possible paths are impossible has log Z = -inf, without NaN.
    lz1 = semicrf.log_partition(torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(2, 2),
                                torch.full((3, 2), -math.inf), backend=backend)
    assert lz1.item() == -math.inf
    v = semicrf.viterbi(torch.zeros(1, 1, 2), torch.zeros(2, 2), torch.full((3, 2), -math.inf), backend=backend)
    assert v.score.item() == -math.inf and v.segments == [[]] and torch.all(v.labels == -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_is_ignored_whatever_it_holds(backend):
    kw = make_inputs(6, 2, 3, B=2, seed=9)
    kw["lengths"] = torch.tensor([6, 3])
    base = semicrf.log_partition(**kw, backend=backend)
    for name in ("emissions", "start_scores", "end_scores"):
        kw[name] = kw[name].clone()
        kw[name][1, 3:] = float("nan")
    assert torch.equal(semicrf.log_partition(**kw, backend=backend), base)


def _class_sequences_truth(kw, classes, T):
    """{class sequence: log P} by enumeration: every label path, its labels mapped to their classes."""
    from brute import logsumexp, path_labels, path_score, paths

    C = kw["emissions"].shape[2]
    args = [kw["emissions"][0].numpy(), kw["transitions"].numpy(), kw["durations"].numpy(), kw["initial"].numpy(),
            kw["final"].numpy(), kw["start_scores"][0].numpy(), kw["end_scores"][0].numpy()]
    by_class = {}
    for path in paths(T, kw["durations"].shape[0], C):
        key = tuple(classes[path_labels(path, T)].tolist())
        by_class.setdefault(key, []).append(path_score(path, *args))
    everything = logsumexp([s for v in by_class.values() for s in v])
    return {k: logsumexp(v) - everything for k, v in by_class.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,K,classes", [(5, 2, [0, 0, 1]), (5, 3, [1, 0, 1]), (4, 4, [0, 1, 1, 0]),
                                         (5, 1, [0, 0, 0])])
def test_log_likelihood_of_classes_sums_the_label_paths_of_each_class_sequence(backend, T, K, classes):
    """Labels grouped into classes: log P(class sequence) against enumerating every label path."""
    classes = np.array(classes)
    C, G = len(classes), int(classes.max()) + 1
    kw = make_inputs(T, C, K, B=1, seed=11 + T + K + C)
    kw["transitions"][0, 1] = -math.inf  # a forbidden transition inside a class: still exact
    ref = _class_sequences_truth(kw, classes, T)
    seqs = torch.tensor(list(itertools.product(range(G), repeat=T)))
    n = seqs.shape[0]
    big = {k: (v.expand(n, *v.shape[1:]) if k in ("emissions", "start_scores", "end_scores") else v)
           for k, v in kw.items() if k != "lengths"}
    ll = semicrf.log_likelihood(labels=seqs, lengths=torch.full((n,), T), **big, backend=backend,
                                label_classes=torch.tensor(classes))
    assert torch.logsumexp(ll, 0).item() == pytest.approx(0.0, abs=1e-10)  # the class sequences partition
    for i in range(n):
        want = ref.get(tuple(seqs[i].tolist()), -math.inf)
        got = ll[i].item()
        assert got == want if want == -math.inf else got == pytest.approx(want, abs=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_label_classes_that_are_the_identity_change_nothing(backend):
    kw = make_inputs(6, 3, 3, B=3, seed=5)
    labels = torch.randint(0, 3, (3, 6), generator=torch.Generator().manual_seed(1))
    plain = semicrf.log_likelihood(labels=labels, **kw, backend=backend)
    same = semicrf.log_likelihood(labels=labels, **kw, backend=backend, label_classes=torch.arange(3))
    assert torch.equal(plain, same)


def test_label_classes_errors_name_the_argument():
    kw = make_inputs(4, 3, 2, B=1)
    labels = torch.zeros(1, 4, dtype=torch.int64)
    for bad, message in [(torch.tensor([0, 1]), r"shape \(C,\) = \(3,\)"), (torch.tensor([0.0, 1.0, 1.0]), "integer"),
                         (torch.tensor([0, 3, 1]), r"label 1 has class 3")]:
        with pytest.raises(ValueError, match="label_classes") as info:
            semicrf.log_likelihood(labels=labels, **kw, label_classes=bad)
        assert info.match(message)
    with pytest.raises(ValueError, match="labels.*class of some label.*has 1 at position 2"):
        semicrf.log_likelihood(labels=torch.tensor([[0, 2, 1, 0]]), **kw, label_classes=torch.tensor([0, 2, 2]))


# ----------------------------------------------------------------------------- the gold segmentation
def _gold_path(labels, K):
    """The runs of ``labels`` as segments, a run longer than K cut into the fewest pieces of at most K
    whose lengths differ by at most one, the longer first: written out from the definition."""
    out, s = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[s]:
            n = t - s
            m = math.ceil(n / K)
            sizes = sorted([n // m + 1] * (n % m) + [n // m] * (m - n % m), reverse=True)
            a = s
            for size in sizes:
                out.append((a, a + size, labels[s]))
                a += size
            s = t
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,C,K", [(5, 2, 2), (6, 3, 3), (6, 2, 7), (5, 3, 1), (7, 2, 3)])
def test_segmentation_log_likelihood_is_the_gold_paths_probability(backend, T, C, K):
    kw, ref, all_labels, big = _every_labelling(T, C, K, seed=3 + T + K)
    n = all_labels.shape[0]
    seg = semicrf.segmentation_log_likelihood(labels=all_labels, lengths=torch.full((n,), T), **big, backend=backend)
    lab = semicrf.log_likelihood(labels=all_labels, lengths=torch.full((n,), T), **big, backend=backend)
    args = [kw["emissions"][0].numpy(), kw["transitions"].numpy(), kw["durations"].numpy(), kw["initial"].numpy(),
            kw["final"].numpy(), kw["start_scores"][0].numpy(), kw["end_scores"][0].numpy()]
    for i in range(n):
        y = all_labels[i].tolist()
        assert seg[i].item() == pytest.approx(path_score(_gold_path(y, K), *args) - ref["log_z"], abs=1e-10)
    # One path of each labelling: at most the labelling's probability, equal when runs cannot be split.
    assert torch.all(seg <= lab + 1e-12)
    if K == 1:
        torch.testing.assert_close(seg, lab, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_segmentation_log_likelihood_gradients_and_padding(backend):
    kw = make_inputs(7, 3, 3, B=3, seed=9)
    lengths = kw.pop("lengths")
    labels = torch.tensor([[0, 0, 0, 0, 1, 2, 2], [2, 2, 2, 2, 2, 2, 2], [1, 0, 1, 1, 0, 0, 0]])
    names = list(kw)

    def f(*xs):
        return semicrf.segmentation_log_likelihood(labels=labels, lengths=lengths, backend=backend,
                                                   **dict(zip(names, xs)))

    xs = tuple(kw[n].clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, xs, eps=1e-6, atol=1e-7, rtol=1e-5)
    # Whatever lies past a length (labels out of range, huge scores) changes nothing.
    junk = {k: v.clone() for k, v in kw.items()}
    for k in ("emissions", "start_scores", "end_scores"):
        for b, L in enumerate(lengths.tolist()):
            junk[k][b, L:] = 1e30
    bad_labels = labels.clone()
    for b, L in enumerate(lengths.tolist()):
        bad_labels[b, L:] = 99
    a = semicrf.segmentation_log_likelihood(labels=labels, lengths=lengths, backend=backend, **kw)
    b_ = semicrf.segmentation_log_likelihood(labels=bad_labels, lengths=lengths, backend=backend, **junk)
    torch.testing.assert_close(a, b_, atol=1e-10, rtol=0)


def test_segmentation_log_likelihood_refuses_bad_labels_by_name():
    kw = make_inputs(4, 2, 2, B=1)
    with pytest.raises(ValueError, match="labels"):
        semicrf.segmentation_log_likelihood(labels=torch.tensor([[0, 1, 5, 0]]), **kw)
