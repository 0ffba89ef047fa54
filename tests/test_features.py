"""Per-position features: one-hot, sliding-window 4-mer frequencies, base decoding."""

import numpy as np
import pytest

from semicrf.genomics.features import FEATURE_KINDS, KMER_WINDOW, decode_bases, encode, feature_dim


def test_decode_bases_maps_everything_else_to_n():
    assert decode_bases("ACGTacgtNnUX-é ").tolist() == [0, 1, 2, 3, 0, 1, 2, 3] + [4] * 7
    assert decode_bases(b"GATTACA!").tolist() == [2, 0, 3, 3, 0, 1, 0, 4]
    assert decode_bases("").shape == (0,) and decode_bases("").dtype == np.uint8
    assert decode_bases("A\U0001F600C").tolist() == [0, 4, 1]  # one code per character, wide ones too
    with pytest.raises(ValueError, match="str or bytes"):
        decode_bases(12)


def test_onehot_by_hand():
    out = encode(decode_bases("ACGTNA"), "onehot")
    assert out.dtype == np.float32 and out.shape == (6, 5)
    np.testing.assert_array_equal(out, np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]])


def _kmer_brute_force(codes, window):
    half = window // 2
    L = len(codes)
    out = np.zeros((L, 256))
    for t in range(L):
        lo, hi = max(0, t - half), min(L - 1, t + half)
        counts = np.zeros(256)
        for s in range(lo, hi - 2):
            kmer = codes[s : s + 4]
            if all(b < 4 for b in kmer):
                counts[64 * kmer[0] + 16 * kmer[1] + 4 * kmer[2] + kmer[3]] += 1
        if counts.sum():
            out[t] = 256 * counts / counts.sum()
    return out


@pytest.mark.parametrize("window", [5, 9, KMER_WINDOW])
def test_kmer_matches_brute_force(window):
    rng = np.random.default_rng(window)
    for length in (0, 3, 4, 5, 40, 150):
        codes = rng.choice(5, size=length, p=[0.24, 0.24, 0.24, 0.24, 0.04]).astype(np.uint8)
        got = encode(codes, "kmer", window=window)
        assert got.dtype == np.float32 and got.shape == (length, 256)
        np.testing.assert_allclose(got, _kmer_brute_force(codes.tolist(), window), rtol=1e-6, atol=1e-5)


def test_kmer_by_hand():
    out = encode(decode_bases("ACGT"), "kmer")
    expected = np.zeros((4, 256), np.float32)
    expected[:, 27] = 256.0  # ACGT = 0*64 + 1*16 + 2*4 + 3
    np.testing.assert_array_equal(out, expected)
    # A window of 5 around t sees positions t-2..t+2: the middle of AAAAACCCCC sees AAAC and AACC ...
    out = encode(decode_bases("AAAAACCCCC"), "kmer", window=5)
    np.testing.assert_allclose(out[4, [1, 5]], [128, 128])  # AAAC (1), AACC (5)
    assert not out[0].any()  # the clipped window 0..2 holds no 4-mer
    np.testing.assert_allclose(out[1], 256 * np.eye(256)[0])  # window 0..3: AAAA only
    # k-mers containing N are skipped; rows with none are all zero.
    assert not encode(decode_bases("NNNNNNN"), "kmer").any()
    out = encode(decode_bases("ACGTNACGT"), "kmer", window=9)
    assert out[4, 27] == 256.0 and out[4].sum() == pytest.approx(256.0)


def test_kmer_rows_are_enrichments():
    codes = np.random.default_rng(1).integers(0, 4, size=2000).astype(np.uint8)
    out = encode(codes, "kmer")
    # Frequencies times 256: each row sums to 256, so the mean feature is 1.
    np.testing.assert_allclose(out.sum(1), 256.0, rtol=1e-5)
    # An interior window of 65 holds 62 k-mers.
    counts = out[100] * 62 / 256
    assert np.allclose(counts, np.round(counts), atol=1e-4)


def test_feature_dims_and_errors():
    assert FEATURE_KINDS == ("onehot", "kmer")
    assert feature_dim("onehot") == 5 and feature_dim("kmer") == 256
    with pytest.raises(ValueError, match="--features"):
        feature_dim("bpe")
    with pytest.raises(ValueError, match="--features"):
        encode(np.zeros(3, dtype=np.uint8), "bpe")
    with pytest.raises(ValueError, match="0..4"):
        encode(np.array([0, 5]), "onehot")
    with pytest.raises(ValueError, match="integer"):
        encode(np.array([0.0, 1.0]), "onehot")
    with pytest.raises(ValueError, match="odd"):
        encode(np.zeros(10, dtype=np.uint8), "kmer", window=8)


@pytest.mark.parametrize("kind", FEATURE_KINDS)
def test_encode_batch_equals_encode_row_by_row(kind):
    """The torch batch form is the numpy form of each row, zero past each row's length."""
    import torch

    from semicrf.genomics.features import encode_batch

    rng = np.random.default_rng(7)
    lengths = [150, 0, 3, 4, 97, 150]
    width = max(lengths)
    codes = np.full((len(lengths), width), 9, dtype=np.uint8)  # 9: garbage past each length must not matter
    rows = []
    for i, n in enumerate(lengths):
        row = rng.choice(5, size=n, p=[0.24, 0.24, 0.24, 0.24, 0.04]).astype(np.uint8)
        codes[i, :n] = row
        rows.append(row)
    got = encode_batch(torch.from_numpy(codes), torch.tensor(lengths), kind).numpy()
    assert got.shape == (len(lengths), width, feature_dim(kind)) and got.dtype == np.float32
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(got[i, :n], encode(rows[i], kind), rtol=1e-6, atol=1e-5)
        assert not got[i, n:].any()


def test_encode_batch_refuses_bad_codes():
    import torch

    from semicrf.genomics.features import encode_batch

    with pytest.raises(ValueError, match="0..4"):
        encode_batch(torch.tensor([[0, 5]]), torch.tensor([2]), "onehot")
    with pytest.raises(ValueError, match="lengths"):
        encode_batch(torch.tensor([[0, 1]]), torch.tensor([2, 2]), "kmer")
