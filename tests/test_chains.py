"""``semicrf-bench chain``: loci joined by filler made of their own split's flanks."""

import json

import numpy as np
import pytest

from semicrf.genomics.chains import ChainConfig, chain_dataset, flanks
from semicrf.genomics.cli import main
from semicrf.genomics.dataset import SPLITS, Split, generate_dataset, load_split
from semicrf.genomics.gene_structures import labels_to_genes
from semicrf.genomics.importer import AnnotationError, write_dataset
from semicrf.genomics.synthetic import GeneratorConfig

I, EP, IP, EM, IM = range(5)


def locus(rng, left, right, exons, strand="+"):
    """A locus: ``left`` intergenic bases, a gene of ``exons`` (lengths, introns of 7 between), ``right``."""
    exon, intron = (EP, IP) if strand == "+" else (EM, IM)
    labels = [I] * left
    for k, n in enumerate(exons):
        if k:
            labels += [intron] * 7
        labels += [exon] * n
    labels += [I] * right
    return rng.integers(0, 4, len(labels)).astype(np.uint8), np.array(labels, dtype=np.int64)


def make_split(rng, prefix, count):
    seqs, labs, names = [], [], []
    for i in range(count):
        s, lab = locus(rng, int(rng.integers(0, 12)), int(rng.integers(0, 12)),
                       [int(x) for x in rng.integers(3, 9, int(rng.integers(1, 4)))], "+-"[i % 2])
        seqs.append(s)
        labs.append(lab)
        names.append(f"{prefix}{i}")
    return Split(seqs, labs, names)


@pytest.fixture()
def imported(tmp_path):
    rng = np.random.default_rng(11)
    splits = {"train": make_split(rng, "tr", 9), "val": make_split(rng, "va", 4), "test": make_split(rng, "te", 3)}
    path = tmp_path / "loci"
    write_dataset(path, splits, {"source": "imported", "generator": None, "inputs": {}}, seed=1)
    return path, splits


def is_flank_pieces(filler, pool):
    """Whether ``filler`` is whole pieces of ``pool`` followed by at most one cut (a prefix of a piece)."""
    n = len(filler)
    reach = np.zeros(n + 1, dtype=bool)
    reach[0] = True
    for p in range(n):
        if not reach[p]:
            continue
        for piece in pool:
            m = min(len(piece), n - p)
            if np.array_equal(filler[p:p + m], piece[:m]) and (m == len(piece) or p + m == n):
                reach[p + m] = True
    return bool(reach[n])


def test_every_locus_is_kept_and_the_fillers_are_the_splits_own_flanks(imported, tmp_path):
    path, original = imported
    out = tmp_path / "chains"
    meta = chain_dataset(path, out, ChainConfig(loci=2, filler_mean=20.0, seed=3))
    assert meta["splits"] == {"train": 5, "val": 2, "test": 3}
    for split in ("train", "val"):
        chained, records = load_split(out, split), meta["config"]["chains"]["chains"][split]
        loci = dict(zip(original[split].names, zip(original[split].sequences, original[split].labels)))
        pool = flanks(original[split], I)
        seen = []
        for codes, labels, name, rec in zip(chained.sequences, chained.labels, chained.names, records):
            assert rec["name"] == name and len(rec["starts"]) == len(rec["loci"]) == len(rec["fillers"]) + 1
            ends = []
            for locus_name, start in zip(rec["loci"], rec["starts"]):
                s, lab = loci[locus_name]
                assert np.array_equal(codes[start:start + len(s)], s)
                assert np.array_equal(labels[start:start + len(s)], lab)
                ends.append((start, start + len(s)))
            assert ends[0][0] == 0 and ends[-1][1] == len(codes)
            for (_, a), (b, _), length in zip(ends, ends[1:], rec["fillers"]):
                assert b - a == length
                assert np.all(labels[a:b] == I)
                assert is_flank_pieces(codes[a:b], pool), (split, name)
            seen += rec["loci"]
        assert sorted(seen) == sorted(original[split].names)  # each locus once, none from another split
        genes = sum(len(labels_to_genes(lab)) for lab in chained.labels)
        assert genes == sum(len(labels_to_genes(lab)) for lab in original[split].labels)
    # The split left out is the original, file for file.
    for suffix in ("npz", "fa", "gff3", "bed"):
        assert (out / f"test.{suffix}").read_bytes() == (path / f"test.{suffix}").read_bytes()
    assert meta["config"]["source"] == "imported" and meta["config"]["chains"]["loci"] == 2


