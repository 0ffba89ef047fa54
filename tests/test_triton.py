"""The Triton backend against the reference backend.

Without a GPU the kernels run on CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1``, set here before Triton is imported); with one they run on
CUDA tensors. Tests marked ``gpu`` need CUDA and are skipped elsewhere.
"""

import importlib
import importlib.util
import os
import sys
import warnings

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

triton = pytest.importorskip("triton")

import semicrf  # noqa: E402
from semicrf.backends import reference  # noqa: E402
from semicrf.problem import make_problem  # noqa: E402
from brute import path_score  # noqa: E402

# Kernels decorated before the variable was set would be compiled ones: reload them. sys.modules
# lists a module once its import has finished, so after the modules it imports (the @triton.jit
# callees): reloading in that order rebinds fresh callees. Then the package and the launchers.
if "semicrf.backends.triton_kernels" in sys.modules:
    for _name in [m for m in sys.modules if m.startswith("semicrf.backends.triton_kernels.")]:
        importlib.reload(sys.modules[_name])
    importlib.reload(sys.modules["semicrf.backends.triton_kernels"])
    importlib.reload(sys.modules["semicrf.backends.triton"])
from semicrf.backends import triton as tb  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def inputs(B, T, C, K, seed=0, optional=True):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(DEV)

    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    lengths[-1] = 1 if B > 2 else lengths[-1]
    kw = dict(emissions=r(B, T, C), transitions=r(C, C), durations=r(K, C), lengths=lengths.to(DEV))
    if optional:
        kw.update(initial=r(C), final=r(C), start_scores=r(B, T, C), end_scores=r(B, T, C))
    return kw


def labels_in_runs(B, T, C, seed=1):
    g = torch.Generator().manual_seed(seed)
    run = torch.randint(1, 4, (T,), generator=g)
    lab = torch.randint(0, C, (B, T), generator=g)
    idx = torch.repeat_interleave(torch.arange(T), run)[:T]
    return lab[:, idx].to(DEV)


def ll_and_grads(kw, labels, backend, **extra):
    leaves = {k: v.clone().requires_grad_() for k, v in kw.items() if k != "lengths"}
    ll = semicrf.log_likelihood(labels=labels, lengths=kw["lengths"], **leaves, backend=backend, **extra)
    ll.sum().backward()
    return ll.detach(), {k: v.grad for k, v in leaves.items()}


def assert_close(a, b, tol=1e-9, what=""):
    assert a.shape == b.shape, what
    both_inf = torch.isneginf(a) & torch.isneginf(b)
    diff = torch.where(both_inf, 0.0, (a - b).abs())
    assert not torch.isnan(diff).any(), what
    assert diff.max().item() <= tol * (1 + b.abs().max().item()), f"{what}: {diff.max().item()}"


def assert_pair_matches_reference(p, pair, tol=1e-9):
    """``pair`` (from ``forward_backward_pair(p)``): log Z and every marginal, unconstrained and
    constrained, against the reference backend."""
    for constrained in (False, True):
        r = reference.forward_backward(p, constrained, True)
        assert_close(pair[constrained].log_z, r.log_z, tol=tol, what=f"log Z constrained={constrained}")
        for f in r.marginals.__dataclass_fields__:
            assert_close(getattr(pair[constrained].marginals, f), getattr(r.marginals, f), what=f)


# C in {1, 2, 3, 5, 8} and K in {1, 2, 3, > T}, with mixed lengths (one of them 1).
CASES = [(1, 1), (1, 9), (2, 2), (2, 3), (3, 1), (3, 3), (3, 9), (5, 2), (8, 3), (8, 9)]


@pytest.mark.parametrize("C,K", CASES)
def test_likelihood_gradients_and_viterbi_match_reference(C, K):
    kw = inputs(3, 7, C, K, seed=C * 10 + K)
    labels = labels_in_runs(3, 7, C, seed=K)
    ll_t, g_t = ll_and_grads(kw, labels, "triton")
    ll_r, g_r = ll_and_grads(kw, labels, "reference")
    assert_close(ll_t, ll_r, what="log_likelihood")
    for name in g_r:
        assert_close(g_t[name], g_r[name], what=f"grad {name}")
    vt = semicrf.viterbi(**kw, backend="triton")
    vr = semicrf.viterbi(**kw, backend="reference")
    assert_close(vt.score, vr.score, what="viterbi score")
    assert torch.equal(vt.labels.cpu(), vr.labels.cpu())
    assert vt.segments == vr.segments


