"""The oracle: its scores against the generating model written out independently, brute force, the runner."""

import itertools
import json
import math

import numpy as np
import pytest
import torch

import semicrf
from semicrf.genomics import metrics, oracle
from semicrf.genomics import synthetic as syn
from semicrf.genomics.cli import main
from semicrf.genomics.dataset import generate_dataset, load_metadata
from semicrf.genomics.models import ModelConfig, build_model

# A generator small enough to enumerate: every law has a support of a few lengths.
SMALL = dict(
    intergenic=syn.DurationModel(3, 0.6, 2, 5),
    exon=syn.DurationModel(2, 0.5, 1, 3),
    intron=syn.DurationModel(4.5, 0.3, 4, 6),
)
SMALL5 = dict(SMALL, **{"5utr": syn.DurationModel(2, 0.4, 2, 3), "3utr": syn.DurationModel(2, 0.5, 2, 3)})
# Which class may follow which (C = 5): enumerating only these keeps the brute force small; the
# exon counts and everything else are left to generator_log_prob.
NEXT5 = {0: {3}, 3: {1}, 1: {2, 4}, 2: {1}, 4: {0}}


def _small_config(num_classes=3, exons=(2, 3), **kw):
    durations = dict(SMALL if num_classes == 3 else SMALL5)
    return syn.GeneratorConfig(num_classes=num_classes, seq_length=14, exons_per_gene=exons, durations=durations,
                               **kw)


# ----------------------------------------------------------------------------- the generator, written out
def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _p_len(law, d):
    """P(D = d) of clip(rint(lognormal)) straight from the normal CDF."""
    if not law.min <= d <= law.max:
        return 0.0
    mu, s = math.log(law.median), law.sigma
    lo = 0.0 if d == law.min else _phi((math.log(d - 0.5) - mu) / s)
    hi = 1.0 if d == law.max else _phi((math.log(d + 0.5) - mu) / s)
    return hi - lo


def _p_at_least(law, d):
    return sum(_p_len(law, x) for x in range(d, law.max + 1))


def generator_log_prob(config, codes, segments):
    """log P(segments, bases | sequence length) of the generator, from its definition (-inf if impossible).

    segments: list of (start, end, class); the last one is cut at the sequence end.
    """
    names = config.class_names
    lo, hi = config.exons_per_gene
    n_choices = hi - lo + 1
    L = len(codes)
    q = np.log(syn._composition(config.gc_content))
    logp = float(sum(q[codes]))  # random content: every base independent at gc_content ...
    # ... except the splice sites, which replace their bases' probability by 1 (or 0).
    if segments[0][2] != syn.INTERGENIC:
        return -math.inf
    kinds = [names[c] for _, _, c in segments]
    gene = ["exon", "intron"] if config.num_classes == 3 else ["5utr", "exon", "intron", "3utr"]
    exons = 0
    for i, ((s, e, c), kind) in enumerate(zip(segments, kinds)):
        last = i == len(segments) - 1
        law = config.durations[kind]
        p = _p_at_least(law, e - s) if last else _p_len(law, e - s)
        if p <= 0:
            return -math.inf
        logp += math.log(p)
        nxt = None if last else kinds[i + 1]
        # The grammar.
        if kind == "intergenic":
            exons = 0
            if nxt not in (None, gene[0]):
                return -math.inf
        elif kind == "5utr":
            if nxt not in (None, "exon"):
                return -math.inf
        elif kind == "exon":
            exons += 1
            if exons > hi:
                return -math.inf
            if nxt == "intron":
                logp += math.log(sum(1 for n in range(lo, hi + 1) if n > exons) / n_choices) if exons < hi else -math.inf
                logp -= math.log(sum(1 for n in range(lo, hi + 1) if n >= exons) / n_choices)
            elif nxt is not None:  # the gene ends here with exactly `exons` exons
                if nxt != ("intergenic" if config.num_classes == 3 else "3utr") or exons < lo:
                    return -math.inf
                logp += math.log(1 / n_choices) - math.log(sum(1 for n in range(lo, hi + 1) if n >= exons) / n_choices)
        elif kind == "intron":
            if nxt not in (None, "exon"):
                return -math.inf
            if config.splice_motifs:
                for pos, base in ((s, syn.G), (s + 1, syn.T)):
                    if pos < e:
                        logp += -q[codes[pos]] if codes[pos] == base else -math.inf
                if not last:
                    for pos, base in ((e - 2, syn.A), (e - 1, syn.G)):
                        logp += -q[codes[pos]] if codes[pos] == base else -math.inf
        elif kind == "3utr":
            if nxt not in (None, "intergenic"):
                return -math.inf
    return logp


