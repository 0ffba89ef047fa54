"""Per-position input features of a DNA sequence.

Base codes are ``0..4 = A, C, G, T, N``.

``onehot`` (5 dims)
    The indicator of the base at each position (N is its own dimension).
``kmer`` (256 dims)
    Frequencies of the 4-mers lying wholly inside a window of ``KMER_WINDOW``
    (65) positions centred on each position: positions ``t - 32 .. t + 32``,
    so up to 62 4-mers. 4-mers containing N are skipped, frequencies are
    counts divided by the number of counted 4-mers (all zero when there is
    none), and the window is clipped at the sequence ends. Each frequency is
    multiplied by ``4**4 = 256``, so a feature reads as the enrichment of its
    4-mer over a uniform sequence (1 on average): raw frequencies (about 0.004
    each) are too small for an encoder's default initialisation to pick up in
    a few epochs. The 4-mer
    ``b1 b2 b3 b4`` is dimension ``64 b1 + 16 b2 + 4 b3 + b4`` (AAAA first,
    TTTT last).

Both are computed with prefix sums and array indexing, without a loop over
positions: :func:`encode` for one sequence with numpy, :func:`encode_batch`
for a padded batch of base codes with torch, on the codes' device (a GPU
computes the k-mer features of a batch in milliseconds, so only the base codes
need to travel from the host).
"""

from __future__ import annotations

import numpy as np
import torch

FEATURE_KINDS = ("onehot", "kmer")
KMER_SIZE = 4
KMER_WINDOW = 65

_CODE_OF_BYTE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE_OF_BYTE[_b] = _i
    _CODE_OF_BYTE[ord(chr(_b).lower())] = _i


def feature_dim(kind: str) -> int:
    """Number of feature dimensions of ``kind``."""
    if kind == "onehot":
        return 5
    if kind == "kmer":
        return 4**KMER_SIZE
    raise ValueError(f"feature kind (--features) must be one of {FEATURE_KINDS}, got {kind!r}")


def decode_bases(sequence: str | bytes) -> np.ndarray:
    """(L,) uint8 base codes of a DNA string; A/C/G/T in either case, anything else is N (4)."""
    if isinstance(sequence, str):
        points = np.frombuffer(sequence.encode("utf-32-le"), dtype=np.uint32)
        return np.where(points < 256, _CODE_OF_BYTE[np.minimum(points, 255)], 4).astype(np.uint8)
    if isinstance(sequence, (bytes, bytearray, memoryview)):
        return _CODE_OF_BYTE[np.frombuffer(sequence, dtype=np.uint8)]
    raise ValueError(f"sequence must be str or bytes, got {type(sequence).__name__}")


def encode(codes: np.ndarray, kind: str, window: int = KMER_WINDOW) -> np.ndarray:
    """Features of one sequence: (L, feature_dim(kind)) float32.

    codes: (L,) integer base codes 0..4. window: odd k-mer window length (kmer only).
    """
    dim = feature_dim(kind)
    codes = np.asarray(codes)
    if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be a 1-D integer array, got {codes.dtype} shape {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() > 4):
        raise ValueError("codes must lie in 0..4 (A, C, G, T, N); use decode_bases for text")
    if kind == "onehot":
        out = np.zeros((codes.size, dim), dtype=np.float32)
        out[np.arange(codes.size), codes] = 1.0
        return out
    return _kmer_frequencies(codes.astype(np.int64), window)


