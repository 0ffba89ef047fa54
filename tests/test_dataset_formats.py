"""On-disk format (npz + metadata) and the FASTA / GFF3 / BED12 exports."""

import json
import os
import zipfile

import numpy as np
import pytest

from semicrf.genomics import formats
from semicrf.genomics.dataset import (
    SPLITS,
    DataError,
    Split,
    duration_statistics,
    generate_dataset,
    load_metadata,
    load_split,
    save_split,
)
from semicrf.genomics.formats import read_fasta, read_gff3, write_bed, write_fasta, write_gff3
from semicrf.genomics.synthetic import CLASS_NAMES, GeneratorConfig

C3, C5 = list(CLASS_NAMES[3]), list(CLASS_NAMES[5])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synthetic"
    cfg = GeneratorConfig(num_classes=5, seq_length=4000, content="realistic")
    meta = generate_dataset(out, cfg, num_train=12, num_val=3, num_test=2, seed=3)
    return out, meta


# ---------------------------------------------------------------- npz + metadata


def test_save_and_load_split_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 5, n).astype(np.uint8) for n in (1, 7, 300)]
    labels = [rng.integers(0, 5, len(s)) for s in seqs]
    (tmp_path / "metadata.json").write_text(
        json.dumps({"format": "semicrf-synthetic-genomics", "format_version": 1, "class_names": C5,
                    "num_classes": 5, "config": {}, "seed": 0, "version": "x", "splits": {"train": 3}})
    )
    save_split(tmp_path, "train", Split(seqs, labels, ["a", "b", "c"]))
    back = load_split(tmp_path, "train")
    assert back.names == ["a", "b", "c"] and len(back) == 3
    for x, y in zip(back.sequences, seqs):
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)
    for x, y in zip(back.labels, labels):
        assert x.dtype == np.int64
        np.testing.assert_array_equal(x, y)
    with np.load(tmp_path / "train.npz") as z:  # one concatenated array per field, not one per sequence
        assert sorted(z.files) == ["codes", "labels", "names", "offsets"]
        assert z["codes"].shape == (308,) and z["offsets"].tolist() == [0, 1, 8, 308]


def test_metadata_contents(dataset):
    out, meta = dataset
    assert load_metadata(out) == meta
    assert meta["class_names"] == C5 and meta["num_classes"] == 5 and meta["seed"] == 3
    assert meta["splits"] == {"train": 12, "val": 3, "test": 2}
    from semicrf import __version__

    assert meta["version"] == __version__
    cfg = meta["config"]
    for name in C5:
        d = cfg["durations"][name]
        assert {"median", "sigma", "min", "max"} <= set(d) and d["truncation"] == "clip"
    assert cfg["durations"]["exon"]["median"] == 150 and cfg["durations"]["intron"]["sigma"] == 1.0
    assert cfg["gene_grammar"]["exons_per_gene"] == [2, 8]
    assert cfg["gene_grammar"]["start_probabilities"]["intergenic"] == 1.0
    assert cfg["gc_content"] == 0.42 and cfg["content"] == "realistic" and cfg["splice_motifs"] is True
    assert "donor" in cfg["content_model"] and "codon_positions" in cfg["content_model"]
    assert cfg["num_train"] == 12
    for split in SPLITS:
        data = load_split(out, split)
        assert len(data) == meta["splits"][split]
        assert meta["duration_stats"][split] == _brute_force_stats(data.labels, C5)


def _brute_force_stats(labels_list, names):
    """Run lengths by walking each sequence, leaving out the last run; numpy only for percentiles."""
    runs = {n: [] for n in names}
    for lab in labels_list:
        lab = lab.tolist()
        start = 0
        for t in range(1, len(lab) + 1):
            if t == len(lab) or lab[t] != lab[start]:
                if t < len(lab):  # the last run is cut by the sequence end
                    runs[names[lab[start]]].append(t - start)
                start = t
    out = {}
    for n, d in runs.items():
        if not d:
            out[n] = {"count": 0, "mean": None, "median": None, "p5": None, "p95": None, "min": None, "max": None}
            continue
        d = np.array(d)
        out[n] = {"count": len(d), "mean": float(d.mean()), "median": float(np.median(d)),
                  "p5": float(np.percentile(d, 5)), "p95": float(np.percentile(d, 95)),
                  "min": int(d.min()), "max": int(d.max())}
    return out


