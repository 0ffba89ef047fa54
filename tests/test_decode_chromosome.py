"""benchmarks/real_genes/decode_chromosome.py on a tiny FASTA with a tiny model built directly.

The streamed encoder (pieces with a halo, LSTM state carried) must give the scores of the model's own
one-call encoder, and the decoded labels must be the model's own ``predict``; the GFF3 must hold the
genes of those labels.
"""

import gzip
import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from semicrf.genomics import encoders, features
from semicrf.genomics.gene_structures import STRANDED_CLASSES, labels_to_genes, read_genes_gff3
from semicrf.genomics.models import ModelConfig, build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "decode_chromosome.py"
spec = importlib.util.spec_from_file_location("decode_chromosome", SCRIPT)
dc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dc)


def _model(name="semicrf", stem="conv", layers=1, feats="onehot", seed=0, long_runs="tail-ends"):
    torch.manual_seed(seed)
    cfg = ModelConfig(input_dim=features.feature_dim(feats), num_classes=5, encoder="bilstm", hidden_dim=8,
                      num_layers=layers, max_duration=6, backend="cpu", mixed_precision=False, stem=stem,
                      gene_long_runs=long_runs)
    model = build_model(name, cfg)
    with torch.no_grad():  # the boundary heads start at zero: give them (and everything) random values
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model.eval()


def _save(model, name, path, feats="onehot"):
    torch.save({"model": name, "model_config": model.config.to_dict(), "state_dict": model.state_dict(),
                "class_names": list(STRANDED_CLASSES), "config": {"features": feats}}, path)


def _codes(n, seed=1):
    return np.random.default_rng(seed).integers(0, 5, n).astype(np.uint8)


@pytest.mark.parametrize("stem,layers,feats", [("conv", 1, "onehot"), ("linear", 2, "onehot"), ("conv", 1, "kmer")])
def test_streamed_scores_equal_one_call(stem, layers, feats):
    model = _model(stem=stem, layers=layers, feats=feats)
    codes = _codes(301)
    x = torch.from_numpy(features.encode(codes, feats))[None]
    with torch.no_grad():
        want = model._scores(model.encode(x, torch.tensor([301])))
    got = dc.scores(model, codes, feats, chunk=37, halo=dc.DEFAULT_HALO)
    # float32 scores up to about 5 from pieces of other shapes than the one call's: their last bits differ
    # (up to 3.7e-5 on an AMD EPYC machine, 2026-12-08, on k-mer features); without the halo they are off by
    # about 5 (the next test).
    for key, w in zip(("emissions", "start", "end"), want):
        torch.testing.assert_close(got[key], w, atol=2e-4, rtol=1e-5)


def test_too_small_halo_changes_conv_scores():
    """The halo is what makes the pieces exact: without it the conv stem sees zeros at piece edges."""
    model = _model(stem="conv")
    codes = _codes(200)
    exact = dc.scores(model, codes, "onehot", chunk=50, halo=dc.DEFAULT_HALO)["emissions"]
    cut = dc.scores(model, codes, "onehot", chunk=50, halo=0)["emissions"]
    assert not torch.allclose(exact, cut, atol=1e-4)


