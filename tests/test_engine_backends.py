"""The compiled CPU backend against the reference at sizes brute force cannot reach, and K = 1 against pytorch-crf."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import semicrf
from semicrf.backends import cpu as cpu_backend
from semicrf.backends import cpu_viterbi

_spec = importlib.util.spec_from_file_location(
    "engine_precision", Path(__file__).resolve().parents[1] / "benchmarks" / "engine_precision.py")
precision = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(precision)


def inputs(B, T, C, K, scale=1.0, dur_scale=1.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).to(dtype)

    lengths = torch.randint(max(1, T // 2), T + 1, (B,), generator=g)
    lengths[0] = T
    return dict(emissions=r(B, T, C, s=scale), transitions=r(C, C), durations=r(K, C, s=dur_scale),
                initial=r(C), final=r(C), start_scores=r(B, T, C), end_scores=r(B, T, C), lengths=lengths)


def run_all(kw, labels, backend):
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if k != "lengths"}
    ll = semicrf.log_likelihood(labels=labels, lengths=kw["lengths"], **leaves, backend=backend)
    ll.sum().backward()
    grads = {k: v.grad for k, v in leaves.items()}
    lz = semicrf.log_partition(**kw, backend=backend)
    vit = semicrf.viterbi(**kw, backend=backend)
    return ll.detach(), grads, lz, vit


def runs_labels(B, T, C, run, seed=1):
    g = torch.Generator().manual_seed(seed)
    n = T // run + 1
    return torch.randint(0, C, (B, n), generator=g).repeat_interleave(run, dim=1)[:, :T]


def assert_backends_agree(kw, labels, rtol=1e-9):
    ref = run_all(kw, labels, "reference")
    got = run_all(kw, labels, "cpu")
    torch.testing.assert_close(got[0], ref[0], rtol=rtol, atol=1e-8)
    torch.testing.assert_close(got[2], ref[2], rtol=rtol, atol=1e-8)
    for k in ref[1]:
        torch.testing.assert_close(got[1][k], ref[1][k], rtol=1e-7, atol=1e-8, msg=k)
    torch.testing.assert_close(got[3].score, ref[3].score, rtol=rtol, atol=1e-8)


@pytest.mark.parametrize("B,T,C,K,run", [(3, 200, 3, 40, 25), (2, 300, 5, 300, 60), (2, 257, 2, 129, 7),
                                          (2, 150, 8, 3, 4), (1, 400, 1, 50, 400)])
def test_cpu_matches_reference(B, T, C, K, run):
    kw = inputs(B, T, C, K, seed=B + T + C + K)
    assert_backends_agree(kw, runs_labels(B, T, C, run))


def test_cpu_exact_when_duration_scores_spread_widely():
    # Durations spread over more than the linear path's range: the exact log-space path takes over.
    kw = inputs(2, 120, 3, 30, dur_scale=1.0, seed=4)
    kw["durations"][0, 1] = 500.0
    kw["durations"][5, 2] = -400.0
    assert not cpu_backend._duration_tables(kw["durations"].numpy())[0]
    assert_backends_agree(kw, runs_labels(2, 120, 3, 10))


def test_cpu_exact_when_scores_jump_by_hundreds_of_nats():
    # Emissions of +-400 per position force the linear blocks to split at every step.
    kw = inputs(2, 100, 3, 20, scale=400.0, seed=6)
    assert_backends_agree(kw, runs_labels(2, 100, 3, 5), rtol=1e-10)


def test_cpu_minus_inf_durations_inside_blocks():
    # Exon-like duration support: lengths below 10 impossible.
    kw = inputs(2, 300, 3, 120, seed=8)
    kw["durations"][:9, 1] = -math.inf
    kw["transitions"][2, 0] = -math.inf
    assert_backends_agree(kw, runs_labels(2, 300, 3, 30))


def _on_progressions(kw):
    """Durations finite only on arithmetic progressions (the gene model's introns: one residue mod 3)."""
    K = kw["durations"].shape[0]
    d = torch.arange(1, K + 1)
    dur = kw["durations"]
    dur[d % 3 != 1, 0] = -math.inf  # 1, 4, 7, ...: step 3
    dur[(d < 5) | (d % 3 != 2), 1] = -math.inf  # 5, 8, 11, ...: step 3 from 5
    dur[(d < 4) | (d % 2 != 0), 2] = -math.inf  # 4, 6, 8, ...: step 2
    return kw


@pytest.mark.parametrize("wide", [False, True])
def test_cpu_durations_on_a_progression_visit_only_its_terms(wide):
    # The look-back steps over the lengths a label can have (duration_span's third column); a start
    # misaligned by one would drop every finite term of the label and miss the reference by far.
    kw = _on_progressions(inputs(2, 260, 4, 50, seed=12))
    if wide:  # spread past the linear path's range: the log-space sweep steps the same way
        kw["durations"][6, 0] = 450.0
        assert not cpu_backend._duration_tables(kw["durations"].numpy())[0]
    span = cpu_backend.duration_span(kw["durations"].numpy())
    assert span.tolist() == [[1, 49, 3], [5, 50, 3], [4, 50, 2], [1, 50, 1]]
    assert_backends_agree(kw, runs_labels(2, 260, 4, 13))
    ref = semicrf.viterbi(**kw, backend="reference")
    assert semicrf.viterbi(**kw, backend="cpu").segments == ref.segments


def test_duration_span_of_one_or_no_finite_length():
    dur = torch.full((6, 3), -math.inf, dtype=torch.float64)
    dur[3, 0] = 0.0
    dur[[1, 5], 1] = 0.0
    assert cpu_backend.duration_span(dur.numpy()).tolist() == [[4, 4, 1], [2, 6, 4], [1, 0, 1]]


@pytest.mark.parametrize("step", [1, 2, 3])
def test_best_start_is_the_ascending_loop_ties_and_chunk_ends_included(step):
    # best_start takes the look-back's maximum in chunks and then walks back to its start; the ascending
    # loop with `>=` (ties to the larger start) is the truth. Small integers make ties common, -inf
    # runs fill whole chunks, and the counts straddle the chunk length.
    rng = np.random.default_rng(step)
    q = cpu_viterbi.LOOK_CHUNK
    scratch = np.empty(64)
    for n in [1, 2, 7, 8, 9, q - 1, q, q + 1, 2 * q, 2 * q + 5, 700]:
        for trial in range(6):
            size = 3 * n * step + 40
            w = rng.integers(-3, 3, size).astype(np.float64)
            g = rng.integers(-3, 3, size).astype(np.float64)
            if trial % 2:
                w[rng.random(size) < 0.4] = -np.inf
            if trial == 5:
                g[:] = -np.inf
            wo, go, a = int(rng.integers(0, 10)), int(rng.integers(0, 10)), int(rng.integers(0, 10))
            best, bs = -np.inf, None
            for s in range(a, a + n * step, step):
                x = w[wo + s] + g[go + s]
                if x >= best:
                    best, bs = x, s
            assert cpu_viterbi.best_start(w, g, wo, go, a, n, step, scratch) == (best, bs), (n, trial)


def test_entry_lists_hold_each_targets_finite_sources_in_order():
    trans = np.full((5, 5), -np.inf)
    trans[[0, 3, 4], 1] = [0.5, -1.0, 2.0]
    trans[2, 0] = 1.5
    trans[4, 4] = 0.0
    sources, scores, ptr = cpu_backend.entry_lists(trans)
    assert ptr.tolist() == [0, 1, 4, 4, 4, 5]
    assert sources.tolist() == [2, 0, 3, 4, 4]
    assert scores.tolist() == [1.5, 0.5, -1.0, 2.0, 0.0]


def test_viterbi_ties_go_to_the_first_label_and_the_shorter_segment():
    # Integer scores tie many paths; the CPU sweep (sparse entries, chunked look-back) and the streamed
    # one must keep the reference's rules and return the same segments.
    g = torch.Generator().manual_seed(3)
    B, T, C, K = 2, 150, 5, 40
    kw = dict(emissions=torch.randint(-1, 2, (B, T, C), generator=g).double(),
              transitions=torch.randint(-1, 1, (C, C), generator=g).double(),
              durations=torch.randint(-2, 1, (K, C), generator=g).double())
    kw["transitions"][torch.rand(C, C, generator=g) < 0.5] = -math.inf
    kw["transitions"][torch.arange(C), (torch.arange(C) + 1) % C] = 0.0
    ref = semicrf.viterbi(**kw, backend="reference")
    got = semicrf.viterbi(**kw, backend="cpu")
    assert got.segments == ref.segments
    assert torch.equal(got.score, ref.score)
    for b in range(B):
        blocks = semicrf.viterbi_blocks([(kw["emissions"][b, a:a + 37], None, None) for a in range(0, T, 37)], T,
                                        kw["transitions"], kw["durations"])
        assert blocks.segments[0] == ref.segments[b]


def test_float32_inputs_give_float64_exact_results():
    kw = inputs(2, 500, 3, 60, seed=2, dtype=torch.float32)
    kw64 = {k: (v.double() if v.is_floating_point() else v) for k, v in kw.items()}
    lz32 = semicrf.log_partition(**kw, backend="cpu")
    lz64 = semicrf.log_partition(**kw64, backend="reference")
    assert lz32.dtype == torch.float64
    torch.testing.assert_close(lz32, lz64, rtol=1e-12, atol=0)


@pytest.mark.slow  # the reference backend at T = 6000, K = 300
def test_long_sequence_against_an_independent_float64_computation():
    # Long enough that float32 prefix sums would lose digits; the reference is the independent computation.
    T, K, C = 6000, 300, 3
    g = torch.Generator().manual_seed(0)
    em = torch.randn(1, T, C, generator=g) * 2 + 3.0  # a drift makes the prefix sums large
    tr = torch.randn(C, C, generator=g)
    du = torch.randn(K, C, generator=g)
    got = semicrf.log_partition(em, tr, du, backend="cpu")
    ref = semicrf.log_partition(em, tr, du, backend="reference")
    assert abs(got.item() - ref.item()) / abs(ref.item()) < 1e-12
    labels = (torch.arange(T) // 1700 % C)[None]
    ll = semicrf.log_likelihood(em, labels, tr, du, backend="cpu")
    assert ll.item() <= 0
    v = semicrf.viterbi(em, tr, du, backend="cpu")
    assert v.segments[0][0][0] == 0 and v.segments[0][-1][1] == T
    m = semicrf.marginals(em, tr, du, backend="cpu")
    torch.testing.assert_close(m.sum(-1), torch.ones(1, T, dtype=torch.float64), rtol=0, atol=1e-9)


def test_viterbi_decodes_sequences_longer_than_ten_thousand():
    T = 30_001
    em = torch.zeros(1, T, 2)
    em[0, 10_000:, 1] = 1.0
    v = semicrf.viterbi(em, torch.zeros(2, 2), torch.zeros(50, 2), backend="cpu")
    assert v.segments[0][0][0] == 0 and v.segments[0][-1][1] == T
    assert torch.all(v.labels[0, :10_000] == 0) and torch.all(v.labels[0, 10_000:] == 1)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_k1_is_pytorch_crf(backend):
    torchcrf = pytest.importorskip("torchcrf")
    B, T, C = 4, 30, 5
    g = torch.Generator().manual_seed(0)
    em = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    tags = torch.randint(0, C, (B, T), generator=g)
    lengths = torch.tensor([30, 17, 1, 25])
    mask = torch.arange(T)[None] < lengths[:, None]
    crf = torchcrf.CRF(C, batch_first=True).double()
    with torch.no_grad():
        crf.transitions.normal_(generator=g)
        crf.start_transitions.normal_(generator=g)
        crf.end_transitions.normal_(generator=g)
    ref = crf(em, tags, mask, reduction="none")
    ours = semicrf.log_likelihood(em, tags, crf.transitions.detach(), torch.zeros(1, C, dtype=torch.float64),
                                  lengths, crf.start_transitions.detach(), crf.end_transitions.detach(),
                                  backend=backend)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-10)
    best = crf.decode(em, mask)
    vit = semicrf.viterbi(em, crf.transitions.detach(), torch.zeros(1, C, dtype=torch.float64), lengths,
                          crf.start_transitions.detach(), crf.end_transitions.detach(), backend=backend)
    for b in range(B):
        assert vit.labels[b, : lengths[b]].tolist() == best[b]


def test_auto_backend_on_cpu_is_the_compiled_one():
    from semicrf import backends
    assert backends.resolve("auto", torch.device("cpu")) == "cpu"
    assert backends.resolve("streaming", torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="backend"):
        backends.resolve("fast", torch.device("cpu"))


def test_backend_names_and_aliases_are_one_list():
    """NAMES and ALIASES are what the dispatcher accepts (the command lines build their choices from
    them): every name resolves, each concrete name to itself, each alias to a name; nothing else."""
    from semicrf import backends
    cpu = torch.device("cpu")
    assert set(backends.ALIASES.values()) <= set(backends.NAMES)
    for name in backends.NAMES:
        assert backends.resolve(name, cpu) == ("cpu" if name == "auto" else name)
        assert backends.resolve(name.upper(), cpu) == backends.resolve(name, cpu)
    for alias, name in backends.ALIASES.items():
        assert backends.resolve(alias, cpu) == backends.resolve(name, cpu)
    with pytest.raises(ValueError, match="'streaming'"):
        backends.resolve("numba", cpu)


def test_weighted_compositions_recurrence_against_direct_sums():
    for T, K, C, lam in [(10, 3, 2, -0.01), (40, 7, 3, 0.2), (25, 30, 1, -0.5)]:
        a = [1.0] + [0.0] * T
        for t in range(1, T + 1):
            a[t] = C * sum(math.exp(lam * d) * a[t - d] for d in range(1, min(K, t) + 1))
        assert precision.log_weighted_compositions(T, K, C, lam) == pytest.approx(math.log(a[T]), rel=1e-13)


@pytest.mark.slow  # the CPU backend at T = 1 000 000 (about 10 s in all)
def test_a_million_positions_against_closed_forms():
    """Every function at T = 10^6 where the truth has a closed form: equal scores for all C labels, a
    constant emission e and durations lam * d. Then log Z = e T + log(weighted compositions), every
    occupancy is 1/C by symmetry, every segmentation scores (e + lam) T (the Viterbi score), and
    log P(all label 0) = e T + log(compositions with one label) - log Z. Tolerances: what float64
    accumulation over 10^6 chained steps leaves (docs/engine.md, "Precision at length")."""
    T, K, C, e, lam = 1_000_000, 300, 3, 0.3, -0.01
    em, tr, du = precision.problem(T, K, C, e, lam)
    log_z = e * T + precision.log_weighted_compositions(T, K, C, lam)
    got = semicrf.log_partition(em, tr, du, backend="cpu").item()
    assert abs(got - log_z) <= 1e-10 * abs(log_z)
    ll = semicrf.log_likelihood(em, torch.zeros(1, T, dtype=torch.int64), tr, du, backend="cpu").item()
    want = e * T + precision.log_weighted_compositions(T, K, 1, lam) - log_z
    assert abs(ll - want) <= 1e-10 * abs(log_z)
    m = semicrf.marginals(em, tr, du, backend="cpu")[0]
    assert torch.equal(m[:, 0], m[:, 1]) and torch.equal(m[:, 0], m[:, 2])
    assert (m - 1 / C).abs().max().item() < 1e-5
    v = semicrf.viterbi(em, tr, du, backend="cpu")
    assert abs(v.score.item() - (e + lam) * T) <= 1e-11 * (e + lam) * T
    assert v.segments[0][0][0] == 0 and v.segments[0][-1][1] == T
    assert all(a[1] == b[0] for a, b in zip(v.segments[0], v.segments[0][1:]))