@pytest.mark.parametrize("classes,K", [([0, 0, 1], 2), ([1, 0, 1, 1, 0], 3), ([0, 1, 1, 1, 2, 2], 9)])
def test_likelihood_of_label_classes_matches_reference(classes, K):
    """Labels grouped into classes (the gold pass of an expanded-state model), gradients included."""
    C = len(classes)
    kw = inputs(3, 8, C, K, seed=C + K)
    G = max(classes) + 1
    labels = labels_in_runs(3, 8, G, seed=K)
    cls = torch.tensor(classes, device=DEV)
    ll_t, g_t = ll_and_grads(kw, labels, "triton", label_classes=cls)
    ll_r, g_r = ll_and_grads(kw, labels, "reference", label_classes=cls)
    assert torch.isfinite(ll_r).all()
    assert_close(ll_t, ll_r, what="log_likelihood")
    for name in g_r:
        assert_close(g_t[name], g_r[name], what=f"grad {name}")


def test_viterbi_segment_tensors_match_the_lists():
    """The tensor form (built on the device) and the list form agree, for this and the reference backend."""
    kw = inputs(4, 9, 3, 4, seed=12)
    vt = semicrf.viterbi(**kw, backend="triton")
    vr = semicrf.viterbi(**kw, backend="reference")
    assert torch.equal(vt.segment_offsets.cpu(), vr.segment_offsets.cpu())
    assert torch.equal(vt.segment_table.cpu(), vr.segment_table.cpu())
    off = vt.segment_offsets.cpu()
    assert off[0] == 0 and (off[1:] >= off[:-1]).all()
    for b in range(4):
        rows = vt.segment_table[off[b]:off[b + 1]].cpu()
        assert rows[0, 0] == 0 and rows[-1, 1] == kw["lengths"][b]
        assert torch.equal(rows[1:, 0], rows[:-1, 1])  # contiguous tiling
        for s, e, c in rows.tolist():
            assert (vt.labels[b, s:e].cpu() == c).all()
    assert vt.segments == vr.segments


# The chunked look-back with chunks of 4 positions, so that the far part (earlier chunks) is used;
# far tile 0 cuts each source block into sub-blocks of one start. The constrained and unconstrained
# sweeps run alone and together in one launch.
@pytest.mark.parametrize("B,T,C,K,tile", [(2, 13, 3, 9, 0), (3, 11, 2, 3, 32), (2, 17, 1, 20, 0), (2, 9, 5, 6, 32)])
def test_chunked_lookback_matches_reference(B, T, C, K, tile):
    cfg = tb.TritonConfig(chunk=4, far_tile=tile, far_tile_max=tile)
    kw = inputs(B, T, C, K, seed=T + K)
    labels = labels_in_runs(B, T, C, seed=K)
    p = make_problem(**kw, labels=labels)
    assert tb.Sweep(p, config=cfg).method == "chunked"
    pair = tb.forward_backward_pair(p, config=cfg)
    for constrained in (False, True):
        r = reference.forward_backward(p, constrained, True)
        for a in (tb.forward_backward(p, constrained, True, config=cfg), pair[constrained]):
            assert_close(a.log_z, r.log_z, what=f"log Z constrained={constrained}")
            for f in r.marginals.__dataclass_fields__:
                assert_close(getattr(a.marginals, f), getattr(r.marginals, f), what=f)
    vt, vr = semicrf.viterbi(**kw, backend=tb.Configured(cfg)), semicrf.viterbi(**kw, backend="reference")
    assert_close(vt.score, vr.score)
    assert torch.equal(vt.labels.cpu(), vr.labels.cpu()) and vt.segments == vr.segments


@pytest.mark.slow
@pytest.mark.parametrize("K", [3, 9, 30])
def test_chunked_lookback_with_long_label_runs(K):
    """Label runs of 5 to 25 positions span several chunks of 4: the constrained far part must
    reach back to the run's start and no further (nor past K), for every label."""
    cfg = tb.TritonConfig(chunk=4, far_tile=0, far_tile_max=0)
    B, T, C = 2, 48, 3
    g = torch.Generator().manual_seed(K)
    run = torch.randint(5, 26, (T,), generator=g)
    lab = torch.randint(0, C, (B, T), generator=g)
    labels = lab[:, torch.repeat_interleave(torch.arange(T), run)[:T]].to(DEV)
    kw = inputs(B, T, C, K, seed=K)
    p = make_problem(**kw, labels=labels)
    assert tb.Sweep(p, (False, True), config=cfg).method == "chunked"
    assert_pair_matches_reference(p, tb.forward_backward_pair(p, config=cfg))


def test_linear_chain_holds_large_scores():
    """Emissions of tens of nats a position and strong transitions: the linear chain's per-chunk
    scaling must keep log Z and every marginal at the reference's values."""
    cfg = tb.TritonConfig(chunk=8)
    kw = inputs(2, 30, 3, 12, seed=14)
    kw["emissions"] = kw["emissions"] * 25
    kw["transitions"] = kw["transitions"] * 10
    kw["start_scores"] = kw["start_scores"] * 10
    p = make_problem(**kw)
    assert tb.Sweep(p, config=cfg).method == "chunked"
    a, r = tb.forward_backward(p, False, True, config=cfg), reference.forward_backward(p, False, True)
    assert_close(a.log_z, r.log_z, tol=1e-12)
    for f in r.marginals.__dataclass_fields__:
        assert_close(getattr(a.marginals, f), getattr(r.marginals, f), what=f)