def _kmer_frequencies(codes: np.ndarray, window: int) -> np.ndarray:
    if int(window) != window or window < KMER_SIZE or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= {KMER_SIZE}, got {window!r}")
    length, k, half = codes.size, KMER_SIZE, window // 2
    out = np.zeros((length, 4**k), dtype=np.float32)
    n_kmers = length - k + 1
    if n_kmers <= 0:
        return out
    ids = np.zeros(n_kmers, dtype=np.int64)
    valid = np.ones(n_kmers, dtype=bool)
    for j in range(k):  # over the k letters of a k-mer, not over positions
        letter = codes[j : j + n_kmers]
        ids = ids * 4 + np.minimum(letter, 3)
        valid &= letter < 4
    # counts[s] = number of each valid k-mer starting before s.
    counts = np.zeros((n_kmers + 1, 4**k), dtype=np.int32)
    starts = np.flatnonzero(valid)
    counts[starts + 1, ids[starts]] = 1
    np.cumsum(counts, axis=0, out=counts)
    # The k-mers inside the window of t start in [t - half, t + half - k + 1].
    t = np.arange(length)
    lo = np.clip(t - half, 0, n_kmers)
    hi = np.clip(t + half - k + 2, 0, n_kmers)
    window_counts = counts[hi] - counts[lo]
    totals = window_counts.sum(axis=1, keepdims=True)
    np.divide(window_counts * float(4**k), np.maximum(totals, 1), out=out, casting="unsafe")
    return out


def encode_batch(codes: torch.Tensor, lengths: torch.Tensor, kind: str, window: int = KMER_WINDOW) -> torch.Tensor:
    """Features of a padded batch, computed where ``codes`` lives: (B, T, feature_dim(kind)) float32.

    codes: (B, T) integer base codes 0..4 (any value past a row's length).
    lengths: (B,) real positions of each row. Row ``i`` equals
    ``encode(codes[i, :lengths[i]], kind)`` and is zero past its length.
    """
    dim = feature_dim(kind)
    if codes.dim() != 2 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"codes must be a (B, T) integer tensor, got {codes.dtype} shape {tuple(codes.shape)}")
    b, t = codes.shape
    if lengths.shape != (b,):
        raise ValueError(f"lengths must have shape ({b},), got {tuple(lengths.shape)}")
    lengths = lengths.to(codes.device, torch.long)
    real = torch.arange(t, device=codes.device)[None, :] < lengths[:, None]  # (B, T)
    codes = torch.where(real, codes.long(), 4)
    if codes.numel() and not 0 <= int(codes.min()) <= int(codes.max()) <= 4:
        raise ValueError("codes must lie in 0..4 (A, C, G, T, N)")
    if kind == "onehot":
        out = torch.nn.functional.one_hot(codes, 5).float()
        return out * real[..., None]
    if int(window) != window or window < KMER_SIZE or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= {KMER_SIZE}, got {window!r}")
    k, half = KMER_SIZE, window // 2
    n_kmers = t - k + 1
    if n_kmers <= 0:
        return torch.zeros(b, t, dim, device=codes.device)
    ids = torch.zeros(b, n_kmers, dtype=torch.long, device=codes.device)
    valid = torch.ones(b, n_kmers, dtype=torch.bool, device=codes.device)
    for j in range(k):  # over the letters of a k-mer; padding is N, so no k-mer crosses a row's end
        letter = codes[:, j:j + n_kmers]
        ids = ids * 4 + letter.clamp(max=3)
        valid &= letter < 4
    # counts[:, s] = number of each valid k-mer starting before s; int32 holds any T here exactly.
    counts = torch.zeros(b, n_kmers + 1, dim, dtype=torch.int32, device=codes.device)
    counts[:, 1:].scatter_(2, ids[..., None], valid[..., None].to(torch.int32))
    counts = counts.cumsum(1, dtype=torch.int32)
    pos = torch.arange(t, device=codes.device)
    # The k-mers inside the window of t start in [t - half, t + half - k + 1], and within the row.
    last = (lengths - k + 1).clamp(min=0)[:, None]  # (B, 1) k-mers of each row
    lo = (pos[None, :] - half).clamp(min=0).minimum(last)
    hi = (pos[None, :] + half - k + 2).clamp(min=0).minimum(last)
    window_counts = counts.gather(1, hi[..., None].expand(b, t, dim)) - counts.gather(1, lo[..., None].expand(b, t, dim))
    totals = window_counts.sum(-1, keepdim=True)
    out = window_counts.float() * float(4**k) / totals.clamp(min=1).float()
    return out * real[..., None]
