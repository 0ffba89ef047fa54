"""Long rows in windows (semicrf.windows): the stitched forward messages, log Z and marginals are the
whole row's, a model that never forgets its start falls back to the whole row, bad settings are
refused, and the engine's functions use windows only where they should."""

import warnings
from unittest import mock

import pytest
import torch

import semicrf
from semicrf import core
from semicrf.backends import cpu, reference
from semicrf.problem import make_problem
from semicrf.windows import WindowConfig, forward_alpha
from semicrf.windows import log_partition as windows_log_partition
from semicrf.windows import marginals as windows_marginals

SMALL = WindowConfig(min_length=1, chunk=60, warm_up=40)


def inputs(B=3, T=400, C=3, K=7, seed=0, lengths=(400, 251, 50)):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    return dict(emissions=r(B, T, C), transitions=r(C, C, scale=0.5), durations=r(K, C, scale=0.5),
                lengths=torch.tensor(lengths[:B]), initial=r(C), final=r(C), start_scores=r(B, T, C, scale=0.3),
                end_scores=r(B, T, C, scale=0.3))


@pytest.mark.parametrize("backend", [reference, cpu], ids=["reference", "cpu"])
def test_windows_are_the_whole_rows(backend):
    """Rows of 400 and 251 positions in windows of 60 (+ 40 warm-up), a row of 50 in one window:
    alpha, log Z and the marginals equal the backend's on the whole rows (and the reference's)."""
    kw = inputs()
    p = make_problem(**kw)
    alpha, dist = forward_alpha(backend, p, SMALL)
    whole = reference.forward_alpha(p)
    assert torch.equal(torch.isfinite(alpha), torch.isfinite(whole))
    fin = torch.isfinite(whole)
    torch.testing.assert_close(alpha[fin], whole[fin], rtol=1e-12, atol=1e-9)
    assert dist[2] == 0.0 and 0.0 < max(dist[:2]) < 1e-12  # the short row is one window, no boundary
    full = reference.forward_backward(p)
    torch.testing.assert_close(windows_log_partition(backend, p, SMALL), full.log_z, rtol=1e-13, atol=1e-9)
    marg = windows_marginals(backend, p, SMALL)
    # As close as the backends are to each other (exp of sums of terms of a few hundred nats).
    torch.testing.assert_close(marg, full.marginals.emissions, rtol=0, atol=1e-9)
    # An invariant of its own: every position's labels sum to 1, and nothing past a length.
    inside = p.padding_mask()
    torch.testing.assert_close(marg.sum(-1)[inside], torch.ones(int(inside.sum()), dtype=torch.float64))
    assert (marg[~inside] == 0).all()


def test_windows_with_forbidden_transitions_and_durations():
    """A cyclic grammar (0 -> 1 -> 2 -> 0 only, some durations -inf, a label that may not start):
    the -inf pattern and the values survive the stitching."""
    kw = inputs(B=1, T=500, lengths=(500,))
    kw["transitions"] = torch.full((3, 3), float("-inf"), dtype=torch.float64)
    kw["transitions"][0, 1] = kw["transitions"][1, 2] = kw["transitions"][2, 0] = 0.2
    kw["durations"][::2, 1] = float("-inf")  # label 1: even lengths only
    kw["initial"][2] = float("-inf")
    p = make_problem(**kw)
    full = reference.forward_backward(p)
    cfg = WindowConfig(min_length=1, chunk=60, warm_up=120)  # it forgets its phase more slowly
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="semicrf windows")  # no fallback
        lz = windows_log_partition(cpu, p, cfg)
        marg = windows_marginals(cpu, p, cfg)
    torch.testing.assert_close(lz, full.log_z, rtol=1e-13, atol=1e-9)
    torch.testing.assert_close(marg, full.marginals.emissions, rtol=0, atol=1e-9)


def test_a_model_that_never_forgets_is_computed_whole():
    """Labels that never change (every transition -inf but to itself): the start decides the label
    of the whole row, the windows' frontiers disagree by far more than the tolerance, and the row is
    computed whole, with a RuntimeWarning naming it, so the answer is still the row's."""
    kw = inputs(B=2, lengths=(400, 300))
    kw["transitions"] = torch.full((3, 3), float("-inf"), dtype=torch.float64).fill_diagonal_(0.0)
    p = make_problem(**kw)
    with pytest.warns(RuntimeWarning, match=r"row 0 \(length 400\) was computed whole.*warm_up = 40"):
        alpha, dist = forward_alpha(cpu, p, SMALL)
    assert min(dist) > 1e-3  # relative to the frontiers' magnitude (hundreds of nats here)
    whole = reference.forward_alpha(p)
    fin = torch.isfinite(whole)
    assert torch.equal(torch.isfinite(alpha), fin)
    torch.testing.assert_close(alpha[fin], whole[fin], rtol=1e-12, atol=1e-9)