@pytest.mark.slow
@pytest.mark.parametrize("near,K", [(1, 6), (3, 14)])
def test_far_part_helpers_match_reference(near, K):
    """The far part split between each row and a helper program (the helper takes the blocks before
    the row's last ``near``), its two roles launched one after the other: the sums must combine to
    the reference's, also where the helper's oldest block reaches only the first end of a chunk
    (chunks of 4; K = 4·near + 2), with g in the thousands of nats (20 nats a position added to the
    duration scores, the same for every segmentation, less 30 a segment, so that long segments, which
    the helpers' blocks hold, weigh most and make the best path)."""
    cfg = tb.testing_helpers(tb.TritonConfig(chunk=4, near_blocks=near), "staged")
    B, T, C = 2, 64, 3
    kw = inputs(B, T, C, K, seed=near)
    kw["durations"] = kw["durations"] + 20.0 * torch.arange(1, K + 1, dtype=torch.float64, device=DEV)[:, None] - 30.0
    p = make_problem(**kw, labels=labels_in_runs(B, T, C, seed=near))
    sw = tb.Sweep(p, config=cfg)
    assert sw.helped and sw.method == "chunked"
    assert_pair_matches_reference(p, tb.forward_backward_pair(p, config=cfg), tol=1e-12)
    vt, vr = semicrf.viterbi(**kw, backend=tb.Configured(cfg)), semicrf.viterbi(**kw, backend="reference")
    assert_close(vt.score, vr.score, tol=1e-12)
    assert vt.segments == vr.segments


@pytest.mark.slow
def test_rows_whose_helper_never_comes_take_the_exact_sweep():
    """A row that waits longer than ``spin_limit`` polls for its far-part helper gives up instead of
    hanging, and flags itself: the exact kernel redoes it."""
    cfg = tb.testing_helpers(tb.TritonConfig(chunk=4, spin_limit=3), "orphaned")
    kw = inputs(2, 16, 2, 9, seed=3)
    p = make_problem(**kw, labels=labels_in_runs(2, 16, 2))
    assert tb.Sweep(p, (False, True), reverse=True, config=cfg).method == "exact"
    assert_pair_matches_reference(p, tb.forward_backward_pair(p, config=cfg))
    assert tb.Sweep(p, reverse=True, semiring="max", config=cfg).method == "exact"
    vt, vr = semicrf.viterbi(**kw, backend=tb.Configured(cfg)), semicrf.viterbi(**kw, backend="reference")
    assert_close(vt.score, vr.score)
    assert vt.segments == vr.segments


@pytest.mark.parametrize("tile", [0, 32])
def test_chunked_viterbi_on_many_ties_returns_a_best_path(tile):
    """Integer scores make many equal paths. Whichever one the Triton backend returns (it breaks
    ties at the middle of the sequence, the reference from its end), it must score the best score,
    tile the sequence, and be the same on a second call."""
    backend = tb.Configured(tb.TritonConfig(chunk=4, far_tile=tile, far_tile_max=tile))
    g = torch.Generator().manual_seed(tile)
    B, T, C, K = 4, 14, 3, 7
    em = torch.randint(-1, 2, (B, T, C), generator=g).double()
    tr = torch.randint(-1, 1, (C, C), generator=g).double()
    du = torch.randint(-1, 1, (K, C), generator=g).double()
    lengths = torch.tensor([14, 13, 5, 1])
    args = [x.to(DEV) for x in (em, tr, du, lengths)]
    vt, vr = semicrf.viterbi(*args, backend=backend), semicrf.viterbi(*args, backend="reference")
    assert torch.equal(vt.score.cpu(), vr.score.cpu())
    again = semicrf.viterbi(*args, backend=backend)
    assert again.segments == vt.segments and torch.equal(again.labels, vt.labels)
    for b in range(B):
        segs = vt.segments[b]
        assert segs[0][0] == 0 and segs[-1][1] == lengths[b]
        assert all(segs[i][1] == segs[i + 1][0] and 1 <= segs[i][1] - segs[i][0] <= K for i in range(len(segs) - 1))
        zeros = np.zeros(C)
        assert path_score(segs, em[b].numpy(), tr.numpy(), du.numpy(), zeros, zeros) == vt.score[b].item()
        for s, e, c in segs:
            assert (vt.labels[b, s:e].cpu() == c).all()