def all_segmentations(config, L):
    """Every tiling of [0, L) without two same-class neighbours whose lengths its laws allow.

    Every segment but the last lies in its class's [min, max]; the last (cut) is 1..max long.
    The grammar is left to :func:`generator_log_prob`.
    """
    names = config.class_names
    out = []

    def grow(pos, segs):
        for c, name in enumerate(names):
            if segs and (segs[-1][2] == c or (len(names) == 5 and c not in NEXT5[segs[-1][2]])):
                continue
            law = config.durations[name]
            if L - pos <= law.max:
                out.append(segs + [(pos, L, c)])
            for d in range(law.min, min(law.max, L - pos - 1) + 1):
                grow(pos + d, segs + [(pos, pos + d, c)])

    grow(0, [])
    return out


def _labels(segments, L):
    lab = np.empty(L, dtype=np.int64)
    for s, e, c in segments:
        lab[s:e] = c
    return lab


# ----------------------------------------------------------------------------- duration laws
@pytest.mark.parametrize("law", [syn.DEFAULT_DURATIONS["exon"], syn.DEFAULT_DURATIONS["intron"], SMALL["intergenic"],
                                 syn.DurationModel(7, 1.5, 3, 9)])
def test_duration_law_matches_the_normal_cdf_with_its_clipped_point_masses(law):
    K = law.max + 5
    logp = oracle.duration_log_probs(law, K)
    for d in sorted({law.min, law.min + 1, (law.min + law.max) // 2, law.max - 1, law.max}):
        assert logp[d - 1] == pytest.approx(math.log(_p_len(law, d)), rel=1e-9, abs=1e-12)
    assert np.all(np.isneginf(logp[: law.min - 1])) and np.all(np.isneginf(logp[law.max:]))
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-12)
    surv = oracle.duration_log_survival(law, K)
    assert surv[0] == 0.0 and np.isneginf(surv[law.max])
    d = (law.min + law.max) // 2
    assert math.exp(surv[d - 1]) == pytest.approx(_p_at_least(law, d), rel=1e-9)


def test_duration_law_matches_the_sampler():
    law = syn.DurationModel(40, 0.7, 20, 80)  # heavy clipping at both ends
    draws = law.sample(np.random.default_rng(0), 200_000)
    freq = np.bincount(draws, minlength=81)[1:] / draws.size
    p = np.exp(oracle.duration_log_probs(law, 80))
    # Binomial standard errors: the point masses at 20 and 80 and the bulk agree within 5 sigma.
    se = np.sqrt(p * (1 - p) / draws.size) + 1e-12
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-6)
    assert p[19] > 0.1 and p[79] > 0.05


# ----------------------------------------------------------------------------- exactness on a small generator
@pytest.mark.parametrize("num_classes,exons,seed", [
    (3, (2, 3), 1), (3, (1, 2), 4),
    pytest.param(5, (1, 2), 2, marks=pytest.mark.slow),  # five classes: the brute force has many more tilings
])
def test_scores_are_the_generator_log_probabilities_and_viterbi_is_brute_force(num_classes, exons, seed):
    config = _small_config(num_classes, exons)
    tables = oracle.build_tables(config)
    assert tables.exon_levels == exons[1]  # random content with splice motifs: the exon count is exact
    seq = syn.generate_sequence(config, syn.sequence_seed(seed, 2, 0))
    codes, L = seq.codes.astype(np.int64), len(seq.codes)
    em, st, en = (torch.from_numpy(x)[None] for x in tables.scores(codes))
    args = dict(transitions=torch.from_numpy(tables.transitions), durations=torch.from_numpy(tables.durations),
                initial=torch.from_numpy(tables.initial), final=torch.from_numpy(tables.final),
                start_scores=st, end_scores=en)

    # Brute force over every tiling: the generator's own probability of each labelling.
    segs = [s for s in all_segmentations(config, L)]
    logps = np.array([generator_log_prob(config, codes, s) for s in segs])
    assert np.isfinite(logps).sum() >= 5  # a real contest
    true_lp = generator_log_prob(config, codes, [tuple(r) for r in seq.segments.tolist()])
    assert np.isfinite(true_lp)

    # log Z of the oracle is log P(bases | L): the log-sum of the generator's probabilities.
    log_z = semicrf.log_partition(em, **args, backend="reference").item()
    finite = logps[np.isfinite(logps)]
    assert log_z == pytest.approx(np.logaddexp.reduce(finite), abs=1e-9)
    # ... and each labelling's score is the generator's log-probability: an emission of -1e4
    # (probability 0 in float64) for every state of another class leaves the labelling's paths alone.
    cls = torch.from_numpy(tables.state_class)
    impossible = np.flatnonzero(~np.isfinite(logps))
    some = np.concatenate([np.flatnonzero(np.isfinite(logps)), np.random.default_rng(0).permutation(impossible)[:40]])
    for s, lp in ((segs[i], logps[i]) for i in some):
        off = cls[None, :] != torch.from_numpy(_labels(s, L))[:, None]
        score = semicrf.log_partition(em - 1e4 * off[None], **args, backend="reference").item()
        assert (score == pytest.approx(lp, abs=1e-9)) if np.isfinite(lp) else score < -5e3, (s, score, lp)

    # Viterbi (CPU engine, K = the longest law) is the brute-force best labelling.
    best = segs[int(np.argmax(logps))]
    pred = oracle.decode(tables, [codes], "viterbi")[0]
    np.testing.assert_array_equal(pred, _labels(best, L))
    # The posterior decoding is the argmax of the brute-force marginals.
    post = np.zeros((L, num_classes))
    w = np.exp(logps - log_z)
    for s, wi in zip(segs, w):
        post[np.arange(L), _labels(s, L)] += wi
    np.testing.assert_array_equal(oracle.decode(tables, [codes], "posterior")[0], post.argmax(1))