@pytest.mark.parametrize("name", ["semicrf", "linear", "softmax"])
def test_decode_fasta_writes_the_models_genes(tmp_path, name):
    model = _model(name)
    ckpt = tmp_path / "m.pt"
    _save(model, name, ckpt)
    seqs = {"chrA": _codes(250, 2), "chrB": _codes(90, 3)}
    fasta = tmp_path / "g.fa.gz"
    with gzip.open(fasta, "wt") as f:
        for n, c in seqs.items():
            s = "".join("ACGTN"[v] for v in c)
            f.write(f">{n} some description\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n")
    out = tmp_path / "pred.gff3"
    report = dc.decode_fasta(ckpt, fasta, out, chunk=64, log=lambda *_: None)
    genes, lengths = read_genes_gff3(out, coding_types=("CDS",))
    assert lengths == {"chrA": 250, "chrB": 90}
    for n, c in seqs.items():
        with torch.no_grad():
            want = model.predict(torch.from_numpy(features.encode(c, "onehot"))[None], torch.tensor([len(c)]))[0]
        assert [g.exons for g in genes.get(n, [])] == [g.exons for g in labels_to_genes(want)]
        assert [g.strand for g in genes.get(n, [])] == [g.strand for g in labels_to_genes(want)]
    assert [r["length"] for r in report["sequences"]] == [250, 90]
    assert report["peak_rss_mb"] > 0
    if shutil.which("gt"):
        check = subprocess.run(["gt", "gff3validator", str(out)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("seed,strand,state_block", [(0, "+", dc.DEFAULT_STATE_BLOCK), (4, "-", dc.DEFAULT_STATE_BLOCK),
                                                     (0, "+", 21), (4, "-", 33)])
def test_the_gene_model_decodes_its_own_genes(tmp_path, seed, strand, state_block):
    # semicrf_gene: streamed class, codon and boundary scores, then its states over the whole sequence
    # (blocks of state scores, with a small block: 13 and 9 blocks of the 270 bases).
    # Bases rich in ATG .. stop and tables scaled down, so that the random model predicts a gene.
    rng = np.random.default_rng(0)
    seq = "".join("CCATGAAAGCCTTGCCGTAAGG" + "".join(rng.choice(list("ACGT"), 8)) for _ in range(9))
    codes = np.array(["ACGT".index(b) for b in seq], np.uint8)
    model = _model("semicrf_gene", seed=seed)
    with torch.no_grad():
        for table in (model.crf.durations, model.crf.initial, model.crf.final, model.crf.transitions):
            table.mul_(0.1)
        want = model.predict(torch.from_numpy(features.encode(codes, "onehot"))[None], torch.tensor([len(codes)]))[0]
    expected = labels_to_genes(want)
    assert len(expected) == 1 and expected[0].strand == strand and len(expected[0].exons) > 10
    ckpt, fasta, out = tmp_path / "g.pt", tmp_path / "g.fa", tmp_path / "g.gff3"
    _save(model, "semicrf_gene", ckpt)
    fasta.write_text(">g\n" + seq + "\n")
    dc.decode_fasta(ckpt, fasta, out, chunk=64, log=lambda *_: None, state_block=state_block)
    genes, _ = read_genes_gff3(out, coding_types=("CDS",))
    assert [(g.strand, g.exons) for g in genes["g"]] == [(g.strand, g.exons) for g in expected]
    # The labels themselves, position by position: the blocks' path is the whole sequence's.
    s = dc.scores(model, codes, "onehot", chunk=64)
    assert np.array_equal(dc.decode(model, s, codes, state_block), want)


@pytest.mark.parametrize("block,long_runs", [(3, "tail-ends"), (6, "tail-ends"), (21, "tail-ends"), (300, "tail-ends"),
                                             (3, "grid"), (21, "grid"), (300, "grid")])
def test_gene_state_blocks_are_the_whole_sequences_states(block, long_runs, one_torch_thread):
    # Bases dense in start, stop and splice motifs, so that many block edges fall inside one; with grid (K = 6)
    # the block edges fall off the grid too, and a middle piece may end only at the whole sequence's end. One
    # torch thread: with two, the site convolution over a block and over the whole sequence may differ in the
    # last bit (seen: 5e-7 in an end score at block 21).
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(["ATG", "TAA", "TGA", "TAG", "GT", "AG", "CT", "AC", "CAT", "TTA", "A", "C"], 120))
    codes = np.array(["ACGT".index(b) for b in seq], np.uint8)
    model = _model("semicrf_gene", seed=1, long_runs=long_runs)
    s = dc.scores(model, codes, "onehot", chunk=64)
    base = torch.from_numpy(codes.astype(np.int64))[None]
    with torch.no_grad():
        whole = model.states_from_heads(s["emissions"], s["start"], s["end"], base, torch.tensor([len(codes)]))
        blocks = list(dc.gene_state_blocks(model, s, base, block))
    assert len(blocks) == -(-len(codes) // block)
    for i, name in enumerate(("emissions", "start", "end")):
        assert torch.equal(torch.cat([b[i] for b in blocks]), whole[i][0]), name


def test_gene_state_blocks_refuse_a_block_off_the_frame():
    model = _model("semicrf_gene")
    s = dc.scores(model, _codes(30), "onehot", chunk=64)
    with pytest.raises(dc.DecodeError, match="multiple of 3"):
        next(dc.gene_state_blocks(model, s, torch.zeros(1, 30, dtype=torch.int64), block=20))


def test_prefix_and_refusals(tmp_path):
    model = _model("semicrf")
    ckpt = tmp_path / "m.pt"
    _save(model, "semicrf", ckpt)
    fasta = tmp_path / "g.fa"
    fasta.write_text(">x\n" + "ACGT" * 50 + "\n")
    report = dc.decode_fasta(ckpt, fasta, tmp_path / "p.gff3", prefix_bases=33, log=lambda *_: None)
    assert report["sequences"][0]["length"] == 33
    with pytest.raises(dc.DecodeError, match="does not exist"):
        dc.decode_fasta(tmp_path / "none.pt", fasta, tmp_path / "q.gff3")
    bad = tmp_path / "bad.pt"
    torch.save({"model": "semicrf", "model_config": model.config.to_dict(), "state_dict": model.state_dict(),
                "class_names": ["intergenic", "exon", "intron"]}, bad)
    with pytest.raises(dc.DecodeError, match="stranded"):
        dc.decode_fasta(bad, fasta, tmp_path / "q.gff3")
    notfa = tmp_path / "n.fa"
    notfa.write_text("ACGT\n")
    with pytest.raises(dc.DecodeError, match="not FASTA"):
        dc.decode_fasta(ckpt, notfa, tmp_path / "q.gff3")
    with pytest.raises(dc.DecodeError, match="--state-block must be a positive multiple of 3, got 100"):
        dc.decode_fasta(ckpt, fasta, tmp_path / "q.gff3", state_block=100)  # before any work
    assert dc.main(["--checkpoint", str(bad), "--fasta", str(fasta), "--output-gff3", str(tmp_path / "q")]) == 2
    if not torch.cuda.is_available():
        with pytest.raises(dc.DecodeError, match="--device cuda: no CUDA GPU"):
            dc.decode_fasta(ckpt, fasta, tmp_path / "q.gff3", device="cuda")


def test_pieces_on_a_gpu_stay_under_cudnns_lstm_limit():
    assert dc.piece_length(1_000_000, torch.device("cpu")) == 1_000_000
    assert dc.piece_length(1_000_000, torch.device("cuda")) == encoders.CUDNN_LSTM_MAX_STEPS == 65_535
    assert dc.piece_length(5_000, torch.device("cuda")) == 5_000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_streamed_scores_past_cudnns_limit_on_a_gpu_match_the_cpu(monkeypatch):
    # Without TF32, cuDNN's default for the conv stem and the LSTM: with it the two devices differed by up
    # to 0.03 on these random weights (H200, 2026-12-04), far above what the pieces themselves change.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = _model(stem="conv", layers=2)
    codes = _codes(70_000)  # longer than one cuDNN LSTM call takes
    want = dc.scores(model, codes, "onehot", chunk=1_000_000)
    got = dc.scores(model.cuda(), codes, "onehot", chunk=1_000_000)
    for key in ("emissions", "start", "end"):
        torch.testing.assert_close(got[key].cpu(), want[key], atol=1e-4, rtol=1e-4)


def test_a_gpu_viterbi_too_large_for_the_card_is_refused_with_the_way_out():
    # 21 Mbp over 62 states against an H200's ~139 GiB: refused, naming the flag that decodes it anyway.
    with pytest.raises(dc.DecodeError, match="--viterbi-device cpu"):
        dc.check_gpu_viterbi_fits(21_146_708, 62, 139 * 2**30)
    dc.check_gpu_viterbi_fits(21_146_708, 5, 139 * 2**30)  # the class-level models' 5 labels fit
    with pytest.raises(dc.DecodeError, match="--viterbi-device must be cpu"):
        dc.decode_fasta("x.pt", "x.fa", "x.gff3", viterbi_device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["semicrf", "semicrf_gene"])
def test_a_gpu_encoder_with_the_cpu_viterbi_gives_the_cpu_decode(name):
    rng = np.random.default_rng(0)
    seq = "".join("CCATGAAAGCCTTGCCGTAAGG" + "".join(rng.choice(list("ACGT"), 8)) for _ in range(9))
    codes = np.array(["ACGT".index(b) for b in seq], np.uint8)
    model = _model(name, seed=2)
    want = dc.decode(model, dc.scores(model, codes, "onehot", chunk=64), codes, 30)
    gpu = model.cuda()
    got = dc.decode(gpu, dc.scores(gpu, codes, "onehot", chunk=64), codes, 30, viterbi_device="cpu")
    assert np.array_equal(got, want)