def test_viterbi_across_the_middle():
    """The best path's segment across the middle, at every offset: one strong segment [s, e) per
    sequence, placed so that it starts before, at or after the middle or covers the sequence."""
    T, C, K = 12, 2, 12
    cases = [(0, 12), (5, 7), (6, 7), (5, 6), (2, 11), (0, 6), (6, 12), (11, 12)]
    em = torch.zeros(len(cases), T, C, dtype=torch.float64)
    em[:, :, 0] = 1.0
    for b, (s, e) in enumerate(cases):
        em[b, s:e, 1] = 5.0
    tr = torch.tensor([[0.0, -0.2], [-0.2, 0.0]], dtype=torch.float64)
    du = torch.full((K, C), -0.2, dtype=torch.float64)  # every segment costs: one per run
    du[:, 1] -= torch.arange(K, dtype=torch.float64) * 0.01
    args = [x.to(DEV) for x in (em, tr, du)]
    vt, vr = semicrf.viterbi(*args, backend="triton"), semicrf.viterbi(*args, backend="reference")
    assert_close(vt.score, vr.score)
    assert vt.segments == vr.segments
    for b, (s, e) in enumerate(cases):
        assert (s, e, 1) in vt.segments[b]


def test_wide_score_spreads_take_the_exact_lookback():
    """Scores too spread for the linear far part are detected (in the kernel, or from the durations)
    and recomputed exactly."""
    cfg = tb.TritonConfig(chunk=4)
    kw = inputs(2, 12, 3, 6, seed=4, optional=False)
    kw["emissions"] = kw["emissions"] * 300
    p = make_problem(**kw, labels=labels_in_runs(2, 12, 3))
    assert tb.Sweep(p, config=cfg).method == "exact"
    pair = tb.forward_backward_pair(p, config=cfg)
    for constrained in (False, True):
        r = reference.forward_backward(p, constrained, True)
        for a in (tb.forward_backward(p, constrained, True, config=cfg), pair[constrained]):
            assert_close(a.log_z, r.log_z)
            assert_close(a.marginals.durations, r.marginals.durations)
    kw = inputs(2, 12, 3, 6, seed=5, optional=False)
    kw["durations"][0, 0] = -400.0
    assert tb.Sweep(make_problem(**kw), config=cfg).method == "exact"
    assert tb.Sweep(make_problem(**kw), semiring="max", config=cfg).method == "chunked"


@pytest.mark.parametrize("dur_spread,flagged", [(0.0, False), (250.0, True)])
def test_g_spread_allowed_is_700_less_the_duration_spread(dur_spread, flagged):
    """A label that loses 15 nats a position for 40 positions has g values ~450 nats below their
    block's reference: held by the linear far part when the label's durations are flat (700 - 0),
    sent to the exact kernel when they spread 250 nats (700 - 250 < 450); exact either way."""
    cfg = tb.TritonConfig(chunk=32)
    T, C, K = 96, 2, 40
    kw = inputs(1, T, C, K, seed=6, optional=False)
    kw["emissions"][0, :, 1] -= 15.0
    kw["durations"] = torch.zeros(K, C, dtype=torch.float64, device=DEV)
    kw["durations"][-1, :] = -dur_spread
    p = make_problem(**kw)
    assert (tb.Sweep(p, config=cfg).method == "exact") == flagged
    r = reference.forward_backward(p, False, True)
    a = tb.forward_backward(p, False, True, config=cfg)
    assert_close(a.log_z, r.log_z)
    assert_close(a.marginals.emissions, r.marginals.emissions)
    assert_close(a.marginals.durations, r.marginals.durations)


def test_weights_kernel_g_spread_limits_by_hand():
    # Per label: 700 less the spread of its finite duration scores, at least 400; a label with no finite
    # duration spreads 0. Columns: flat, spread 250, spread 350 (clamped), -inf and +9 only, all -inf.
    inf = float("inf")
    dur = torch.tensor([[0.0, 0.0, 10.0, -inf, -inf], [0.0, -250.0, -340.0, 9.0, -inf], [0.0, -10.0, 0.0, -inf, -inf]],
                       dtype=torch.float64, device=DEV)
    trans = torch.zeros(2, 5, 5, dtype=torch.float64, device=DEV)
    gsp = tb._linear_weights(dur, trans)[3]
    assert gsp.tolist() == [700.0, 450.0, 400.0, 700.0, 700.0]


