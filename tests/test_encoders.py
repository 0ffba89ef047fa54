"""Encoders: the chunked selective scan against a step-by-step scan, and encoder invariants."""

import importlib.util

import pytest
import torch

from semicrf.genomics import encoders
from semicrf.genomics.encoders import (
    EncoderUnavailable,
    SelectiveSSM,
    build_encoder,
    reverse_within_lengths,
    ssd_scan,
    ssd_scan_reference,
)


# Small tensors: one thread is faster and immune to other processes on the machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _scan_inputs(b=2, t=37, h=3, p=4, n=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, h, p, generator=g, dtype=dtype)
    # Step sizes spanning slow and fast decay, so chunk-boundary carries matter.
    dt = torch.rand(b, t, h, generator=g, dtype=dtype) * 0.8 + 0.01
    A = -(torch.rand(h, generator=g, dtype=dtype) * 3 + 0.05)
    B = torch.randn(b, t, n, generator=g, dtype=dtype)
    C = torch.randn(b, t, n, generator=g, dtype=dtype)
    return x, dt, A, B, C


def test_reference_scan_on_a_hand_computed_case():
    # One head, p = n = 1, A = -ln 2 and dt = 1, so the state halves each step:
    # S_t = S_{t-1}/2 + x_t * B_t, y_t = S_t * C_t.
    x = torch.tensor([1.0, 2.0, 0.0, 4.0], dtype=torch.float64).reshape(1, 4, 1, 1)
    dt = torch.ones(1, 4, 1, dtype=torch.float64)
    A = torch.tensor([-torch.log(torch.tensor(2.0)).item()], dtype=torch.float64)
    B = torch.ones(1, 4, 1, dtype=torch.float64)
    C = torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64).reshape(1, 4, 1)
    # S = 1, 2.5, 1.25, 4.625; y = S * C = 1, 2.5, 2.5, 4.625
    expected = torch.tensor([1.0, 2.5, 2.5, 4.625], dtype=torch.float64)
    assert torch.allclose(ssd_scan_reference(x, dt, A, B, C).flatten(), expected)
    for q in (1, 2, 3, 4):
        assert torch.allclose(ssd_scan(x, dt, A, B, C, q).flatten(), expected)


@pytest.mark.parametrize("chunk", [1, 3, 8, 16, 37, 64])
def test_chunked_scan_equals_sequential_scan(chunk):
    inputs = _scan_inputs()
    ref = ssd_scan_reference(*inputs)
    out = ssd_scan(*inputs, chunk_length=chunk)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_chunked_scan_gradients_equal_sequential_scan_gradients():
    inputs = [z.clone().requires_grad_(True) for z in _scan_inputs(t=23, seed=1)]
    weights = torch.randn(2, 23, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    grads_ref = torch.autograd.grad((ssd_scan_reference(*inputs) * weights).sum(), inputs)
    grads = torch.autograd.grad((ssd_scan(*inputs, chunk_length=6) * weights).sum(), inputs)
    for gr, g in zip(grads_ref, grads):
        assert torch.isfinite(g).all()
        assert torch.allclose(g, gr, rtol=1e-9, atol=1e-9)


def test_scan_rejects_bad_shapes():
    x, dt, A, B, C = _scan_inputs()
    with pytest.raises(ValueError, match="dt must be"):
        ssd_scan(x, dt[:, :-1], A, B, C)
    with pytest.raises(ValueError, match="chunk_length"):
        ssd_scan(x, dt, A, B, C, chunk_length=0)


def test_mixer_equals_the_mixer_with_a_sequential_scan(monkeypatch):
    torch.manual_seed(0)
    mixer = SelectiveSSM(8, state_dim=4, head_dim=4, chunk_length=5).double()
    u = torch.randn(3, 29, 8, dtype=torch.float64)
    chunked = mixer(u)
    monkeypatch.setattr(encoders, "ssd_scan", lambda x, dt, A, B, C, q: ssd_scan_reference(x, dt, A, B, C))
    sequential = mixer(u)
    assert torch.allclose(chunked, sequential, rtol=1e-10, atol=1e-10)


def test_mixer_is_causal():
    torch.manual_seed(0)
    mixer = SelectiveSSM(8, state_dim=4, head_dim=4, chunk_length=4).double()
    u = torch.randn(1, 30, 8, dtype=torch.float64)
    v = u.clone()
    v[0, 17] += 1.0
    a, b = mixer(u), mixer(v)
    assert torch.equal(a[0, :17], b[0, :17])
    assert not torch.allclose(a[0, 17:], b[0, 17:])


def test_reverse_within_lengths():
    x = torch.arange(10).reshape(2, 5)
    got = reverse_within_lengths(x[..., None], torch.tensor([3, 5]))[..., 0]
    assert got.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]
    y = torch.randn(3, 7, 2)
    lengths = torch.tensor([7, 1, 4])
    assert torch.equal(reverse_within_lengths(reverse_within_lengths(y, lengths), lengths), y)


