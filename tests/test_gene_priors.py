"""semicrf_gene's start from counts (gene_priors): each estimate against hand counts and brute force, and
the model's content and site tables against the scores they should give."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semicrf.genomics import gene_priors as gp
from semicrf.genomics.gene_grammar import REAL, SYNTHETIC
from semicrf.genomics.models import ModelConfig, build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _split(pairs):
    return SimpleNamespace(sequences=[np.array(c, np.uint8) for c, _ in pairs],
                           labels=[np.array(y, np.int64) for _, y in pairs])


def test_kmer_index_is_the_bases_before_t_in_base_4():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, (3, 40))
    lengths = np.array([40, 33, 5])
    got = gp.kmer_index(torch.from_numpy(codes), torch.from_numpy(lengths), 3).numpy()
    for b in range(3):
        for t in range(40):
            window = [codes[b, u] if 0 <= u < lengths[b] else 4 for u in range(t - 2, t + 1)]
            want = 64 if max(window) >= 4 else 16 * window[0] + 4 * window[1] + window[2]
            assert got[b, t] == want, (b, t)


def test_codon_columns_count_each_gene_from_its_start_on_either_strand():
    # intergenic 0, exon+ 1, intron+ 2, exon- 3, intron- 4: a + gene of exons 4 and 3 bases around an
    # intron, then a - gene of exons 2 and 5 bases, read from the right.
    y = np.array([0, 1, 1, 1, 1, 2, 2, 1, 1, 1, 0, 3, 3, 4, 4, 4, 3, 3, 3, 3, 3, 0])
    want = np.array([-1, 0, 1, 2, 0, -1, -1, 1, 2, 0, -1, 3 + 0, 3 + 2, -1, -1, -1, 3 + 1, 3 + 0, 3 + 2, 3 + 1, 3 + 0, -1])
    assert np.array_equal(gp.codon_columns(y, REAL), want)
    # the synthetic layout has one strand: a gene cut by the sequence's start counts from its first base
    y3 = np.array([1, 1, 2, 1, 1, 1, 0, 1])
    assert np.array_equal(gp.codon_columns(y3, SYNTHETIC), [0, 1, -1, 2, 0, 1, -1, 0])


def test_an_order_zero_chain_is_smoothed_frequencies_counted_by_hand():
    counts = np.array([[2.0, 4.0], [2.0, 3.0], [1.0, 2.0], [0.0, 1.0]])  # A C G T in two columns
    chain = gp.interpolated_chain(counts, 1, smoothing=8.0)
    np.testing.assert_allclose(chain, np.log((counts + 2.0) / (counts.sum(0) + 8.0)))  # (N(x) + 8/4) / (N + 8)


def test_content_odds_are_each_columns_chain_less_the_backgrounds():
    codes = [0, 1, 0, 1, 2, 3, 0, 0, 1, 2] * 3
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 0, 0] * 3
    table, smoothing = gp.content_log_odds(_split([(codes, labels)] * 2), SYNTHETIC, k=1)
    assert table.shape == (5, 3 + 3) and smoothing.shape == (3 + 3 + 1,)
    counts = np.zeros((4, 7))  # intergenic, exon, intron, codon positions 0..2, everything
    for base, label, col in zip(codes, labels, gp.codon_columns(np.array(labels), SYNTHETIC)):
        counts[base, [label, 6]] += 2
        if col >= 0:
            counts[base, 3 + col] += 2
    chains = np.stack([gp.interpolated_chain(counts[:, [j]], 1, smoothing[j])[:, 0] for j in range(7)], 1)
    for j in (0, 2, 3, 4, 5):
        np.testing.assert_allclose(table[:4, j], chains[:, j] - chains[:, 6])
    assert np.all(table[:, 1] == 0) and np.all(table[4] == 0)  # the exon column; the N row


def test_held_out_smoothing_is_light_for_structure_and_heavy_for_noise():
    rng = np.random.default_rng(4)
    k = 3
    # column 0: a deterministic chain (each 2-base context has one next base), many counts: the long
    # context predicts held-out data; column 1: bases drawn independently, few counts: it does not.
    halves = np.zeros((2, 4 ** k, 2))
    for h in range(2):
        for _ in range(4000):
            ctx = rng.integers(0, 16)
            halves[h, 4 * ctx + (ctx * 7 + 3) % 4, 0] += 1
        for _ in range(60):
            halves[h, rng.integers(0, 4 ** k), 1] += 1
    smoothing = gp.held_out_smoothing(halves, k)
    assert smoothing[0] == min(gp.CONTENT_SMOOTHING_CHOICES)
    assert smoothing[1] >= 256


def _interpolated_brute(counts, k, ctx, x, col, smoothing):
    """P(x | ctx) of the interpolated chain by its definition, from the k-mer counts."""
    if ctx is None:
        return 0.25
    m = len(ctx)
    n_ctx = n_x = 0.0
    for index in range(4 ** k):
        bases = [(index >> (2 * (k - 1 - j))) & 3 for j in range(k)]
        if tuple(bases[k - 1 - m:k - 1]) == ctx:
            n_ctx += counts[index, col]
            n_x += counts[index, col] * (bases[-1] == x)
    below = _interpolated_brute(counts, k, ctx[1:] if m else None, x, col, smoothing)
    return (n_x + smoothing * below) / (n_ctx + smoothing)


def test_interpolated_chain_is_its_recursive_definition_and_normalised():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, (4 ** 3, 2)).astype(float)
    counts[5:9] = 0  # a context never seen falls back on the shorter one
    chain = gp.interpolated_chain(counts, 3, smoothing=8.0)
    np.testing.assert_allclose(np.exp(chain).reshape(-1, 4, 2).sum(1), 1.0, rtol=1e-12)
    for ctx, x, col in [((2, 1), 3, 1), ((0, 0), 0, 0), ((0, 1), 2, 1), ((3, 2), 1, 0)]:
        index = 16 * ctx[0] + 4 * ctx[1] + x
        want = _interpolated_brute(counts, 3, ctx, x, col, 8.0)
        assert np.exp(chain[index, col]) == pytest.approx(want, rel=1e-12), (ctx, x, col)


def test_content_columns_are_chains_against_the_background():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 4, 300), rng.integers(0, 5, 300)) for _ in range(3)]
    k = 3
    table, smoothing = gp.content_log_odds(_split(pairs), REAL, k=k)
    counts = np.zeros((4 ** k, 1))
    for c, _ in pairs:
        idx = gp.kmer_index(torch.from_numpy(np.asarray(c))[None], torch.tensor([len(c)]), k)[0].numpy()
        np.add.at(counts, (idx[idx < 4 ** k], 0), 1)
    background = gp.interpolated_chain(counts, k, smoothing[-1])[:, 0]
    for col in [0, 2, 4, 5, 6, 7, 8, 9, 10]:  # every column but the exon classes' (zeros)
        p = np.exp(table[:4 ** k, col] + background).reshape(-1, 4).sum(1)
        np.testing.assert_allclose(p, 1.0, rtol=1e-12)


def test_site_positions_are_every_runs_ends_but_the_sequences():
    y = np.array([1, 1, 0, 1, 1, 2, 2, 1, 0, 3, 4, 4, 3, 3, 0, 0])
    starts, ends = gp.site_positions(y)
    assert sorted(map(tuple, starts)) == [(0, 2), (0, 8), (0, 14), (1, 3), (1, 7), (2, 5), (3, 9), (3, 12), (4, 10)]
    assert sorted(map(tuple, ends)) == [(0, 2), (0, 8), (1, 1), (1, 4), (1, 7), (2, 6), (3, 9), (3, 13), (4, 11)]
    # With the exon classes' sites at a gene's ends only: exon starts after intergenic, ends before it.
    starts, ends = gp.site_positions(y, (1, 3))
    assert sorted(map(tuple, starts)) == [(0, 2), (0, 8), (0, 14), (1, 3), (2, 5), (3, 9), (4, 10)]
    assert sorted(map(tuple, ends)) == [(0, 2), (0, 8), (1, 1), (1, 7), (2, 6), (3, 13), (4, 11)]


def test_exon_sites_at_gene_ends_only_leave_the_junctions_to_the_intron():
    # Two genes: exon 2..4, intron 5..6, exon 7..8 | exon 11..12 | ... With exon_junctions=False the exon
    # class's tables count only the start at 2 and 11 and the end at 8 and 12; the intron's are unchanged.
    codes = [0, 2, 3, 1, 0, 2, 1, 3, 3, 0, 2, 1, 0, 2, 3]
    labels = [0, 0, 1, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 0, 0]
    both = gp.site_log_odds(_split([(codes, labels)]), 3, left=1, right=1, pseudocount=0.5)
    ends_only = gp.site_log_odds(_split([(codes, labels)]), 3, left=1, right=1, pseudocount=0.5,
                                 exon_junctions=False)
    np.testing.assert_array_equal(both[:, 2], ends_only[:, 2])
    np.testing.assert_array_equal(both[:, 0], ends_only[:, 0])
    # The exon's start matrix from the starts at 2 (G T C) and 11 (A C A) alone, against the same classes
    # around them (0 before, 1 at and after): the junction start at 7 (C T T) is left out.
    lab, cod = np.array(labels), np.array(codes)
    comp = np.stack([np.bincount(cod[lab == c], minlength=4) + 0.5 for c in range(3)])
    comp /= comp.sum(1, keepdims=True)
    rows = np.full((3, 4), 0.5)
    for at in (2, 11):
        rows[np.arange(3), cod[at - 1:at + 2]] += 1
    want = np.log(rows / rows.sum(1, keepdims=True)) - np.log(comp[[0, 1, 1]])
    np.testing.assert_allclose(ends_only[0, 1], want)
    assert not np.allclose(both[0, 1], want)  # with the junction counted it differs


def test_site_odds_are_the_bases_around_run_ends_against_the_classes_there_counted_by_hand():
    codes = [0, 2, 3, 1, 0, 2]  # A G T C A G
    labels = [0, 0, 1, 1, 1, 0]  # class 1 starts at 2 and ends at 4; class 0 ends at 1 and starts at 5
    lp = gp.site_log_odds(_split([(codes, labels)]), 3, left=1, right=1, pseudocount=0.5)
    # each class's composition (pseudocount 0.5): class 0 reads A G G, class 1 T C A
    comp = {0: np.array([1.5, 0.5, 2.5, 0.5]) / 5.0, 1: np.array([1.5, 1.5, 0.5, 1.5]) / 5.0}

    def pwm(bases, classes):  # the site's bases against the composition of the class at each offset
        rows = np.full((len(bases), 4), 0.5)
        rows[np.arange(len(bases)), bases] += 1
        return np.log(rows / rows.sum(1, keepdims=True)) - np.log(np.stack([comp[c] for c in classes]))

    np.testing.assert_allclose(lp[0, 1], pwm([2, 3, 1], [0, 1, 1]))  # start of class 1 at 2: G T C
    np.testing.assert_allclose(lp[1, 1], pwm([1, 0, 2], [1, 1, 0]))  # end of class 1 at 4: C A G
    np.testing.assert_allclose(lp[1, 0], pwm([0, 2, 3], [0, 0, 1]))  # end of class 0 at 1: A G T
    # the start of class 0 at 5 reads A, G and a base past the end (neither counted nor compared)
    np.testing.assert_allclose(lp[0, 0, :2], pwm([0, 2], [1, 0]))
    np.testing.assert_allclose(lp[0, 0, 2], np.log(0.25) - np.log(0.25))
    assert np.all(lp[:, 2] == 0)  # class 2 has no run: no site


def test_duration_laws_are_the_gold_pieces_lengths():
    # Runs of class 1 of length 5 (x3) and 9, class 0 around them; K = 6 cuts the 9 into 5 and 4.
    y = np.array([0] * 2 + [1] * 5 + [0] * 2 + [1] * 5 + [0] * 2 + [1] * 5 + [0] * 2 + [1] * 9 + [0] * 2)
    split = _split([(np.zeros_like(y), y)])
    seen = []

    def column(cls, long_run):
        seen.append((cls, long_run))
        return 2 if long_run else cls

    laws = gp.duration_log_laws(split, 6, column, 3, pseudocount=0.0)
    assert laws.shape == (6, 3)
    np.testing.assert_allclose(np.exp(laws[:, [0, 1, 2]]).sum(0)[:2], 1.0)
    assert np.argmax(laws[:, 1]) == 4  # length 5, three whole runs
    assert np.argmax(laws[:, 0]) == 1  # length 2
    assert (1, True) in seen and seen.count((1, True)) == 2  # the 9-run's two pieces
    assert np.exp(laws[3:5, 2]).sum() > 0.5  # its pieces are 5 and 4


def _gene_model(start="counts", C=5, K=20):
    cfg = ModelConfig(input_dim=5, num_classes=C, encoder="bilstm", hidden_dim=8, num_layers=1, max_duration=K,
                      backend="cpu", mixed_precision=False, gene_start=start)
    return build_model("semicrf_gene", cfg)


def _fly_like_split(seed=0, n=6, L=400):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        y = np.zeros(L, np.int64)
        y[100:160], y[160:220], y[220:300] = 1, 2, 1
        pairs.append((rng.integers(0, 4, L), y))
    return _split(pairs)


def test_the_model_starts_from_the_counts_and_its_site_scores_read_the_weight_matrices():
    split = _fly_like_split()
    model = _gene_model()
    model.initialise(split)
    content, _ = gp.content_log_odds(split, REAL)
    sites = gp.site_log_odds(split, 5)
    np.testing.assert_allclose(model.content.weight.detach().numpy(), content, rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(model.emission.weight) == 0 and torch.count_nonzero(model.emission.bias) == 0
    assert torch.allclose(model.crf.durations.exp().sum(0), torch.ones(model.crf.durations.shape[1]))
    # The site scores at t are the sum over offsets of the matrix entry of the base there (N and past the
    # ends add nothing).
    codes = torch.from_numpy(np.random.default_rng(5).integers(0, 5, (1, 60)))
    lengths = torch.tensor([55])
    with torch.no_grad():
        start, end = model.site_scores(codes, lengths)
    for t in (0, 7, 30, 54):
        for c in range(5):
            for side, got in ((0, start), (1, end)):
                want = sum(sites[side, c, o + gp.SITE_LEFT, codes[0, t + o]]
                           for o in range(-gp.SITE_LEFT, gp.SITE_RIGHT + 1)
                           if 0 <= t + o < 55 and codes[0, t + o] < 4)
                assert float(got[0, t, c]) == pytest.approx(want, abs=1e-4), (t, c, side)


def test_a_zeros_start_leaves_the_tables_at_zero():
    model = _gene_model("zeros")
    model.initialise(_fly_like_split())
    assert torch.count_nonzero(model.content.weight) == 0 and torch.count_nonzero(model.sites.weight) == 0
    assert torch.count_nonzero(model.crf.durations) == 0


def test_a_checkpoint_from_before_the_content_and_site_tables_loads_with_them_at_zero():
    model = _gene_model()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith(("content.", "sites."))}
    fresh = _gene_model()
    fresh.initialise(_fly_like_split())
    fresh.load_state_dict(old)
    assert torch.count_nonzero(fresh.content.weight) == 0 and torch.count_nonzero(fresh.sites.weight) == 0


@pytest.mark.slow
@pytest.mark.parametrize("start", ["counts", "zeros"])
def test_the_run_starts_semicrf_gene_from_the_training_splits_counts(tmp_path, start):
    from semicrf.genomics.cli import main
    from semicrf.genomics.dataset import generate_dataset, load_split
    from semicrf.genomics.synthetic import GeneratorConfig

    data = tmp_path / "data"
    generate_dataset(data, GeneratorConfig(seq_length=3000, content="realistic"), num_train=3, num_val=1,
                     num_test=1, seed=5)
    out = tmp_path / "run"
    # One step at a negligible learning rate: the checkpoint holds the start.
    status = main(["run", "--data-dir", str(data), "--output-dir", str(out), "--models", "semicrf_gene",
                   "--encoder", "bilstm", "--hidden-dim", "4", "--num-layers", "1", "--max-duration", "40",
                   "--batch-size", "3", "--epochs", "1", "--lr", "1e-12", "--device", "cpu", "--threads", "1",
                   "--no-progress", "--gene-start", start, "--step-budget", "semicrf_gene=1"])
    assert status == 0
    state = torch.load(out / "checkpoints" / "semicrf_gene_last.pt", weights_only=False)["state_dict"]
    want = gp.content_log_odds(load_split(data, "train"), SYNTHETIC)[0] if start == "counts" else 0.0
    np.testing.assert_allclose(state["content.weight"].numpy(), want, atol=1e-5)


def test_transitions_are_the_gold_pieces_successions_counted_by_hand():
    # K = 4: the intergenic run of 6 is two pieces (0 -> 0 once); the pieces' classes are 0 0 1 2 1 0
    # and 1 0: 0 -> 0, 0 -> 1, 1 -> 2, 2 -> 1, 1 -> 0 twice
    split = _split([(np.zeros(14), [0] * 6 + [1, 1, 2, 2, 2, 1, 0, 0]), (np.zeros(3), [1, 0, 0])])
    trans, initial, final = gp.transition_log_probabilities(split, 3, 4, pseudocount=0.0)
    counts = np.array([[1, 1, 0], [2, 0, 1], [0, 1, 0]], float)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(trans, np.log(counts / counts.sum(1, keepdims=True)))
        np.testing.assert_allclose(initial, np.log([1 / 2, 1 / 2, 0]))
        np.testing.assert_allclose(final, np.log([1, 0, 0]))


def test_grid_start_scores_a_long_run_by_its_length_wherever_the_grid_falls():
    # --gene-long-runs grid: the counting start scores a run of at most K by log P(L = d) (its share of the
    # runs times its law) and a longer one by the geometric tail lam L + beta fitted to the runs longer than
    # K, through tail pieces of lam d + beta and continuations of -beta; counted by hand on three genes.
    from semicrf.genomics.gene_crf import GeneGrammar, long_run_states

    K = 4
    # intergenic runs (not cut by an end): 2 (short) and 9 (long, excess 5); intron runs: 3 (short), 6 and 8
    # (long, excesses 2 and 4); exons of 2.
    y = [0, 0, 1, 1, 2, 2, 2, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1,
         2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 0]
    split = _split([([0] * len(y), y)])
    grammar = GeneGrammar(K, "cpu", 3, **long_run_states("grid"))
    durations, transitions, initial, final = gp.grid_start(split, K, 3, grammar.duration_column,
                                                           grammar.durations.shape[1])
    tails = gp.geometric_tails(split, K, grammar.duration_column, grammar.durations.shape[1])
    half = gp.TRANSITION_PSEUDOCOUNT
    for cls, short, excesses in ((0, 1, [5]), (2, 1, [2, 4])):
        tail, plain = grammar.duration_column(cls, True), grammar.duration_column(cls, False)
        share = (short + half) / (short + len(excesses) + 2 * half)
        mean = (sum(excesses) + K) / (len(excesses) + 1)  # one pseudo-run of excess K
        lam = np.log(1 - 1 / mean)
        beta = np.log(1 - share) + np.log(1 / mean) - (K + 1) * lam
        assert tails[tail] == pytest.approx((np.log(share), lam, beta))
        np.testing.assert_allclose(durations[:, tail], lam * np.arange(1, K + 1) + beta)
        assert transitions[cls, cls] == pytest.approx(-beta)
        # The runs of at most K: their law (which sums to one over 1..K) times their share.
        assert np.exp(durations[:, plain]).sum() == pytest.approx(share)
        # A run of L > K cut on the grid anywhere: its pieces and continuations score lam L + beta.
        for L in (K + 1, 2 * K, 3 * K + 2):
            for offset in range(K):
                ends = sorted({0, L} | {g - offset for g in range(K, L + offset, K) if 0 < g - offset < L})
                pieces = np.diff(ends)
                score = durations[pieces - 1, tail].sum() + (len(pieces) - 1) * transitions[cls, cls]
                assert score == pytest.approx(lam * L + beta), (cls, L, offset)
    # Transitions between classes are those of consecutive runs: intron -> exon always.
    assert transitions[2, 1] == pytest.approx(np.log((3 + half) / (3 + 2 * half)))