def test_label_runs_match_a_direct_count():
    """Label limits of the constrained sweeps against a position-by-position count."""
    B, T, C, K = 3, 23, 3, 4
    kw = inputs(B, T, C, K, seed=6, optional=False)
    p = make_problem(**kw, labels=labels_in_runs(B, T, C, seed=3))
    lim, rem = tb._label_runs(p, reverse=True)
    lab, L = p.labels.cpu().tolist(), p.lengths.cpu().tolist()
    want_lim = torch.zeros(2 * B, T, C, dtype=torch.int32)
    want_rem = torch.zeros(B, C, T, dtype=torch.int32)
    for b in range(B):
        seq = lab[b][:L[b]]
        for t, c in enumerate(seq):
            back = next(n for n in range(1, t + 2) if n == t + 1 or seq[t - n] != c)
            ahead = next(n for n in range(1, L[b] - t + 1) if t + n == L[b] or seq[t + n] != c)
            want_lim[b, t, c] = min(back, K)
            want_rem[b, c, t] = ahead
            want_lim[B + b, L[b] - 1 - t, c] = min(ahead, K)
    assert torch.equal(lim.cpu(), want_lim)
    assert torch.equal(rem.cpu(), want_rem)


@pytest.mark.parametrize("which", ["none", "start_only", "end_only", "initial_only"])
def test_optional_inputs_each_alone(which):
    kw = inputs(2, 6, 3, 3, seed=5, optional=False)
    g = torch.Generator().manual_seed(9)
    extra = {"start_only": "start_scores", "end_only": "end_scores", "initial_only": "initial"}.get(which)
    if extra:
        shape = (3,) if extra == "initial" else (2, 6, 3)
        kw[extra] = torch.randn(*shape, generator=g, dtype=torch.float64).to(DEV)
    p = make_problem(**kw)
    a = tb.forward_backward(p, False, True)
    r = reference.forward_backward(p, False, True)
    assert_close(a.log_z, r.log_z)
    for f in r.marginals.__dataclass_fields__:
        assert_close(getattr(a.marginals, f), getattr(r.marginals, f), what=f)


def test_forbidden_choices_and_impossible_sequences():
    """-inf scores forbid choices; a sequence with no path gets log Z = -inf, never NaN."""
    kw = inputs(3, 6, 3, 2, seed=3)
    kw["transitions"][0, 1] = float("-inf")
    kw["transitions"][1, 1] = float("-inf")
    kw["durations"][0, 2] = float("-inf")
    kw["start_scores"][1, 2, :] = float("-inf")
    p = make_problem(**kw)
    a, r = tb.forward_backward(p, False, True), reference.forward_backward(p, False, True)
    assert_close(a.log_z, r.log_z)
    for f in r.marginals.__dataclass_fields__:
        assert_close(getattr(a.marginals, f), getattr(r.marginals, f), what=f)
    # K = 1 and all self-transitions and cross-transitions forbidden: only length-1 sequences decode.
    kw = inputs(2, 4, 2, 1, seed=4)
    kw["transitions"][:] = float("-inf")
    lz = semicrf.log_partition(**kw, backend="triton")
    lz_ref = semicrf.log_partition(**kw, backend="reference")
    assert_close(lz, lz_ref)
    assert torch.isneginf(lz[0])
    v = semicrf.viterbi(**kw, backend="triton")
    assert torch.isneginf(v.score[0]) and v.segments[0] == [] and (v.labels[0] == -1).all()


def test_marginal_invariants():
    kw = inputs(2, 12, 4, 5, seed=11)
    p = make_problem(**kw)
    m = tb.forward_backward(p, False, True).marginals
    inside = p.padding_mask()
    occ_sum = m.emissions.sum(-1)
    assert torch.allclose(occ_sum[inside], torch.ones_like(occ_sum[inside]), atol=1e-12)
    assert (occ_sum[~inside] == 0).all()
    # Expected segments = expected starts = expected transitions + 1.
    n_seg = m.durations.sum(dim=(1, 2))
    assert torch.allclose(n_seg, m.start_scores.sum(dim=(1, 2)), atol=1e-12)
    assert torch.allclose(n_seg, m.transitions.sum(dim=(1, 2)) + 1, atol=1e-12)


def test_non_contiguous_and_mixed_dtype_inputs():
    kw = inputs(2, 6, 3, 3, seed=7)
    em_t = kw["emissions"].transpose(0, 1).contiguous().transpose(0, 1)  # a non-contiguous view
    assert not em_t.is_contiguous()
    kw2 = dict(kw, emissions=em_t, transitions=kw["transitions"].float())
    assert_close(semicrf.log_partition(**kw2, backend="triton"), semicrf.log_partition(**kw2, backend="reference"))


def test_results_are_bitwise_reproducible():
    kw = inputs(2, 8, 3, 4, seed=8)
    labels = labels_in_runs(2, 8, 3)
    a = ll_and_grads(kw, labels, "triton")
    b = ll_and_grads(kw, labels, "triton")
    assert torch.equal(a[0], b[0])
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k