def test_without_splice_motifs_nothing_but_length_and_grammar_is_scored():
    config = _small_config(3, (2, 3), splice_motifs=False)
    tables = oracle.build_tables(config)
    em, st, en = tables.scores(np.array([0, 1, 2, 3, 2, 3, 0, 2], dtype=np.uint8))
    # No splice site: no state scores the bases where a segment starts or ends. The end scores only say
    # where a segment may end (0 or -inf), the same for any bases.
    assert np.all(st == 0)
    assert np.all((en == 0) | np.isneginf(en))
    _, st2, en2 = tables.scores(np.array([3, 3, 0, 2, 1, 0, 2, 3], dtype=np.uint8))
    assert np.array_equal(st2, st) and np.array_equal(en2, en)
    # Every state emits the same background composition.
    assert np.allclose(em, em[:, :1])


# ----------------------------------------------------------------------------- realistic content
def _true_state_path(tables, seq):
    """The expanded state of each true segment, from the generator's rules."""
    config, idx = tables.config, {s: i for i, s in enumerate(tables.states)}
    out, k, phase, coding = [], 0, None, 0
    n = len(seq.segments)
    for i, (s, e, c) in enumerate(seq.segments.tolist()):
        kind, last = config.class_names[c], i == n - 1
        if kind == "intergenic":
            k, coding = 0, 0
        if kind == "exon":
            k += 1
            phase = (s - coding) % 3
            coding += e - s
            st = oracle.State("exon", 1 if k == 1 else 2, phase, None, True) if last else \
                oracle.State("exon", min(k, tables.exon_levels), phase)
        elif kind == "intron":
            st = oracle.State("intron", 0, None, None, True) if last else \
                oracle.State("intron", min(k + 1, tables.exon_levels), phase, (e - s) % 3)
        else:
            st = oracle.State(kind, 0, None, None, True) if last else oracle.State(kind)
        out.append((s, e, idx[st]))
    return out


def _path_score(tables, em, st, en, path):
    score, prev = 0.0, None
    for s, e, j in path:
        score += em[s:e, j].sum() + tables.durations[e - s - 1, j] + st[s, j] + en[e - 1, j]
        score += tables.initial[j] if prev is None else tables.transitions[prev, j]
        prev = j
    return score + tables.final[prev]


@pytest.mark.parametrize("num_classes", [3, 5])
def test_realistic_truth_is_never_ruled_out(num_classes, monkeypatch):
    # Every true labelling keeps a finite score with no stop-codon penalty: the phases, the
    # first-exon frame and the stop rule agree with how the generator writes codons.
    config = syn.GeneratorConfig(num_classes=num_classes, content="realistic", seq_length=6000)
    tables = oracle.build_tables(config)
    for i in range(4):
        seq = syn.generate_sequence(config, syn.sequence_seed(5, 2, i))
        path = _true_state_path(tables, seq)
        score = _path_score(tables, *tables.scores(seq.codes), path)
        monkeypatch.setattr(oracle, "STOP_PENALTY", 0.0)
        no_penalty = _path_score(tables, *tables.scores(seq.codes), path)
        monkeypatch.undo()
        assert np.isfinite(score) and score == pytest.approx(no_penalty, abs=1e-6)


