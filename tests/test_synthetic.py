"""The generating model: duration laws, gene grammar, splice motifs, content signals, determinism."""

import itertools
import math

import numpy as np
import pytest

from semicrf.genomics.synthetic import (
    DEFAULT_DURATIONS,
    CLASS_NAMES,
    DurationModel,
    GeneratorConfig,
    RealisticContent,
    generate_sequences,
    sample_segments,
    sequence_seed,
)

IG, EX, IN, U5, U3 = range(5)
NUM_SEQ = 200


def _generate(n=NUM_SEQ, seed=7, **kw):
    return list(generate_sequences(GeneratorConfig(**kw), n, seed=seed))


@pytest.fixture(scope="module")
def random3():
    return _generate(num_classes=3)


@pytest.fixture(scope="module")
def random5():
    return _generate(num_classes=5)


@pytest.fixture(scope="module")
def realistic5():
    return _generate(num_classes=5, content="realistic")


@pytest.fixture(scope="module")
def realistic3():
    return _generate(num_classes=3, content="realistic")


def _normal_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2))


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize("name", sorted(DEFAULT_DURATIONS))
def test_duration_sampler_median_bounds_and_clip_masses(name):
    model = DEFAULT_DURATIONS[name]
    n = 200_000
    d = model.sample(np.random.default_rng(0), n)
    assert d.dtype == np.int64 and d.shape == (n,)
    assert abs(np.median(d) / model.median - 1) < 0.05
    assert d.min() >= model.min and d.max() <= model.max
    # Clipping puts the tails' mass on the bounds: P(d = max) = P(X >= max - 0.5) for the
    # unrounded log-normal X, P(d = min) = P(X < min + 0.5).
    mu = math.log(model.median)
    p_max = 1 - _normal_cdf((math.log(model.max - 0.5) - mu) / model.sigma)
    p_min = _normal_cdf((math.log(model.min + 0.5) - mu) / model.sigma)
    for observed, p in ((np.mean(d == model.max), p_max), (np.mean(d == model.min), p_min)):
        assert abs(observed - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-4


def test_spec_duration_table():
    # The spec's table, verbatim.
    assert DEFAULT_DURATIONS["exon"] == DurationModel(150, 0.5, 30, 500)
    assert DEFAULT_DURATIONS["intron"] == DurationModel(3000, 1.0, 100, 10_000)
    assert DEFAULT_DURATIONS["intergenic"] == DurationModel(5000, 0.8, 500, 20_000)


def test_duration_model_rejects_bad_parameters():
    with pytest.raises(ValueError, match="median"):
        DurationModel(0, 0.5, 1, 10)
    with pytest.raises(ValueError, match="sigma"):
        DurationModel(10, -1, 1, 10)
    with pytest.raises(ValueError, match="min"):
        DurationModel(10, 0.5, 20, 10)


# ---------------------------------------------------------------- structure


def _allowed_transitions(num_classes):
    if num_classes == 3:
        return {(IG, EX), (EX, IN), (IN, EX), (EX, IG)}
    return {(IG, U5), (U5, EX), (EX, IN), (IN, EX), (EX, U3), (U3, IG)}


@pytest.mark.parametrize("fixture", ["random3", "random5", "realistic5"])
def test_labels_tile_sequences_and_follow_the_grammar(fixture, request):
    seqs = request.getfixturevalue(fixture)
    num_classes = 5 if fixture.endswith("5") else 3
    cfg = GeneratorConfig(num_classes=num_classes)
    lo, hi = cfg.target_range()
    allowed = _allowed_transitions(num_classes)
    complete_exon_counts = []
    for s in seqs:
        L = s.codes.shape[0]
        assert s.codes.dtype == np.uint8 and s.labels.dtype == np.int64 and s.labels.shape == (L,)
        assert lo <= L <= hi  # within +-10 % of seq_length
        seg = s.segments
        # Segments tile [0, L) and agree with the labels position by position.
        assert seg[0, 0] == 0 and seg[-1, 1] == L and np.all(seg[1:, 0] == seg[:-1, 1])
        assert np.all(seg[:, 1] > seg[:, 0])
        expected = np.concatenate([np.full(e - b, c) for b, e, c in seg])
        np.testing.assert_array_equal(s.labels, expected)
        classes = seg[:, 2].tolist()
        assert classes[0] == IG
        assert set(zip(classes[:-1], classes[1:])) <= allowed
        # Every segment but the (cut) last one is a full draw within its class range.
        for b, e, c in seg[:-1]:
            m = cfg.durations[CLASS_NAMES[num_classes][c]]
            assert m.min <= e - b <= m.max
        assert seg[-1, 1] - seg[-1, 0] <= cfg.durations[CLASS_NAMES[num_classes][seg[-1, 2]]].max
        # Complete genes (followed by intergenic) have 2..8 exons and, for C=5, both UTRs at their ends.
        gene = []
        for c in classes[1:]:
            if c == IG:
                complete_exon_counts.append(gene.count(EX))
                if num_classes == 5:
                    assert gene[0] == U5 and gene[-1] == U3 and gene.count(U5) == gene.count(U3) == 1
                gene = []
            else:
                gene.append(c)
    assert complete_exon_counts and min(complete_exon_counts) >= 2 and max(complete_exon_counts) <= 8


def test_exons_per_gene_is_uniform_on_2_to_8():
    # With targets of at least 108 kb, a sequence's first gene (over by 94 kb at the latest) is
    # never cut, so its exon count is a plain draw from the grammar.
    cfg = GeneratorConfig(seq_length=120_000)
    rng = np.random.default_rng(3)
    counts = []
    for _ in range(1400):
        classes, _ = sample_segments(rng, cfg)
        first_gene_end = classes.tolist().index(IG, 1)
        counts.append(int(np.sum(classes[1:first_gene_end] == EX)))
    hist = np.bincount(counts, minlength=9)
    assert hist[:2].sum() == 0 and hist[9:].sum() == 0
    expected = len(counts) / 7
    chi2 = float(np.sum((hist[2:9] - expected) ** 2 / expected))
    assert chi2 < 22.5  # 6 degrees of freedom, p ~ 0.001


def test_c5_produces_both_utr_classes(random5):
    labels = np.concatenate([s.labels for s in random5])
    counts = np.bincount(labels, minlength=5)
    assert counts[U5] > 0 and counts[U3] > 0


def test_c3_has_only_three_classes(random3):
    assert max(int(s.labels.max()) for s in random3) == IN


# ---------------------------------------------------------------- splice motifs


def _introns(seqs):
    """(sequence, start, end, complete) of every intron."""
    for s in seqs:
        L = s.codes.shape[0]
        for b, e, c in s.segments:
            if c == IN:
                yield s, int(b), int(e), e < L


@pytest.mark.parametrize("fixture", ["random3", "random5", "realistic3", "realistic5"])
def test_gt_ag_at_every_intron_when_motifs_on(fixture, request):
    n_complete = 0
    for s, b, e, complete in _introns(request.getfixturevalue(fixture)):
        assert "".join("ACGTN"[x] for x in s.codes[b : min(b + 2, e)]) == "GT"[: e - b]
        if complete:
            n_complete += 1
            assert "".join("ACGTN"[x] for x in s.codes[e - 2 : e]) == "AG"
    assert n_complete > 100


def test_gt_ag_absent_as_a_rule_when_motifs_off():
    seqs = _generate(num_classes=3, splice_motifs=False)
    donors = [s.codes[b : b + 2].tolist() == [2, 3] for s, b, e, complete in _introns(seqs) if e - b >= 2]
    both = [
        s.codes[b : b + 2].tolist() == [2, 3] and s.codes[e - 2 : e].tolist() == [0, 2]
        for s, b, e, complete in _introns(seqs)
        if complete
    ]
    # Independent bases at GC 0.42: P(GT) = 0.21 * 0.29 ~ 0.06, P(GT...AG) ~ 0.004.
    assert len(donors) > 100
    assert np.mean(donors) < 0.15 and np.mean(both) < 0.03


# ---------------------------------------------------------------- content


def _gc(codes):
    return float(np.mean((codes == 1) | (codes == 2)))


def _class_bases(seqs, cls, margin=25):
    """Bases of class ``cls`` at least ``margin`` from the ends of their segment (avoids splice sites)."""
    parts = []
    for s in seqs:
        for b, e, c in s.segments:
            if c == cls and e - b > 2 * margin:
                parts.append(s.codes[b + margin : e - margin])
    return np.concatenate(parts)


def test_random_content_is_uniform_across_classes(random3):
    for cls in (IG, EX, IN):
        bases = _class_bases(random3, cls, margin=2 if cls == EX else 25)
        sd = math.sqrt(0.42 * 0.58 / bases.size)
        assert abs(_gc(bases) - 0.42) < 5 * sd + 1e-3
    # No codon structure: composition is the same at the three frame positions of exons.
    frames = _coding_frames(random3)
    gcs = [_gc(f) for f in frames]
    assert max(gcs) - min(gcs) < 0.03


def _genes(s):
    """Lists of segments of each gene (maximal non-intergenic run) of a sequence."""
    genes, cur = [], []
    for row in s.segments:
        if row[2] == IG:
            if cur:
                genes.append(cur)
            cur = []
        else:
            cur.append(row)
    if cur:
        genes.append(cur)
    return genes


def _coding_strings(seqs):
    """Per gene, the concatenated exon-labelled bases (the coding sequence, frame 0 first)."""
    for s in seqs:
        for gene in _genes(s):
            parts = [s.codes[b:e] for b, e, c in gene if c == EX]
            if parts:
                yield np.concatenate(parts)


def _coding_frames(seqs):
    frames = [[], [], []]
    for cds in _coding_strings(seqs):
        for f in range(3):
            frames[f].append(cds[f::3])
    return [np.concatenate(f) for f in frames]


def _expected_codon_position_marginals(rc):
    p = np.zeros((3, 4))
    stops = {"TAA", "TAG", "TGA"}
    total = 0.0
    for codon in itertools.product(range(4), repeat=3):
        if "".join("ACGT"[b] for b in codon) in stops:
            continue
        w = rc.codon_positions[0][codon[0]] * rc.codon_positions[1][codon[1]] * rc.codon_positions[2][codon[2]]
        total += w
        for pos, b in enumerate(codon):
            p[pos, b] += w
    return p / total


@pytest.mark.parametrize("fixture", ["realistic3", "realistic5"])
def test_realistic_codon_structure(fixture, request):
    seqs = request.getfixturevalue(fixture)
    stops = 0
    n_codons = 0
    for cds in _coding_strings(seqs):
        full = cds[: cds.size // 3 * 3].reshape(-1, 3)
        n_codons += full.shape[0]
        words = ["".join("ACGT"[b] for b in row) for row in full]
        stops += sum(w in ("TAA", "TAG", "TGA") for w in words)
    assert n_codons > 10_000 and stops == 0  # an open reading frame through every gene
    expected = _expected_codon_position_marginals(RealisticContent())
    for f, bases in enumerate(_coding_frames(seqs)):
        observed = np.bincount(bases, minlength=4)[:4] / bases.size
        sd = np.sqrt(expected[f] * (1 - expected[f]) / bases.size)
        assert np.all(np.abs(observed - expected[f]) < 5 * sd + 1e-3), (f, observed, expected[f])
    gc = [_gc(b) for b in _coding_frames(seqs)]
    assert gc[2] - gc[1] > 0.15  # the 3-periodic signal is strong


def test_realistic_gc_contrast(realistic5):
    rc = RealisticContent()
    expected_exon_gc = float(_expected_codon_position_marginals(rc)[:, 1:3].sum(1).mean())
    for cls, gc, margin in (
        (IG, 0.42, 25),
        (IN, rc.intron_gc, 25),
        (EX, expected_exon_gc, 0),
        (U5, rc.utr5_gc, 0),
        (U3, rc.utr3_gc, 0),
    ):
        bases = _class_bases(realistic5, cls, margin=margin)
        sd = math.sqrt(gc * (1 - gc) / bases.size)
        # Codon draws are correlated within a codon; allow for it with a wider band.
        assert abs(_gc(bases) - gc) < 6 * sd + 2e-3, (cls, _gc(bases), gc)
    assert expected_exon_gc - rc.intron_gc > 0.1


def test_realistic_splice_consensus_and_polypyrimidine_tract(realistic3):
    rc = RealisticContent()
    donor, acceptor3, ppt, background = [], [], [], []
    for s, b, e, complete in _introns(realistic3):
        if complete:
            donor.append(s.codes[b + 2 : b + 6])
            acceptor3.append(s.codes[e - 3])
            ppt.append(s.codes[e - rc.ppt_far : e - rc.ppt_near + 1])
            background.append(s.codes[b + 30 : e - 30])
    donor = np.array(donor)
    n = donor.shape[0]
    assert n > 300
    for j in range(4):
        observed = np.bincount(donor[:, j], minlength=4)[:4] / n
        expected = np.asarray(rc.donor[j])
        assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected * (1 - expected) / n) + 1e-3)
    observed = np.bincount(np.array(acceptor3), minlength=4)[:4] / n
    expected = np.asarray(rc.acceptor[0])
    assert np.all(np.abs(observed - expected) < 5 * np.sqrt(expected * (1 - expected) / n) + 1e-3)
    ppt = np.concatenate(ppt)
    pyrimidine = np.mean((ppt == 1) | (ppt == 3))
    expected_y = rc.ppt[1] + rc.ppt[3]
    assert abs(pyrimidine - expected_y) < 5 * math.sqrt(expected_y * (1 - expected_y) / ppt.size)
    background = np.concatenate(background)
    assert pyrimidine - np.mean((background == 1) | (background == 3)) > 0.25