def test_settings_are_checked():
    for bad in (dict(chunk=0), dict(min_length=-1), dict(warm_up=0), dict(tolerance=-1.0), dict(chunk=True)):
        with pytest.raises(ValueError, match=f"WindowConfig.{next(iter(bad))}"):
            WindowConfig(**bad)
    with pytest.raises(ValueError, match=r"WindowConfig.chunk = 5 is shorter than the longest segment K = 7"):
        WindowConfig(chunk=5).sizes(7)
    with pytest.raises(ValueError, match=r"WindowConfig.warm_up = 3 is shorter"):
        WindowConfig(warm_up=3).sizes(7)
    assert WindowConfig(chunk=1000).sizes(10) == (1000, 250)  # warm-up: max(4 K, chunk / 4)
    kw = inputs()
    for call in (semicrf.log_partition, semicrf.marginals):
        with pytest.raises(ValueError, match="`windows`: a semicrf.windows.WindowConfig, or None"):
            call(**kw, windows=True)
    assert WindowConfig(chunk=100).sizes(50) == (100, 200)


def test_engine_functions_use_windows_only_for_long_rows_without_gradients():
    """log_partition and marginals cut rows of at least min_length when nothing needs a gradient;
    with a gradient, with windows=None, or below min_length, every row goes whole (and the
    gradient is the marginals, as always)."""
    kw = inputs()
    cfg = WindowConfig(min_length=300, chunk=60, warm_up=40)
    whole_z = semicrf.log_partition(**kw, backend="cpu", windows=None)
    with mock.patch.object(core, "windows_log_partition", wraps=windows_log_partition) as spy:
        z = semicrf.log_partition(**kw, backend="cpu", windows=cfg)
        assert spy.call_count == 1
        torch.testing.assert_close(z, whole_z, rtol=1e-13, atol=1e-9)
        semicrf.log_partition(**kw, backend="cpu", windows=WindowConfig(min_length=401, chunk=60, warm_up=40))
        semicrf.log_partition(**kw, backend="cpu", windows=None)
        em = kw["emissions"].clone().requires_grad_()
        z = semicrf.log_partition(**{**kw, "emissions": em}, backend="cpu", windows=cfg)
        assert spy.call_count == 1
    z.sum().backward()
    torch.testing.assert_close(em.grad, semicrf.marginals(**kw, backend="cpu", windows=None))
    with mock.patch.object(core, "windows_marginals", wraps=windows_marginals) as spy:
        m = semicrf.marginals(**kw, backend="cpu", windows=cfg)
        assert spy.call_count == 1
        torch.testing.assert_close(m, em.grad, rtol=0, atol=1e-9)
        semicrf.marginals(**kw, backend="cpu", windows=None)
        assert spy.call_count == 1


def test_default_leaves_short_rows_alone():
    """The default cuts rows of 2^20 positions and more only."""
    p = make_problem(**inputs())
    assert not semicrf.windows.DEFAULT_WINDOWS.wanted(p)
    assert WindowConfig(min_length=400, chunk=60, warm_up=24).wanted(p)
    assert not WindowConfig(min_length=400, chunk=400, warm_up=24).wanted(p)  # one window holds it


def test_long_sequence_benchmark_runs_and_agrees(tmp_path, capsys):
    """benchmarks/long_sequence.py at a small size on the CPU: whole and windowed answers agree, each
    position's marginals sum to 1, and the table names both."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "long_sequence.py"
    spec = importlib.util.spec_from_file_location("long_sequence", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "long.json"
    assert mod.main(["--device", "cpu", "--length", "20000", "--max-duration", "20", "--chunk", "2000",
                     "--repeat", "0", "--json", str(out)]) == 0
    row = json.loads(out.read_text())
    assert (row["chunk"], row["warm_up"]) == (2000, 500)
    assert row["log_z_rel_diff"] < 1e-12 and row["marginals_max_abs_diff"] < 1e-9
    assert row["marginals_windows_sum_err"] < 1e-9 and row["boundary_distance"] < 1e-12
    assert "| log_partition (T 20000, K 20, C 3) |" in capsys.readouterr().out


def test_marginals_keep_their_digits_along_a_row():
    """C labels with equal scores: every occupancy marginal is exactly 1/C (symmetry), at any length.
    The backend's own marginals sum start and end masses whose roundings, at the size of log Z, do not
    cancel (about 1e-7 off at 100 000 positions, growing as T^2); the windows' assembly shares one
    rounding between the segments that start and end at a boundary, and stays within 1e-11, in one
    window as in many."""
    T, K, C = 100_000, 300, 3
    em = torch.full((1, T, C), 0.3, dtype=torch.float64)
    tr = torch.zeros(C, C, dtype=torch.float64)
    du = (-0.01 * torch.arange(1, K + 1, dtype=torch.float64))[:, None].expand(K, C).contiguous()
    whole = semicrf.marginals(em, tr, du, backend="cpu", windows=None)
    assert (whole - 1 / C).abs().max().item() > 1e-9  # what the backend's assembly loses here
    for cfg in (WindowConfig(min_length=1), WindowConfig(min_length=1, chunk=4096)):  # one window; 25
        m = semicrf.marginals(em, tr, du, backend="cpu", windows=cfg)
        assert (m - 1 / C).abs().max().item() < 1e-11