def test_duration_statistics_hand_computed():
    labels = [np.array([0, 0, 1, 1, 1, 2, 0]), np.array([2, 2, 0, 0, 0, 0])]
    s = duration_statistics(labels, C3)
    # Runs without the last of each sequence: [0 x2, 1 x3, 2 x1] and [2 x2].
    assert s["intergenic"]["count"] == 1 and s["intergenic"]["max"] == 2
    assert s["exon"] == {"count": 1, "mean": 3.0, "median": 3.0, "p5": 3.0, "p95": 3.0, "min": 3, "max": 3}
    assert s["intron"]["count"] == 2 and s["intron"]["mean"] == 1.5
    full = duration_statistics(labels, C3, exclude_last=False)
    assert full["intergenic"]["count"] == 3 and full["intergenic"]["max"] == 4


def test_generated_files_are_deterministic(tmp_path):
    cfg = GeneratorConfig(num_classes=3, seq_length=3000)
    generate_dataset(tmp_path / "a", cfg, num_train=4, num_val=1, num_test=1, seed=9)
    generate_dataset(tmp_path / "b", cfg, num_train=4, num_val=1, num_test=1, seed=9)
    generate_dataset(tmp_path / "c", cfg, num_train=4, num_val=1, num_test=1, seed=10)
    files = sorted(os.listdir(tmp_path / "a"))
    assert files == sorted(["metadata.json"] + [f"{s}.{e}" for s in SPLITS for e in ("npz", "fa", "gff3", "bed")])
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "train.npz").read_bytes() != (tmp_path / "c" / "train.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a" / "train.npz") as z:  # compressed, and no wall-clock timestamps
        assert all(i.compress_type == zipfile.ZIP_DEFLATED and i.date_time == (1980, 1, 1, 0, 0, 0) for i in z.infolist())


def test_exports_agree_with_arrays(dataset):
    out, _ = dataset
    for split in SPLITS:
        data = load_split(out, split)
        fasta = read_fasta(out / f"{split}.fa")
        gff = read_gff3(out / f"{split}.gff3")
        assert list(fasta) == list(gff) == data.names
        for name, codes, labels in zip(data.names, data.sequences, data.labels):
            np.testing.assert_array_equal(fasta[name], codes)
            np.testing.assert_array_equal(gff[name], labels)
        _check_bed(out / f"{split}.bed", data)


def _check_bed(path, data):
    by_name = dict(zip(data.names, data.labels))
    lines = path.read_text().splitlines()
    assert lines
    for line in lines:
        cols = line.split("\t")
        assert len(cols) == 12
        seq, start, end = cols[0], int(cols[1]), int(cols[2])
        sizes = [int(x) for x in cols[10].rstrip(",").split(",")]
        offsets = [int(x) for x in cols[11].rstrip(",").split(",")]
        assert int(cols[9]) == len(sizes) == len(offsets)
        assert offsets[0] == 0 and offsets[-1] + sizes[-1] == end - start
        lab = by_name[seq]
        for o, z in zip(offsets, sizes):  # blocks are exonic (exon / UTR) runs flanked by intron or intergenic
            block = lab[start + o : start + o + z]
            assert np.all((block == 1) | (block >= 3))
            assert lab[start + o - 1] in (0, 2) if start + o > 0 else True
            assert lab[start + o + z] in (0, 2) if start + o + z < len(lab) else True
        thick_start, thick_end = int(cols[6]), int(cols[7])
        coding = np.flatnonzero(lab[start:end] == 1) + start
        assert (thick_start, thick_end) == (coding.min(), coding.max() + 1)


# ---------------------------------------------------------------- errors