def test_random_content_has_no_consensus_beyond_gt_ag(random3):
    donor = np.array([s.codes[b + 2 : b + 6] for s, b, e, complete in _introns(random3) if complete])
    # Position +5 is G in 80 % of realistic donors; here it is background (0.21).
    assert abs(np.mean(donor[:, 2] == 2) - 0.21) < 0.06


# ---------------------------------------------------------------- determinism


def test_same_seed_same_sequences_and_prefix_stable():
    cfg = GeneratorConfig(num_classes=5, content="realistic", seq_length=5000)
    a = list(generate_sequences(cfg, 6, seed=11))
    b = list(generate_sequences(cfg, 3, seed=11))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.codes, y.codes)
        np.testing.assert_array_equal(x.labels, y.labels)
    c = list(generate_sequences(cfg, 3, seed=12))
    assert not all(np.array_equal(x.labels, y.labels) for x, y in zip(a, c))
    # Splits draw from separate streams.
    d = list(generate_sequences(cfg, 3, seed=11, split_index=1))
    assert not all(np.array_equal(x.labels, y.labels) for x, y in zip(a, d))


def test_content_flags_change_bases_not_labels():
    base = list(generate_sequences(GeneratorConfig(seq_length=5000), 4, seed=5))
    for kw in ({"content": "realistic"}, {"splice_motifs": False}):
        other = list(generate_sequences(GeneratorConfig(seq_length=5000, **kw), 4, seed=5))
        for x, y in zip(base, other):
            np.testing.assert_array_equal(x.labels, y.labels)
        assert not all(np.array_equal(x.codes, y.codes) for x, y in zip(base, other))