def test_chunk_length_does_not_change_results():
    p = make_problem(**inputs(2, 20, 3, 7, seed=2))
    a = tb.forward_backward(p, False, True, config=tb.TritonConfig(dgrad_chunk=4)).marginals.durations
    b = tb.forward_backward(p, False, True, config=tb.TritonConfig(dgrad_chunk=64)).marginals.durations
    assert_close(a, b, tol=1e-12)


def test_refuses_what_it_cannot_run(monkeypatch):
    p = make_problem(**inputs(1, 4, 2, 2))
    if DEV == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match="CUDA tensors"):
            tb.check_problem(p)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        with pytest.raises(ValueError, match="TRITON_INTERPRET"):
            tb.check_problem(p)
    monkeypatch.setattr(tb, "triton", None)
    with pytest.raises(ValueError, match="triton"):
        tb.check_problem(p)
    assert tb.usable() is False


def test_config_is_frozen_validated_and_keeps_test_modes_out_of_reach():
    """Settings travel in a frozen TritonConfig; the helpers' test modes come only from the test
    hook, never from a user's config."""
    import dataclasses

    from semicrf import backends
    cfg = tb.TritonConfig(chunk=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.chunk = 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        tb.DEFAULT_CONFIG.split_far = "off"
    for bad in (dict(split_far="staged"), dict(split_far="orphaned"), dict(chunk=6), dict(chunk_warps=3),
                dict(near_blocks=0), dict(spin_limit=0), dict(far_tile=-1), dict(dgrad_chunk=0)):
        with pytest.raises(ValueError, match="TritonConfig"):
            tb.TritonConfig(**bad)
    with pytest.raises(TypeError):
        tb.TritonConfig(_helpers_test="staged")
    staged = tb.testing_helpers(cfg, "staged")
    assert staged._helpers_test == "staged" and staged.chunk == 8 and cfg._helpers_test is None
    assert staged != cfg  # so caches keyed on the config keep the two apart
    with pytest.raises(ValueError, match="mode"):
        tb.testing_helpers(cfg, "auto")
    assert tb.TritonConfig(dgrad_chunk=5).dgrad_positions == 8 and tb.DEFAULT_CONFIG.dgrad_positions == 16
    assert tb.chunk_config(100) == (32, 4) and tb.chunk_config(1000) == (64, 16)
    # by the label count above K = 256, for the log sweep only (H200: docs/engine_gpu.md, "Chunk and warps by labels")
    assert tb.chunk_config(1000, labels=3) == (64, 16) and tb.chunk_config(1000, labels=16) == (64, 16)
    assert tb.chunk_config(1000, labels=26) == (32, 8) and tb.chunk_config(1000, labels=44) == (32, 16)
    assert tb.chunk_config(1000, labels=98) == (32, 16) and tb.chunk_config(100, labels=44) == (32, 4)
    assert tb.chunk_config(1000, labels=26, max_plus=True) == (64, 16)
    assert tb.chunk_config(1000, tb.TritonConfig(chunk=64), labels=26) == (64, 8)
    assert tb.chunk_config(1000, tb.TritonConfig(chunk=128, chunk_warps=8)) == (128, 8)
    p = make_problem(**inputs(1, 4, 2, 2))
    assert backends.get(tb.Configured(cfg), p).config is cfg
    with pytest.raises(TypeError):
        tb.Configured({"chunk": 8})


# ----------------------------------------------------------------------------------------- GPU only
@gpu
@needs_cuda
def test_gpu_medium_size_matches_reference():
    kw = inputs(2, 600, 3, 50, seed=21)
    labels = labels_in_runs(2, 600, 3)
    ll_t, g_t = ll_and_grads(kw, labels, "triton")
    ll_r, g_r = ll_and_grads(kw, labels, "reference")
    assert_close(ll_t, ll_r, tol=1e-10, what="log_likelihood")
    for name in g_r:
        assert_close(g_t[name], g_r[name], tol=1e-10, what=name)
    vt, vr = semicrf.viterbi(**kw, backend="triton"), semicrf.viterbi(**kw, backend="reference")
    assert torch.equal(vt.labels, vr.labels)


@gpu
@needs_cuda
def test_gpu_long_sequence_log_z_and_invariants():
    """T = 100 000, K = 1000: log Z within 1e-9 relative of the float64 reference sweep."""
    T, K, C = 100_000, 1000, 3
    kw = inputs(1, T, C, K, seed=31, optional=False)
    p = make_problem(**kw)
    lz = tb.forward_backward(p, False, False).log_z
    lz_ref = reference.forward_backward(p, False, need_marginals=False).log_z
    assert ((lz - lz_ref).abs() / lz_ref.abs()).max().item() < 1e-9
    fb = tb.forward_backward(p, False, True)
    occ = fb.marginals.emissions.sum(-1)
    assert torch.allclose(occ, torch.ones_like(occ), atol=1e-9)
    v = semicrf.viterbi(**kw, backend="triton")
    assert v.segments[0][0][0] == 0 and v.segments[0][-1][1] == T
    assert (v.labels >= 0).all()


def test_windows_on_triton_are_the_whole_rows():
    """Long rows in windows (semicrf.windows) through the Triton sweep: log Z and the marginals equal
    the CPU backend's on the whole rows (itself tested against the reference); on a GPU at a length
    where windows matter."""
    from semicrf.windows import WindowConfig

    if DEV == "cuda":
        B, T, C, K, cfg = 2, 200_000, 3, 200, WindowConfig(min_length=1, chunk=16_384)
    else:  # the interpreter: small
        B, T, C, K, cfg = 2, 300, 3, 5, WindowConfig(min_length=1, chunk=60, warm_up=30)
    kw = inputs(B, T, C, K, seed=41)
    kw["transitions"], kw["durations"] = 0.3 * kw["transitions"], 0.3 * kw["durations"]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="semicrf windows")  # no row may fall back to the whole sweep
        lz = semicrf.log_partition(**kw, backend="triton", windows=cfg)
        marg = semicrf.marginals(**kw, backend="triton", windows=cfg)
    whole_z = semicrf.log_partition(**kw, backend="cpu", windows=None)
    whole_m = semicrf.marginals(**kw, backend="cpu", windows=None)
    assert_close(lz, whole_z, tol=1e-12, what="log Z")
    assert (marg - whole_m).abs().max().item() < (1e-6 if DEV == "cuda" else 1e-9)