def test_realistic_exon_emissions_follow_the_codon_positions():
    config = syn.GeneratorConfig(content="realistic")
    tables = oracle.build_tables(config)
    rc = config.realistic
    codes = np.array([syn.G, syn.A, syn.T, syn.C, syn.T, syn.A, syn.G, syn.C, syn.C], dtype=np.int64)
    em, st, _ = tables.scores(codes)
    p = np.asarray(rc.codon_positions)
    p_stop = p[0, 3] * p[1, 0] * (p[2, 0] + p[2, 2]) + p[0, 3] * p[1, 2] * p[2, 0]  # TAA, TAG, TGA
    renorm = -math.log(1 - p_stop) / 3
    j = tables.states.index(oracle.State("exon", 2, 1))  # phase 1: position t is codon position (t - 1) mod 3
    for t in range(3):  # before the stop
        assert em[t, j] == pytest.approx(math.log(p[(t - 1) % 3, codes[t]]) + renorm)
    # T A G at positions 4..6 is in frame for phase 1 (4 - 1 = 3): its third base carries the penalty,
    # refunded for segments that start at 5 or 6.
    assert em[6, j] == pytest.approx(math.log(p[2, syn.G]) + renorm - oracle.STOP_PENALTY)
    assert st[5, j] == oracle.STOP_PENALTY and st[6, j] == oracle.STOP_PENALTY and st[4, j] == 0
    first = tables.states.index(oracle.State("exon", 1, 1))
    assert np.isneginf(st[[0, 2, 3, 5], first]).all() and st[1, first] == 0 and st[7, first] == 0


def test_config_round_trips_through_metadata(tmp_path):
    config = syn.GeneratorConfig(num_classes=5, content="realistic", seq_length=3000, gc_content=0.5)
    generate_dataset(tmp_path / "d", config, num_train=1, num_val=1, num_test=1, seed=1)
    assert oracle.config_from_metadata(load_metadata(tmp_path / "d")) == config
    with pytest.raises(ValueError, match="metadata"):
        oracle.config_from_metadata({"config": {"num_classes": 3}})


@pytest.mark.slow  # two runs of the run command
def test_oracle_reads_bases_when_the_run_uses_kmer_features(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, syn.GeneratorConfig(seq_length=3000, content="realistic"), num_train=2, num_val=1,
                     num_test=2, seed=5)
    runs = {}
    for kind in ("onehot", "kmer"):
        out = tmp_path / kind
        status = main(["run", "--data-dir", str(data), "--output-dir", str(out), "--models", "oracle",
                       "--features", kind, "--encoder", "bilstm", "--hidden-dim", "8", "--num-layers", "1",
                       "--device", "cpu", "--epochs", "1", "--no-progress"])
        assert status == 0
        runs[kind] = json.loads((out / "metrics.json").read_text())["models"]["oracle"]
    # The oracle ignores --features: the same bases, the same decoding, the same metrics.
    for key in ("boundary_f1", "segment_f1", "position_f1_macro", "duration_kl_mean"):
        assert runs["kmer"][key] == runs["onehot"][key], key


# ----------------------------------------------------------------------------- in the runner
@pytest.mark.slow  # a training run
def test_run_reports_the_oracle_above_a_learned_model(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, syn.GeneratorConfig(seq_length=3000, content="realistic"), num_train=4, num_val=2,
                     num_test=3, seed=11)
    out = tmp_path / "out"
    status = main(["run", "--data-dir", str(data), "--output-dir", str(out), "--models", "oracle,oracle_posterior,softmax",
                   "--encoder", "bilstm", "--hidden-dim", "8", "--num-layers", "1", "--batch-size", "2",
                   "--max-duration", "50", "--device", "cpu", "--epochs", "1", "--no-progress"])
    assert status == 0
    doc = json.loads((out / "metrics.json").read_text())
    rows = doc["models"]
    assert list(rows) == ["oracle", "oracle_posterior", "softmax"]
    assert rows["oracle"]["num_parameters"] == 0 and rows["oracle"]["max_duration"] == 20_000
    assert rows["oracle"]["boundary_f1"] >= rows["softmax"]["boundary_f1"]
    assert rows["oracle"]["boundary_f1"] > 0.3 and rows["oracle_posterior"]["position_f1_macro"] > 0.8
    assert (out / "predictions" / "oracle.gff3").is_file() and (out / "duration_comparison.png").is_file()
