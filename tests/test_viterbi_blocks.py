"""semicrf.viterbi_blocks: the CPU Viterbi of one sequence whose scores arrive in blocks.

Its path must be the brute-force best path on tiny inputs, and on larger ones exactly the whole-sequence
CPU Viterbi's (score, labels, segments, ties), however the sequence is cut into blocks; bad blocks are
refused by name."""

import math

import numpy as np
import pytest
import torch

import semicrf
from brute import enumerate_all

NEG_INF = -math.inf


def _inputs(T, C, K, seed, forbid=0.0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    kw = dict(emissions=r(1, T, C), transitions=r(C, C), durations=r(K, C), initial=r(C), final=r(C),
              start_scores=r(1, T, C), end_scores=r(1, T, C))
    if forbid:
        for name in ("transitions", "durations", "end_scores", "start_scores"):
            x = kw[name]
            x[torch.rand(x.shape, generator=g) < forbid] = NEG_INF
    return kw


def _blocks(kw, bounds, with_scores=True):
    for a, b in zip(bounds, bounds[1:]):
        yield (kw["emissions"][0, a:b], kw["start_scores"][0, a:b] if with_scores else None,
               kw["end_scores"][0, a:b] if with_scores else None)


def _cuts(T, n, seed):
    rng = np.random.default_rng(seed)
    return [0] + sorted(set(rng.integers(1, T, n).tolist())) + [T] if T > 1 else [0, T]


@pytest.mark.parametrize("T,C,K", [(1, 2, 1), (4, 2, 3), (5, 3, 2), (6, 2, 6)])
def test_best_path_is_the_enumerations(T, C, K):
    kw = _inputs(T, C, K, seed=T * 10 + C)
    want = enumerate_all(*(kw[n][0].numpy() if kw[n].dim() == 3 else kw[n].numpy() for n in
                           ("emissions", "transitions", "durations", "initial", "final", "start_scores", "end_scores")))
    got = semicrf.viterbi_blocks(_blocks(kw, _cuts(T, 2, T)), T, kw["transitions"], kw["durations"],
                                 kw["initial"], kw["final"])
    assert got.score.item() == pytest.approx(want["best_score"], abs=1e-9)
    assert [tuple(s) for s in got.segments[0]] == [tuple(s) for s in want["best_path"]]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("forbid", [0.0, 0.15])
@pytest.mark.parametrize("threads", [1, 2])
def test_equals_the_whole_sequence_viterbi_bit_for_bit(seed, forbid, threads):
    # K from below to above the parallel far part's step (SUB_BLOCK positions), one thread or two.
    rng = np.random.default_rng(seed)
    T, C, K = int(rng.integers(50, 400)), int(rng.integers(1, 7)), int(rng.integers(1, 60))
    kw = _inputs(T, C, K, seed, forbid)
    want = semicrf.viterbi(backend="cpu", **kw)
    for bounds in (_cuts(T, 5, seed), [0, T], list(range(0, T, 7)) + [T]):
        got = semicrf.viterbi_blocks(_blocks(kw, bounds), T, kw["transitions"], kw["durations"], kw["initial"],
                                     kw["final"], threads=threads)
        assert torch.equal(got.score, want.score)
        assert torch.equal(got.labels, want.labels)
        assert got.segments == want.segments


@pytest.mark.parametrize("threads", [1, 2])
def test_durations_on_a_progression_match_the_dense_reference(threads):
    # Labels whose lengths are one residue mod 3 (from 1 and from 5) or even: the look-back steps over
    # them, in the far part (K above the step of SUB_BLOCK positions) and in the near part.
    T, C, K = 700, 4, 80
    kw = _inputs(T, C, K, seed=31)
    d = torch.arange(1, K + 1)
    kw["durations"][d % 3 != 1, 0] = NEG_INF
    kw["durations"][(d < 5) | (d % 3 != 2), 1] = NEG_INF
    kw["durations"][d % 2 != 0, 2] = NEG_INF
    want = semicrf.viterbi(backend="reference", **kw)
    got = semicrf.viterbi_blocks(_blocks(kw, _cuts(T, 6, 3)), T, kw["transitions"], kw["durations"],
                                 kw["initial"], kw["final"], threads=threads)
    assert got.score.item() == pytest.approx(want.score.item(), abs=1e-9)
    assert got.segments == want.segments
    assert {e - s for s, e, c in got.segments[0] if c == 1} <= set(range(5, K + 1, 3))


@pytest.mark.parametrize("K", [9, 45])
@pytest.mark.parametrize("threads", [1, 2])
def test_ties_go_where_the_whole_sequence_viterbi_sends_them(K, threads):
    # Integer scores: many paths tie; both must pick the same one, also across the far / near split.
    g = torch.Generator().manual_seed(5)
    T, C = 120, 3
    kw = dict(emissions=torch.randint(-1, 2, (1, T, C), generator=g).double(),
              transitions=torch.zeros(C, C, dtype=torch.float64), durations=torch.zeros(K, C, dtype=torch.float64))
    want = semicrf.viterbi(backend="cpu", **kw)
    got = semicrf.viterbi_blocks(((kw["emissions"][0, a:a + 13], None, None) for a in range(0, T, 13)), T,
                                 kw["transitions"], kw["durations"], threads=threads)
    assert torch.equal(got.labels, want.labels) and got.segments == want.segments


def test_no_possible_path_is_minus_inf_and_no_segment():
    T, C, K = 10, 2, 3
    em = torch.zeros(T, C)
    dur = torch.zeros(K, C)
    dur[:] = NEG_INF  # no segment of any length
    got = semicrf.viterbi_blocks([(em[:4], None, None), (em[4:], None, None)], T, torch.zeros(C, C), dur)
    assert got.score.item() == NEG_INF and (got.labels == -1).all() and got.segments == [[]]


def test_long_sequence_in_blocks_float32_inputs():
    # Past the block and ring sizes many times over, float32 scores as a network gives them.
    g = torch.Generator().manual_seed(0)
    T, C, K = 30_000, 4, 50
    em = torch.randn(1, T, C, generator=g)
    tr, du = torch.randn(C, C, generator=g), torch.randn(K, C, generator=g)
    want = semicrf.viterbi(em, tr, du, backend="cpu")
    got = semicrf.viterbi_blocks(((em[0, a:a + 4096], None, None) for a in range(0, T, 4096)), T, tr, du, threads=2)
    assert torch.equal(got.score, want.score) and torch.equal(got.labels, want.labels)


def test_bad_blocks_are_refused_by_name():
    C, K = 3, 4
    tr, du = torch.zeros(C, C), torch.zeros(K, C)
    em = torch.zeros(10, C)
    with pytest.raises(ValueError, match="`length`"):
        semicrf.viterbi_blocks([(em, None, None)], 0, tr, du)
    with pytest.raises(ValueError, match="gave 10 positions; `length` is 12"):
        semicrf.viterbi_blocks([(em, None, None)], 12, tr, du)
    with pytest.raises(ValueError, match="past `length` = 8"):
        semicrf.viterbi_blocks([(em, None, None)], 8, tr, du)
    with pytest.raises(ValueError, match="item 0 must be"):
        semicrf.viterbi_blocks([em], 10, tr, du)
    with pytest.raises(ValueError, match=r"item 1.s emissions must be a \(W, C\) tensor with C = 3"):
        semicrf.viterbi_blocks([(em[:5], None, None), (torch.zeros(5, C + 1), None, None)], 10, tr, du)
    bad = em.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="item 0.*emissions"):
        semicrf.viterbi_blocks([(bad, None, None)], 10, tr, du)
    with pytest.raises(ValueError, match="gave 0 positions"):
        semicrf.viterbi_blocks([], 10, tr, du)
    for threads in (0, 1.5, True):
        with pytest.raises(ValueError, match="`threads`"):
            semicrf.viterbi_blocks([(em, None, None)], 10, tr, du, threads=threads)


def test_two_python_threads_may_decode_at_once():
    # The parallel far part is entered by one caller at a time; both get the whole-sequence path.
    from concurrent.futures import ThreadPoolExecutor

    kws = [_inputs(3000, 5, 40, seed) for seed in (1, 2)]
    want = [semicrf.viterbi(backend="cpu", **kw) for kw in kws]

    def decode(kw):
        return semicrf.viterbi_blocks(_blocks(kw, list(range(0, 3000, 256)) + [3000]), 3000, kw["transitions"],
                                      kw["durations"], kw["initial"], kw["final"], threads=2)

    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(decode, kws + kws))
    for g, w in zip(got, want + want):
        assert torch.equal(g.score, w.score) and torch.equal(g.labels, w.labels)
