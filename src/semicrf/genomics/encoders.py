"""Sequence encoders shared by every benchmark model.

An encoder maps per-position features to per-position hidden states:
``(B, T, input_dim) -> (B, T, hidden_dim)``; ``lengths`` (B,) says how much of
each padded row is real. Every encoder here is bidirectional and padding
invariant: the states of a sequence do not depend on how much padding its batch
adds (the backward direction reverses each sequence within its own length).

Every encoder starts with a *stem* from the features to ``hidden_dim``
channels: ``linear`` (a per-position linear map) or ``conv``
(:class:`ConvStem`, convolutions that see a few dozen positions, as gene
finders with learned encoders put in front of their recurrent layers).

Kinds (``build_encoder``):

``bilstm``
    A stack of bidirectional LSTM layers (``hidden_dim / 2`` units per
    direction, outputs concatenated) over a linear input projection.
``mamba_stub``
    A pure-PyTorch selective state-space encoder of the Mamba family (the
    scalar-decay-per-head form of Mamba2). Each layer is
    ``h + fwd(norm(h)) + rev(bwd(rev(norm(h))))`` where ``fwd`` and ``bwd`` are
    :class:`SelectiveSSM` mixers (input projection, causal depthwise
    convolution, input-dependent step size Δ and projections B, C, a diagonal
    decay per head, a skip term D, gating by SiLU(z), RMS normalisation, output
    projection) and ``rev`` reverses each sequence within its length. The scan
    is chunked (:func:`ssd_scan`): inside a chunk of ``chunk_length`` positions
    the recurrence is evaluated as masked matrix products, and only the small
    per-chunk state is carried from chunk to chunk, so memory is linear in T
    and it trains on CPU at T = 20 000.
``mamba``
    The same layer structure with ``mamba_ssm``'s Mamba2 mixers (GPU only).
    Needs the optional ``mamba-ssm`` package; without it
    :class:`EncoderUnavailable` is raised.

The selective scan (per head, state ``S_t`` of shape (P, N))::

    S_t = exp(Δ_t · A) · S_{t-1} + Δ_t · x_t ⊗ B_t
    y_t = S_t · C_t + D · x_t

with ``A < 0`` a scalar per head, ``Δ_t > 0`` per head and position, ``x_t``
(P,) the head's input, ``B_t``, ``C_t`` (N,) shared by all heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

ENCODER_KINDS = ("mamba", "mamba_stub", "bilstm")
#: How features enter an encoder: a per-position linear map, or a stack of convolutions (:class:`ConvStem`).
STEM_KINDS = ("linear", "conv")


class EncoderUnavailable(ValueError):
    """The requested encoder cannot be built in this environment."""


# ---------------------------------------------------------------------------
# The selective scan: a step-by-step reference and the chunked form.
# ---------------------------------------------------------------------------


def _check_scan_inputs(x, dt, A, B, C):
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, T, heads, head_dim), got shape {tuple(x.shape)}")
    b, t, h, _ = x.shape
    if dt.shape != (b, t, h):
        raise ValueError(f"dt must be {(b, t, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be ({h},), got {tuple(A.shape)}")
    if B.dim() != 3 or B.shape[:2] != (b, t) or C.shape != B.shape:
        raise ValueError(f"B and C must both be ({b}, {t}, state_dim), got {tuple(B.shape)} and {tuple(C.shape)}")


def ssd_scan_reference(x, dt, A, B, C):
    """The selective scan evaluated one position at a time (the test oracle).

    x (b, T, h, p), dt (b, T, h), A (h,), B and C (b, T, n) -> y (b, T, h, p),
    without the D skip term.
    """
    _check_scan_inputs(x, dt, A, B, C)
    b, t, h, p = x.shape
    n = B.shape[-1]
    state = x.new_zeros(b, h, p, n)
    out = []
    for i in range(t):
        decay = torch.exp(dt[:, i] * A)  # (b, h)
        state = decay[:, :, None, None] * state + (dt[:, i, :, None] * x[:, i])[..., None] * B[:, i, None, None, :]
        out.append(torch.einsum("bhpn,bn->bhp", state, C[:, i]))
    return torch.stack(out, dim=1)


def ssd_scan(x, dt, A, B, C, chunk_length: int = 64):
    """The selective scan, chunked: exactly :func:`ssd_scan_reference`'s math.

    x (b, T, h, p), dt (b, T, h), A (h,), B and C (b, T, n) -> y (b, T, h, p).

    Within a chunk the output is ``y_i = Σ_{j<=i} (C_i·B_j) exp(a_i - a_j) Δ_j x_j``
    (``a`` the in-chunk cumulative sum of Δ·A) plus the contribution of the
    state entering the chunk, ``exp(a_i) C_i · S_in``. Memory is
    O(b·T·h·chunk_length + b·(T/chunk_length)·h·p·n).
    """
    _check_scan_inputs(x, dt, A, B, C)
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be >= 1, got {chunk_length}")
    b, t, h, p = x.shape
    n = B.shape[-1]
    q = min(chunk_length, t)
    nc = -(-t // q)
    pad = nc * q - t
    if pad:
        # Zero step size past the end: no decay and no input, and the scan is
        # causal, so the padded tail cannot reach the real positions.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, pad))
    # Layout (b, h, c, q, .): every product below is a batched matmul.
    xdt = (x * dt[..., None]).reshape(b, nc, q, h, p).permute(0, 3, 1, 2, 4)  # (b, h, c, q, p)
    Bs = B.reshape(b, 1, nc, q, n)
    Cs = C.reshape(b, 1, nc, q, n)
    cum = torch.cumsum((dt * A).reshape(b, nc, q, h).permute(0, 3, 1, 2), dim=-1)  # (b, h, c, q)

    # exp of the decay between positions j <= i of a chunk; the upper triangle
    # is masked before the exp so it can neither overflow nor poison gradients.
    causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
    seg = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf"))
    y = (torch.exp(seg) * (Cs @ Bs.transpose(-1, -2))) @ xdt  # (b, h, c, q, p)

    # State each chunk adds, then the sequential carry over chunks (small tensors).
    to_end = torch.exp(cum[..., -1:] - cum)  # (b, h, c, q)
    added = (xdt * to_end[..., None]).transpose(-1, -2) @ Bs  # (b, h, c, p, n)
    chunk_decay = torch.exp(cum[..., -1])  # (b, h, c)
    state = x.new_zeros(b, h, p, n)
    entering = []
    for k in range(nc):
        entering.append(state)
        state = chunk_decay[:, :, k, None, None] * state + added[:, :, k]
    entering = torch.stack(entering, dim=2)  # (b, h, c, p, n)
    y = y + torch.exp(cum)[..., None] * (Cs @ entering.transpose(-1, -2))
    return y.permute(0, 2, 3, 1, 4).reshape(b, nc * q, h, p)[:, :t]


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each row of ``x`` (B, T, ...) within its own length; padding stays put.

    An involution: applying it twice gives ``x`` back.
    """
    if lengths is None:
        return x.flip(1)
    b, t = x.shape[:2]
    pos = torch.arange(t, device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(pos < lengths, lengths - 1 - pos, pos)  # (B, T)
    index = index.reshape(b, t, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, index)


class GatedRMSNorm(nn.Module):
    """RMS normalisation of ``y * silu(z)``: the mixer's output gate."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y, z):
        y = y * F.silu(z)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelectiveSSM(nn.Module):
    """One direction of a Mamba-style mixer: (B, T, d_model) -> (B, T, d_model), causal.

    ``d_inner = expand * d_model`` channels split into ``d_inner / head_dim``
    heads; B and C have ``state_dim`` entries.
    """

    def __init__(self, d_model: int, state_dim: int = 16, head_dim: int = 16, expand: int = 2,
                 conv_width: int = 4, chunk_length: int = 64,
                 dt_min: float = 1e-3, dt_max: float = 1e-1):
        super().__init__()
        d_inner = expand * d_model
        if d_inner % head_dim:
            raise ValueError(
                f"expand * hidden_dim = {d_inner} must be a multiple of head_dim = {head_dim}; "
                "choose a hidden_dim that is a multiple of 8"
            )
        self.d_inner, self.state_dim, self.head_dim = d_inner, state_dim, head_dim
        self.num_heads = d_inner // head_dim
        self.chunk_length = chunk_length
        conv_dim = d_inner + 2 * state_dim
        self.in_proj = nn.Linear(d_model, d_inner + conv_dim + self.num_heads)
        self.conv = nn.Conv1d(conv_dim, conv_dim, conv_width, groups=conv_dim, padding=conv_width - 1)
        # Step sizes start log-uniform in [dt_min, dt_max], so heads begin with
        # memories from ~10 to ~1000 positions (segments here are 30 to 20 000 long).
        dt = torch.exp(torch.rand(self.num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(self.num_heads).uniform_(1.0, 16.0)))
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.norm = GatedRMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, t, _ = u.shape
        z, xbc, dt = torch.split(
            self.in_proj(u), [self.d_inner, self.d_inner + 2 * self.state_dim, self.num_heads], dim=-1
        )
        xbc = F.silu(self.conv(xbc.transpose(1, 2))[..., :t].transpose(1, 2))
        x, Bm, Cm = torch.split(xbc, [self.d_inner, self.state_dim, self.state_dim], dim=-1)
        # The scan's exps and cumulative sums run in the parameters' precision
        # (float32), not in bfloat16, even under autocast.
        dtype = self.A_log.dtype
        with torch.autocast(device_type=u.device.type, enabled=False):
            x = x.to(dtype).reshape(b, t, self.num_heads, self.head_dim)
            dt = F.softplus(dt.to(dtype) + self.dt_bias)
            A = -torch.exp(self.A_log)
            y = ssd_scan(x, dt, A, Bm.to(dtype), Cm.to(dtype), self.chunk_length)
            y = y + self.D[:, None] * x
            y = self.norm(y.reshape(b, t, self.d_inner), z.to(dtype))
        return self.out_proj(y)


class BidirectionalLayer(nn.Module):
    """``h + fwd(norm(h)) + rev(bwd(rev(norm(h))))`` with ``rev`` reversing within lengths.

    With ``recompute`` each mixer keeps only its input for the backward pass
    and recomputes its activations there (activation checkpointing).
    """

    def __init__(self, d_model: int, make_mixer):
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.forward_mixer = make_mixer()
        self.backward_mixer = make_mixer()

    @staticmethod
    def _mix(mixer, u, recompute: bool):
        if recompute and torch.is_grad_enabled():
            return checkpoint(mixer, u, use_reentrant=False)
        return mixer(u)

    def forward(self, h, lengths=None, recompute: bool = False):
        u = self.norm(h)
        back = self._mix(self.backward_mixer, reverse_within_lengths(u, lengths), recompute)
        back = reverse_within_lengths(back, lengths)
        # The residual stream keeps the parameters' precision under autocast.
        return h + self._mix(self.forward_mixer, u, recompute).to(h.dtype) + back.to(h.dtype)


class LinearStem(nn.Module):
    """The per-position input projection: (B, T, input_dim) -> (B, T, hidden_dim)."""

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden_dim)

    def forward(self, features, lengths=None):
        return self.proj(features)


class ConvStem(nn.Module):
    """Local motif detectors ahead of the sequence mixers: (B, T, input_dim) -> (B, T, hidden_dim).

    A centred convolution of width ``width`` from the features to
    ``hidden_dim`` channels, GELU, then ``blocks`` residual blocks
    ``h + GELU(conv(norm(h)))`` whose dilations double (2, 4, ...): the
    receptive field is ``1 + (width - 1)(1 + 2 + 4 + ...)`` positions (57 at
    the defaults). Splice consensus, polypyrimidine tracts and codon
    composition are signals of a few to a few dozen bases, which a recurrent
    mixer would otherwise assemble one base at a time. Positions past each
    row's length are zeroed after every convolution, so a sequence's output
    does not depend on how much padding its batch adds.
    """

    def __init__(self, input_dim: int, hidden_dim: int, width: int = 9, blocks: int = 2):
        super().__init__()
        if width < 1 or width % 2 == 0:
            raise ValueError(f"the conv stem's width must be odd and >= 1, got {width}")
        self.first = nn.Conv1d(input_dim, hidden_dim, width, padding=width // 2)
        self.norms = nn.ModuleList([nn.RMSNorm(hidden_dim) for _ in range(blocks)])
        self.convs = nn.ModuleList([
            nn.Conv1d(hidden_dim, hidden_dim, width, padding=(width // 2) * 2 ** (i + 1), dilation=2 ** (i + 1))
            for i in range(blocks)])

    def forward(self, features, lengths=None):
        keep = None
        if lengths is not None:
            keep = (torch.arange(features.shape[1], device=features.device)[None, :]
                    < lengths.to(features.device)[:, None])[..., None]
            features = features * keep

        def conv(layer, x):  # (B, T, C) -> (B, T, C'), padding zeroed
            # Under autocast the convolution runs in bfloat16; the residual stream and the norms
            # keep the parameters' precision, as in the mixer layers.
            y = F.gelu(layer(x.transpose(1, 2)).transpose(1, 2)).to(layer.weight.dtype)
            return y if keep is None else y * keep

        h = conv(self.first, features)
        for norm, layer in zip(self.norms, self.convs):
            h = h + conv(layer, norm(h))
        return h


def build_stem(kind: str, input_dim: int, hidden_dim: int) -> nn.Module:
    """The stem ``kind`` (one of :data:`STEM_KINDS`): (B, T, input_dim) -> (B, T, hidden_dim)."""
    if kind == "linear":
        return LinearStem(input_dim, hidden_dim)
    if kind == "conv":
        return ConvStem(input_dim, hidden_dim)
    raise ValueError(f"unknown stem {kind!r}; choose one of {', '.join(STEM_KINDS)}")


class SSMEncoder(nn.Module):
    """Stem (input projection), ``num_layers`` bidirectional layers, final RMS norm.

    forward(features (B, T, input_dim), lengths (B,) | None) -> (B, T, hidden_dim).

    recompute: activation checkpointing of every mixer while training. A
    mixer's activations are large (the chunked scan holds
    O(B·T·heads·chunk_length) values: measured 1.7 GB per layer for one
    sequence of 20 000 at hidden 256 in float32), so at the spec's size (B = 16,
    4 layers) keeping them for all layers would need ~110 GB; recomputed, the
    peak is about one mixer's worth (measured 1.4 GB for two layers at B = 1),
    for the price of one more forward pass of the encoder.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, make_mixer, recompute: bool = True,
                 stem: str = "linear"):
        super().__init__()
        self.recompute = recompute
        self.stem = build_stem(stem, input_dim, hidden_dim)
        self.layers = nn.ModuleList([BidirectionalLayer(hidden_dim, make_mixer) for _ in range(num_layers)])
        self.final_norm = nn.RMSNorm(hidden_dim)

    def forward(self, features, lengths=None):
        recompute = self.recompute
        h = self.stem(features, lengths).to(self.final_norm.weight.dtype)
        for layer in self.layers:
            h = layer(h, lengths, recompute)
        return self.final_norm(h)