@pytest.mark.parametrize("stem", ["linear", "conv"])
@pytest.mark.parametrize("kind", ["mamba_stub", "bilstm"])
def test_encoder_shape_gradients_and_both_directions(kind, stem):
    torch.manual_seed(0)
    enc = build_encoder(kind, 5, 16, 2, stem=stem).double()
    x = torch.randn(2, 40, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([40, 33])
    h = enc(x, lengths)
    assert h.shape == (2, 40, 16)
    h[0, 20].sum().backward()
    g = x.grad[0].abs().sum(-1)
    # Bidirectional: position 20 sees inputs before and after it.
    assert g[:20].sum() > 0 and g[21:].sum() > 0
    assert x.grad[1].abs().sum() == 0


@pytest.mark.parametrize("stem", ["linear", "conv"])
@pytest.mark.parametrize("kind", ["mamba_stub", "bilstm"])
def test_encoder_is_padding_invariant(kind, stem):
    torch.manual_seed(0)
    enc = build_encoder(kind, 5, 8, 2, stem=stem).double()
    short = torch.randn(1, 21, 5, dtype=torch.float64)
    long = torch.randn(1, 50, 5, dtype=torch.float64)
    batch = torch.randn(2, 50, 5, dtype=torch.float64)  # garbage in the padding
    batch[0, :21] = short[0]
    batch[1] = long[0]
    out = enc(batch, torch.tensor([21, 50]))
    assert torch.allclose(out[0, :21], enc(short, torch.tensor([21]))[0], atol=1e-10)
    assert torch.allclose(out[1], enc(long, torch.tensor([50]))[0], atol=1e-10)


def test_conv_stem_sees_exactly_its_receptive_field():
    """Width 9, dilations 1, 2, 4: output t depends on inputs t - 28 .. t + 28 and on no other."""
    from semicrf.genomics.encoders import ConvStem

    torch.manual_seed(0)
    stem = ConvStem(5, 8).double()
    x = torch.randn(1, 101, 5, dtype=torch.float64, requires_grad=True)
    stem(x)[0, 50].sum().backward()
    reached = (x.grad[0].abs().sum(-1) > 0).nonzero().flatten()
    assert reached.min().item() == 50 - 28 and reached.max().item() == 50 + 28
    with pytest.raises(ValueError, match="odd"):
        ConvStem(5, 8, width=4)
    with pytest.raises(ValueError, match="stem"):
        build_encoder("bilstm", 5, 8, 1, stem="dense")


def test_stub_under_bfloat16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    enc = build_encoder("mamba_stub", 5, 16, 1)
    x = torch.randn(2, 64, 5)
    ref = enc(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = enc(x)
    assert torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.25


def test_stub_gradients_are_finite_at_the_spec_length():
    # T = 20 000 through the chunked scan: forward and backward must simply work (no time is measured).
    torch.manual_seed(0)
    enc = build_encoder("mamba_stub", 5, 8, 1)
    h = enc(torch.randn(1, 20_000, 5), torch.tensor([20_000]))
    h.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_build_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("gru", 5, 16, 1)
    with pytest.raises(ValueError, match="hidden_dim must be even"):
        build_encoder("bilstm", 5, 15, 1)
    with pytest.raises(ValueError, match="num_layers"):
        build_encoder("mamba_stub", 5, 16, 0)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba-ssm is installed")
def test_mamba_without_mamba_ssm_says_what_to_use():
    with pytest.raises(EncoderUnavailable, match="mamba_stub") as info:
        build_encoder("mamba", 5, 16, 1)
    assert isinstance(info.value, ValueError)


def test_recomputed_activations_give_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    enc = build_encoder("mamba_stub", 5, 8, 2, recompute=False).double()
    x = torch.randn(2, 30, 5, dtype=torch.float64)
    lengths = torch.tensor([30, 17])
    results = []
    for recompute in (False, True):
        enc.recompute = recompute
        enc.zero_grad()
        h = enc(x, lengths)
        (h * torch.linspace(-1, 1, 8, dtype=torch.float64)).sum().backward()
        results.append((h.detach(), [p.grad.clone() for p in enc.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def _mamba_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        encoders.encoder_available("mamba")
    except EncoderUnavailable:
        return False
    return True


needs_mamba = pytest.mark.skipif(not _mamba_ready(), reason="needs a CUDA GPU and mamba-ssm")


def test_mamba_on_a_cpu_only_machine_names_the_alternatives(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EncoderUnavailable, match="CUDA GPU") as info:
        build_encoder("mamba", 5, 16, 1)
    assert "mamba_stub" in str(info.value) and "bilstm" in str(info.value)


def test_missing_mamba_ssm_gives_the_install_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mamba_ssm" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(EncoderUnavailable) as info:
        build_encoder("mamba", 5, 16, 1)
    assert "MAMBA_SKIP_CUDA_BUILD=TRUE" in str(info.value) and "mamba-ssm==" in str(info.value)


@needs_mamba
def test_mamba_encoder_is_bidirectional_with_finite_gradients():
    torch.manual_seed(0)
    enc = build_encoder("mamba", 5, 64, 2).cuda()
    x = torch.randn(2, 300, 5, device="cuda", requires_grad=True)
    lengths = torch.tensor([300, 211], device="cuda")
    h = enc(x, lengths)
    assert h.shape == (2, 300, 64) and torch.isfinite(h).all()
    h[0, 150].sum().backward()
    g = x.grad[0].abs().sum(-1)
    assert g[:150].sum() > 0 and g[151:].sum() > 0  # sees both sides
    assert x.grad[1].abs().sum() == 0
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@needs_mamba
def test_mamba_encoder_is_padding_invariant():
    torch.manual_seed(0)
    enc = build_encoder("mamba", 5, 64, 2).cuda()
    short = torch.randn(1, 130, 5, device="cuda")
    long = torch.randn(1, 400, 5, device="cuda")
    batch = torch.randn(2, 400, 5, device="cuda")  # garbage in the padding
    batch[0, :130] = short[0]
    batch[1] = long[0]
    with torch.no_grad():
        out = enc(batch, torch.tensor([130, 400], device="cuda"))
        alone = enc(short, torch.tensor([130], device="cuda"))[0]
    # Triton's float32 dots run as tf32: agreement to ~1e-3 of the scale, not bit for bit.
    scale = alone.abs().max()
    assert (out[0, :130] - alone).abs().max() < 2e-3 * scale


@needs_mamba
def test_mamba_encoder_at_the_spec_length_under_bfloat16():
    torch.manual_seed(0)
    enc = build_encoder("mamba", 5, 64, 1).cuda()
    x = torch.randn(2, 20_000, 5, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        h = enc(x, torch.tensor([20_000, 18_000], device="cuda"))
    h.float().square().mean().backward()
    assert torch.isfinite(h).all()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


@pytest.mark.parametrize("max_steps", [1, 7, 40, 41])
def test_lstm_in_pieces_equals_one_pass_with_its_gradients(max_steps):
    # run_lstm carries the state from piece to piece (cuDNN's 65 535-step limit on a GPU): the outputs
    # and every gradient must be those of one pass; a piece that restarted its state would differ.
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, batch_first=True).double()
    x = torch.randn(2, 41, 6, dtype=torch.float64, requires_grad=True)
    want = lstm(x)[0]
    grads_want = torch.autograd.grad(want.square().sum(), [x, *lstm.parameters()])
    got = encoders.run_lstm(lstm, x, max_steps)
    grads_got = torch.autograd.grad(got.square().sum(), [x, *lstm.parameters()])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(grads_got, grads_want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bilstm_past_cudnns_limit_on_a_gpu_matches_the_cpu(monkeypatch):
    # The fly set's longest locus has 118 333 bases; cuDNN's LSTM refuses 65 536 steps or more in one call.
    # float64 and no TF32 (cuDNN's default for the conv stem and the LSTM), so that the two devices'
    # arithmetic agree to far below the test's tolerance (float32 with TF32 differed by up to 4e-4).
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    enc = build_encoder("bilstm", 5, 8, 1, stem="conv").double()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, 70_000)), 5).double()
    lengths = torch.tensor([70_000])
    want = enc(x, lengths)
    got = enc.cuda()(x.cuda(), lengths.cuda())
    got.sum().backward()
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)