def test_load_errors_say_what_to_do(tmp_path, dataset):
    with pytest.raises(DataError, match="does not exist"):
        load_metadata(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--overwrite"):
        load_metadata(tmp_path / "empty")
    (tmp_path / "empty" / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        load_metadata(tmp_path / "empty")
    (tmp_path / "empty" / "metadata.json").write_text("{}")
    with pytest.raises(DataError, match="lacks"):
        load_metadata(tmp_path / "empty")
    assert issubclass(DataError, ValueError)

    out, meta = dataset
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in out.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match="split must be one of"):
        load_split(copy, "dev")
    (copy / "val.npz").unlink()
    with pytest.raises(DataError, match="val.npz is missing"):
        load_split(copy, "val")
    raw = (copy / "test.npz").read_bytes()
    (copy / "test.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt"):
        load_split(copy, "test")
    bad = dict(meta, splits={**meta["splits"], "train": 13})
    (copy / "metadata.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="does not match"):
        load_split(copy, "train")


def test_generate_dataset_refuses_non_empty_dir_and_bad_counts(tmp_path):
    cfg = GeneratorConfig(seq_length=3000)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="--overwrite"):
        generate_dataset(tmp_path / "x", cfg, num_train=1, num_val=0, num_test=0)
    assert os.listdir(tmp_path / "x") == ["notes.txt"]
    for kw, flag in (({"num_train": 0}, "--num-train"), ({"num_val": -1}, "--num-val"), ({"seed": -3}, "--seed")):
        with pytest.raises(ValueError, match=flag):
            generate_dataset(tmp_path / "y", cfg, **kw)
    assert not (tmp_path / "y").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        generate_dataset(tmp_path / "file", cfg)
    with pytest.raises(ValueError, match="cannot be created"):
        generate_dataset(tmp_path / "file" / "sub", cfg)
    # Empty val / test splits are allowed and load as empty.
    generate_dataset(tmp_path / "z", cfg, num_train=1, num_val=0, num_test=0)
    assert len(load_split(tmp_path / "z", "val")) == 0
    # --overwrite replaces the data set and leaves other files alone.
    generate_dataset(tmp_path / "x", cfg, num_train=2, num_val=1, num_test=1, overwrite=True)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"
    assert load_metadata(tmp_path / "x")["splits"]["train"] == 2


# ---------------------------------------------------------------- GFF3 / BED / FASTA by hand

HAND_LABELS = np.array([0, 0, 3, 3, 1, 1, 2, 2, 2, 1, 4, 4, 0, 0, 1, 2])
HAND_GFF3 = """##gff-version 3
##sequence-region s1 1 16
##sequence-region s2 1 3
s1\tsrc\tgene\t3\t12\t.\t+\t.\tID=s1.g1
s1\tsrc\tmRNA\t3\t12\t.\t+\t.\tID=s1.g1.t1;Parent=s1.g1
s1\tsrc\texon\t3\t6\t.\t+\t.\tID=s1.g1.t1.exon1;Parent=s1.g1.t1
s1\tsrc\tfive_prime_UTR\t3\t4\t.\t+\t.\tID=s1.g1.t1.utr5p1;Parent=s1.g1.t1
s1\tsrc\tintron\t7\t9\t.\t+\t.\tID=s1.g1.t1.intron1;Parent=s1.g1.t1
s1\tsrc\texon\t10\t12\t.\t+\t.\tID=s1.g1.t1.exon2;Parent=s1.g1.t1
s1\tsrc\tthree_prime_UTR\t11\t12\t.\t+\t.\tID=s1.g1.t1.utr3p1;Parent=s1.g1.t1
s1\tsrc\tgene\t15\t16\t.\t+\t.\tID=s1.g2
s1\tsrc\tmRNA\t15\t16\t.\t+\t.\tID=s1.g2.t1;Parent=s1.g2
s1\tsrc\texon\t15\t15\t.\t+\t.\tID=s1.g2.t1.exon1;Parent=s1.g2.t1
s1\tsrc\tintron\t16\t16\t.\t+\t.\tID=s1.g2.t1.intron1;Parent=s1.g2.t1
"""
HAND_BED = "s1\t2\t12\ts1.g1.t1\t0\t+\t4\t10\t0\t2\t4,3,\t0,7,\ns1\t14\t15\ts1.g2.t1\t0\t+\t14\t15\t0\t1\t1,\t0,\n"


def test_gff3_and_bed_by_hand(tmp_path):
    names, labels = ["s1", "s2"], [HAND_LABELS, np.zeros(3, dtype=np.int64)]
    write_gff3(tmp_path / "h.gff3", names, labels, C5, source="src")
    assert (tmp_path / "h.gff3").read_text() == HAND_GFF3
    write_bed(tmp_path / "h.bed", names, labels, C5)
    assert (tmp_path / "h.bed").read_text() == HAND_BED
    back = read_gff3(tmp_path / "h.gff3")
    np.testing.assert_array_equal(back["s1"], HAND_LABELS)
    np.testing.assert_array_equal(back["s2"], [0, 0, 0])


def _random_labels(rng, num_classes, length):
    runs = rng.integers(1, 6, size=length)
    classes = rng.integers(0, num_classes, size=length)
    return np.repeat(classes, runs)[:length]


@pytest.mark.parametrize("num_classes", [3, 5])
def test_gff3_round_trips_any_labels(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    names = [f"seq{i}" for i in range(25)]
    labels = [_random_labels(rng, num_classes, int(n)) for n in rng.integers(1, 300, size=25)]
    names_c = CLASS_NAMES[num_classes]
    write_gff3(tmp_path / "r.gff3", names, labels, names_c)
    back = read_gff3(tmp_path / "r.gff3", class_names=names_c)
    assert list(back) == names
    for n, lab in zip(names, labels):
        np.testing.assert_array_equal(back[n], lab)
    _check_gff3_order(tmp_path / "r.gff3")


def _check_gff3_order(path):
    """Sorted by start within each sequence; every Parent is defined above its child."""
    seen_ids, last = set(), {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        attrs = dict(kv.split("=") for kv in cols[8].split(";"))
        start = int(cols[3])
        assert start >= last.get(cols[0], 0)
        assert 1 <= start <= int(cols[4])
        last[cols[0]] = start
        if "Parent" in attrs:
            assert attrs["Parent"] in seen_ids
        seen_ids.add(attrs["ID"])


def test_read_gff3_rejects_bad_files(tmp_path):
    p = tmp_path / "bad.gff3"
    p.write_text("##gff-version 3\ns1\t.\texon\t1\t5\t.\t+\t.\tID=e\n")
    with pytest.raises(ValueError, match="sequence-region"):
        read_gff3(p)
    p.write_text("##gff-version 3\n##sequence-region s1 1 10\ns1\t.\texon\t1\n")
    with pytest.raises(ValueError, match="9 tab-separated"):
        read_gff3(p)
    p.write_text("##gff-version 3\n##sequence-region s1 1 10\ns1\t.\tfive_prime_UTR\t1\t3\t.\t+\t.\tID=u\n")
    with pytest.raises(ValueError, match="no class"):
        read_gff3(p, class_names=C3)
    p.write_text("chr1\t.\texon\t1\t3\t.\t+\t.\tID=u\n")
    with pytest.raises(ValueError, match="gff-version"):
        read_gff3(p)


def test_writers_validate_inputs(tmp_path):
    with pytest.raises(ValueError, match="names"):
        write_gff3(tmp_path / "x.gff3", ["has space"], [np.zeros(3, dtype=int)], C3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        write_gff3(tmp_path / "x.gff3", ["a"], [np.array([0, 4])], C3)
    with pytest.raises(ValueError, match="class_names"):
        write_bed(tmp_path / "x.bed", ["a"], [np.zeros(3, dtype=int)], ["intergenic", "cds"])
    assert not any(tmp_path.iterdir())  # nothing left behind, not even a temporary file


def test_fasta_wrapping_and_round_trip(tmp_path):
    seqs = [np.array([0, 1, 2, 3, 4] * 5, dtype=np.uint8), np.zeros(10, dtype=np.uint8), np.zeros(0, dtype=np.uint8)]
    write_fasta(tmp_path / "x.fa", ["a", "b", "c"], seqs, line_width=10)
    assert (tmp_path / "x.fa").read_text() == (
        ">a\nACGTNACGTN\nACGTNACGTN\nACGTN\n>b\nAAAAAAAAAA\n>c\n"
    )
    back = read_fasta(tmp_path / "x.fa")
    assert list(back) == ["a", "b", "c"]
    for x, y in zip(back.values(), seqs):
        np.testing.assert_array_equal(x, y)


def test_atomic_output_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with formats.atomic_output(target, "w") as f:
            f.write("new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