class BiLSTMEncoder(nn.Module):
    """Stem (input projection) and ``num_layers`` bidirectional LSTM layers (hidden_dim / 2 units per direction).

    forward(features (B, T, input_dim), lengths (B,) | None) -> (B, T, hidden_dim).
    Each layer runs a forward LSTM on the padded batch (padding sits after the
    real positions, so it cannot reach them) and a second LSTM on the sequences
    reversed within their lengths; this avoids packed sequences, whose CPU
    backward pass grows quadratically with T.
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, stem: str = "linear"):
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even for the bilstm encoder (two directions), got {hidden_dim}")
        self.stem = build_stem(stem, input_dim, hidden_dim)
        half = hidden_dim // 2
        self.forward_lstms = nn.ModuleList([nn.LSTM(hidden_dim, half, batch_first=True) for _ in range(num_layers)])
        self.backward_lstms = nn.ModuleList([nn.LSTM(hidden_dim, half, batch_first=True) for _ in range(num_layers)])

    def forward(self, features, lengths=None):
        h = self.stem(features, lengths)
        for fwd, bwd in zip(self.forward_lstms, self.backward_lstms):
            back = reverse_within_lengths(run_lstm(bwd, reverse_within_lengths(h, lengths)), lengths)
            h = torch.cat([run_lstm(fwd, h), back], dim=-1)
        return h


#: cuDNN's LSTM refuses a sequence of 65 536 steps or more (``CUDNN_STATUS_NOT_SUPPORTED``; pytorch/pytorch
#: issue 133751; met on an H200 with the fly set's 118 333-base locus and with chromosome pieces).
CUDNN_LSTM_MAX_STEPS = 65_535


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, max_steps: int | None = None) -> torch.Tensor:
    """``lstm(x)[0]`` for a batch-first unidirectional LSTM, run over pieces of at most ``max_steps``
    positions that carry the state from one to the next: the same outputs as one pass (and the same
    gradients, through the carried state). ``max_steps`` None: :data:`CUDNN_LSTM_MAX_STEPS` on a CUDA
    device, one pass elsewhere."""
    if max_steps is None:
        max_steps = CUDNN_LSTM_MAX_STEPS if x.is_cuda else x.shape[1]
    if x.shape[1] <= max_steps:
        return lstm(x)[0]
    outputs, state = [], None
    for lo in range(0, x.shape[1], max_steps):
        y, state = lstm(x[:, lo:lo + max_steps], state)
        outputs.append(y)
    return torch.cat(outputs, dim=1)


MAMBA_INSTALL = ("pip install einops transformers && MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE "
                 "pip install --no-deps --no-build-isolation mamba-ssm==2.3.2.post1")


def _import_mamba2():
    """mamba_ssm's Mamba2 class; raises :class:`EncoderUnavailable` with the install line."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("mamba_ssm") is None:
        raise EncoderUnavailable(
            "--encoder mamba needs the mamba-ssm package, which is not installed. Its Triton path needs no "
            f"CUDA build: {MAMBA_INSTALL}. Or use --encoder mamba_stub (the same layer structure in pure "
            "PyTorch, runs anywhere) or --encoder bilstm.")
    if "selective_scan_cuda" not in sys.modules and importlib.util.find_spec("selective_scan_cuda") is None:
        # The package imports the compiled Mamba1 scan at import time although
        # Mamba2 runs on Triton kernels alone; an installation built without
        # CUDA sources lacks it, so an empty module stands in for it.
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
    try:
        from mamba_ssm.modules.mamba2 import Mamba2
    except Exception as exc:  # a missing dependency, or a broken extension
        raise EncoderUnavailable(
            f"--encoder mamba: mamba-ssm is installed but cannot be imported ({type(exc).__name__}: {exc}). "
            f"Reinstall it with: {MAMBA_INSTALL}; or use --encoder mamba_stub or bilstm.") from exc
    return Mamba2