def test_sweep_lanes_benchmark_one_config(capsys):
    """benchmarks/sweep_lanes.py --one: a JSON row with the time and how the rows were swept (under the
    interpreter without a GPU, where the times mean nothing)."""
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "sweep_lanes", Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_lanes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--one", "2x40x5x3", "--chunk", "16", "--warps", "4", "--repeat", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (row["size"], row["chunk"], row["warps"], row["method"]) == ("2x40x5x3", 16, 4, "chunked")
    assert row["median_ms"] > 0


def test_sweep_lanes_offline_compiles_the_recorded_launch():
    """benchmarks/sweep_lanes.py --offline: the chunked kernel's launch recorded under the interpreter
    (argument types, constants, warps) compiles for sm_90 without a GPU, and the cubin's registers,
    stack and shared memory are read back. Skipped where Triton has no ptxas."""
    import json
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_lanes.py"
    spec = importlib.util.spec_from_file_location("sweep_lanes", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas").exists():
        pytest.skip("this Triton has no ptxas to compile for a GPU with")
    if DEV == "cpu":  # under the interpreter here: the recorder puts the kernel back afterwards
        kernel = getattr(tb._k, mod.KERNEL)
        launch = mod.launch_spec("2x40x5x3", 16, 4)
        assert launch["num_warps"] == 4 and launch["signature"]["cum_ptr"] == "*fp64"
        assert launch["signature"]["T"] == "i32" and launch["signature"]["Q"] == "constexpr"
        assert (launch["constexprs"]["Q"], launch["constexprs"]["BLOCK_C"]) == (16, 4)
        assert getattr(tb._k, mod.KERNEL) is kernel
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, str(script), "--offline", "--sizes", "1x40x5x3", "--configs", "16x4"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["helper"] for r in rows] == [False, True]
    for r in rows:
        assert (r["chunk"], r["warps"], r["arch"]) == (16, 4, "sm_90")
        assert 0 < r["reg"] <= 255 and r["stack"] >= 0 and r["shared"] >= 0
        assert r["spill_stores"] >= 0 and r["spill_loads"] >= 0  # read from ptxas -v
    assert "| 1x40x5x3 | 16 | 4 |" in out.stdout


# ----------------------------------------------------------------------------------------- gradient check
def test_gradient_check_report_passes(capsys):
    from semicrf import gradcheck
    rc = gradcheck.main(["--seq-length", "12", "--max-duration", "5", "--checkpoint-interval", "4",
                         "--device", DEV])
    out = capsys.readouterr().out
    assert rc == 0
    assert "PASS: All criteria met" in out and "[FAIL]" not in out
    assert out.count("[PASS]") == 1 + 3 + 4


def test_gradient_check_report_fails_on_disagreement(capsys, monkeypatch):
    from semicrf import gradcheck
    real = tb.forward_backward

    def off_by_a_bit(p, constrained=False, need_marginals=True, config=tb.DEFAULT_CONFIG):
        fb = real(p, constrained, need_marginals, config)
        fb.log_z = fb.log_z * (1 + 1e-3)
        if fb.marginals is not None:
            fb.marginals.durations = fb.marginals.durations * 1.05
        return fb

    monkeypatch.setattr(tb, "forward_backward", off_by_a_bit)
    rc = gradcheck.main(["--seq-length", "10", "--max-duration", "4", "--device", DEV])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL: some criteria not met" in out
    assert "Rel diff" in out and out.count("[FAIL]") == 2