def test_filler_lengths_follow_the_mean(tmp_path):
    rng = np.random.default_rng(5)
    splits = {"train": make_split(rng, "tr", 801), "val": make_split(rng, "va", 1), "test": make_split(rng, "te", 1)}
    path = tmp_path / "loci"
    write_dataset(path, splits, {"source": "imported"}, seed=1)
    meta = chain_dataset(path, tmp_path / "chains", ChainConfig(loci=3, filler_mean=40.0, splits=("train",)))
    fillers = [f for rec in meta["config"]["chains"]["chains"]["train"] for f in rec["fillers"]]
    assert len(fillers) == 267 * 2
    # Exponential lengths: mean 40 and standard deviation 40, so the mean of 534 is 40 +- 1.7 (one sd).
    assert abs(np.mean(fillers) - 40.0) < 7.0
    assert np.median(fillers) < np.mean(fillers)  # skewed like an exponential law (median 40 ln 2)


def test_no_filler_and_one_locus_a_chain(imported, tmp_path):
    path, original = imported
    meta = chain_dataset(path, tmp_path / "same", ChainConfig(loci=1, filler_mean=0.0, splits=("train",)))
    chained = load_split(tmp_path / "same", "train")
    records = meta["config"]["chains"]["chains"]["train"]
    by_name = dict(zip(original["train"].names, original["train"].sequences))
    assert [len(s) for s in chained.sequences] == [len(by_name[r["loci"][0]]) for r in records]
    meta = chain_dataset(path, tmp_path / "joined", ChainConfig(loci=100, filler_mean=0.0, splits=("train",)))
    assert meta["splits"]["train"] == 1
    assert meta["sequence_lengths"]["train"]["total"] == sum(len(s) for s in original["train"].sequences)


def test_refusals_name_the_argument_and_write_nothing(imported, tmp_path):
    path, _ = imported
    for bad, word in [(dict(loci=0), "--loci"), (dict(filler_mean=-1.0), "--filler-mean"),
                      (dict(filler_mean=float("inf")), "--filler-mean"), (dict(seed=-2), "--seed"),
                      (dict(splits=("train", "dev")), "--splits"), (dict(splits=()), "--splits")]:
        with pytest.raises(ValueError, match=word):
            ChainConfig(**bad)
    with pytest.raises(AnnotationError, match="must differ"):
        chain_dataset(path, path)
    generated = tmp_path / "generated"
    generate_dataset(generated, GeneratorConfig(seq_length=800), num_train=2, num_val=1, num_test=1, seed=0)
    with pytest.raises(AnnotationError, match="semicrf-bench import"):
        chain_dataset(generated, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="--overwrite"):
        chain_dataset(path, busy)
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]


def test_the_command(imported, tmp_path, capsys):
    path, _ = imported
    out = tmp_path / "cli"
    argv = ["chain", "--data-dir", str(path), "--output-dir", str(out), "--loci", "3", "--filler-mean", "10",
            "--splits", "train", "--seed", "2"]
    assert main(argv) == 0
    assert "train 3, val 4, test 3 sequences" in capsys.readouterr().out
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["chains"]["splits"] == ["train"] and meta["config"]["chains"]["seed"] == 2
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert set(SPLITS) <= {p.stem for p in out.glob("*.npz")}