# ---------------------------------------------------------------- validation


def test_config_rejects_bad_values_with_the_flag_name():
    with pytest.raises(ValueError, match="--num-classes"):
        GeneratorConfig(num_classes=4)
    with pytest.raises(ValueError, match="--content"):
        GeneratorConfig(content="rich")
    with pytest.raises(ValueError, match="--seq-length"):
        GeneratorConfig(seq_length=300)
    with pytest.raises(ValueError, match="exons_per_gene"):
        GeneratorConfig(exons_per_gene=(3, 2))
    with pytest.raises(ValueError, match="--seed"):
        sequence_seed(-1, 0, 0)


@pytest.mark.parametrize("num_classes", [3, 5])
def test_shortest_allowed_length_holds_one_gene(num_classes):
    cfg = GeneratorConfig(num_classes=num_classes)
    d = cfg.durations
    unit = d["intergenic"].min + 2 * d["exon"].min + d["intron"].min
    if num_classes == 5:
        unit += d["5utr"].min + d["3utr"].min
    shortest = math.ceil(unit / 0.9)
    assert cfg.min_seq_length() == shortest
    # The shortest target of the shortest allowed length (-10 %) still fits the shortest gene unit.
    assert GeneratorConfig(num_classes=num_classes, seq_length=shortest).target_range()[0] >= unit
    with pytest.raises(ValueError, match=f"--seq-length {shortest}"):
        GeneratorConfig(num_classes=num_classes, seq_length=shortest - 1)
    seqs = list(generate_sequences(GeneratorConfig(num_classes=num_classes, seq_length=shortest), 20, seed=1))
    assert all(s.codes.size >= math.ceil(0.9 * shortest) for s in seqs)