def _mamba2_mixer_factory(hidden_dim: int):
    if not torch.cuda.is_available():
        raise EncoderUnavailable("--encoder mamba runs only on a CUDA GPU (mamba-ssm's kernels are Triton GPU "
                                 "kernels); on a CPU use --encoder mamba_stub (the same layer structure in pure "
                                 "PyTorch) or --encoder bilstm")
    Mamba2 = _import_mamba2()
    head_dim = 64 if (2 * hidden_dim) % 64 == 0 else 16 if (2 * hidden_dim) % 16 == 0 else 2 * hidden_dim
    return lambda: Mamba2(d_model=hidden_dim, d_state=64, headdim=head_dim, use_mem_eff_path=False)


def build_encoder(kind: str, input_dim: int, hidden_dim: int, num_layers: int, **options) -> nn.Module:
    """Build an encoder mapping (B, T, input_dim) -> (B, T, hidden_dim).

    ``options`` go to :class:`SelectiveSSM` for ``mamba_stub`` (state_dim,
    head_dim, expand, conv_width, chunk_length); ``recompute`` (default
    True) goes to :class:`SSMEncoder` for ``mamba_stub`` and ``mamba``;
    ``stem`` (default "linear", see :data:`STEM_KINDS`) to every kind. Raises
    ValueError for bad sizes or an unknown kind, :class:`EncoderUnavailable`
    for ``mamba`` without mamba-ssm.
    """
    for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("num_layers", num_layers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    recompute = options.pop("recompute", True)
    stem = options.pop("stem", "linear")
    if stem not in STEM_KINDS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEM_KINDS)}")
    if kind == "bilstm":
        if options:
            raise ValueError(f"the bilstm encoder takes no options but stem, got {sorted(options)}")
        return BiLSTMEncoder(input_dim, hidden_dim, num_layers, stem)
    if kind == "mamba_stub":
        if "head_dim" not in options:
            # Mamba2's 64-wide heads at full size; narrower ones keep small CPU models multi-headed.
            d_inner = options.get("expand", 2) * hidden_dim
            options["head_dim"] = 64 if d_inner >= 512 and d_inner % 64 == 0 else 16 if d_inner % 16 == 0 else d_inner
        return SSMEncoder(input_dim, hidden_dim, num_layers, lambda: SelectiveSSM(hidden_dim, **options), recompute, stem)
    if kind == "mamba":
        if options:
            raise ValueError(f"the mamba encoder takes no options but recompute and stem, got {sorted(options)}")
        return SSMEncoder(input_dim, hidden_dim, num_layers, _mamba2_mixer_factory(hidden_dim), recompute, stem)
    raise ValueError(f"unknown encoder {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")


def encoder_available(kind: str) -> None:
    """Raise :class:`EncoderUnavailable` (or ValueError) if ``kind`` cannot be built here."""
    if kind == "mamba":
        _mamba2_mixer_factory(8)
    elif kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