def test_gene_model_training_penalty_keeps_the_fast_sweep():
    # The gene grammar's hard in-frame stop penalty (1e4 in the emissions) spreads the messages past what
    # the linear chunked sweep holds, so its guard sends every row to the exact kernel; the training
    # penalty does not. Counted from the guard's flags, on bases rich in stop codons.
    from semicrf.genomics import gene_model as gm

    g = torch.Generator().manual_seed(0)
    B, L, K = 2, 160, 12
    grammar = gm.GeneGrammar(K, "triton").double().to(DEV)
    codes = torch.multinomial(torch.tensor([0.3, 0.05, 0.25, 0.4]), B * L, replacement=True, generator=g)
    codes, lengths = codes.view(B, L).to(DEV), torch.full((B,), L, device=DEV)
    scores = [torch.randn(B, L, 3, generator=g, dtype=torch.float64).to(DEV) for _ in range(4)]
    flags = {}
    for penalty in (gm.STOP_PENALTY, gm.TRAIN_STOP_PENALTY):
        with torch.no_grad():
            em, st, en = grammar.state_scores(*scores[:2], codes, lengths, *scores[2:], stop_penalty=penalty)
        tables = {k: v.detach() for k, v in grammar.state_tables().items()}
        p = make_problem(em, tables["transitions"], tables["durations"], lengths, tables["initial"], tables["final"],
                         st, en)
        flags[penalty] = tb.Sweep(p, (False,), reverse=True)._flag.tolist()
    assert all(f > 0 for f in flags[gm.STOP_PENALTY])
    assert flags[gm.TRAIN_STOP_PENALTY] == [0] * (2 * B)


@pytest.mark.parametrize("C", [33, 70])
def test_viterbi_at_many_labels_matches_reference(C):
    """Past 32 labels the Viterbi kernels search in smaller blocks (inner 16 and ends 8 at 64 lanes, 8
    and 2 at 128, so that they compile in about a minute, not many): the same best path and score as
    the reference."""
    assert [tb.viterbi_inner_block(c) for c in (3, 32, 33, 64, 70, 128, 4096)] == [32, 32, 16, 16, 8, 8, 4]
    assert [tb.viterbi_end_block(c) for c in (3, 32, 33, 64, 70, 128, 256)] == [32, 32, 8, 8, 2, 2, 1]
    kw = inputs(2, 9, C, 5, seed=C)
    vt = semicrf.viterbi(**kw, backend="triton")
    vr = semicrf.viterbi(**kw, backend="reference")
    assert_close(vt.score, vr.score, what="viterbi score")
    assert torch.equal(vt.labels.cpu(), vr.labels.cpu())


def test_gene_grammar_grid_cuts_match_the_cpu_backend():
    # --gene-long-runs grid puts -inf start and end scores off the grid of K on the tail pieces of 46
    # states: the Triton log-partition, its gradient and Viterbi against the compiled CPU backend's.
    from semicrf.genomics import gene_model as gm

    g = torch.Generator().manual_seed(3)
    B, L, K = 2, 30, 5
    codes = torch.multinomial(torch.tensor([0.3, 0.2, 0.25, 0.25]), B * L, replacement=True, generator=g).view(B, L)
    lengths = torch.tensor([L, L - 7])
    scores = [torch.randn(B, L, 3, generator=g, dtype=torch.float64) for _ in range(4)]
    out = {}
    for backend in ("triton", "cpu"):
        grammar = gm.GeneGrammar(K, backend, splice_sites=True, score_cuts=False,
                                 **gm.long_run_states("grid")).double()
        with torch.no_grad():
            for p in grammar.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
        grammar = grammar.to(DEV)
        em, st, en = grammar.state_scores(*(s.to(DEV) for s in scores[:2]), codes.to(DEV), lengths.to(DEV),
                                          *(s.to(DEV) for s in scores[2:]), stop_penalty=gm.TRAIN_STOP_PENALTY)
        em.requires_grad_(True)
        log_z = semicrf.log_partition(em, lengths=lengths.to(DEV), start_scores=st, end_scores=en, backend=backend,
                                      **grammar.state_tables())
        grad, = torch.autograd.grad(log_z.sum(), em)
        with torch.no_grad():
            _, result = grammar.decode(em, st, en, lengths.to(DEV))
        out[backend] = (log_z.detach().cpu(), grad.cpu(), result.score.cpu(), result.labels.cpu())
    assert grammar.num_states == 46
    for a, b, what in zip(out["triton"], out["cpu"], ("log Z", "its gradient", "viterbi score", "viterbi path")):
        if what == "viterbi path":
            assert torch.equal(a, b)
        else:
            assert_close(a, b, what=what)
