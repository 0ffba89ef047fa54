"""benchmarks/real_genes/predict_loci.py: a semicrf_gene checkpoint's test-locus genes, in its own mode and
decoded under another (the same parameters), with the restriction's invariant and the refusals."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from semicrf.genomics import features
from semicrf.genomics.gene_structures import STRANDED_CLASSES, Gene, labels_to_genes, read_genes_gff3, write_genes_gff3
from semicrf.genomics.importer import import_dataset
from semicrf.genomics.models import ModelConfig, build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_genes" / "predict_loci.py"
spec = importlib.util.spec_from_file_location("predict_loci", SCRIPT)
pl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pl)


def _gene_model(mode="tail", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(input_dim=5, num_classes=5, encoder="bilstm", hidden_dim=8, num_layers=1, max_duration=6,
                      backend="cpu", mixed_precision=False, stem="conv", gene_long_runs=mode)
    model = build_model("semicrf_gene", cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
        for table in (model.crf.durations, model.crf.initial, model.crf.final, model.crf.transitions):
            table.mul_(0.1)
    return model.eval()


def _save(model, path, name="semicrf_gene"):
    torch.save({"model": name, "model_config": model.config.to_dict(), "state_dict": model.state_dict(),
                "class_names": list(STRANDED_CLASSES), "config": {"features": "onehot"}}, path)


def _data(tmp_path):
    """An imported data set whose test split is two gene-rich loci (ATG .. stop motifs, splice pairs)."""
    rng = np.random.default_rng(3)
    pairs = {}
    for split, names in (("train", ["tr1"]), ("val", ["va1"]), ("test", ["te1", "te2"])):
        fa, gff = tmp_path / f"{split}.fa", tmp_path / f"{split}.gff3"
        seqs = {n: "".join("CCATGGTAAGCCTTTAGCCGTAAGG" + "".join(rng.choice(list("ACGT"), 9)) for _ in range(8))
                for n in names}
        fa.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
        write_genes_gff3(gff, [(n, len(s), [Gene("+", ((2, 40), (60, 98)))]) for n, s in seqs.items()])
        pairs[split] = [f"{fa}:{gff}"]
    data = tmp_path / "data"
    import_dataset(data, **pairs)
    return data


def _predict(model, data):
    from semicrf.genomics.dataset import load_split
    test = load_split(data, "test")
    out = {}
    for n, codes in zip(test.names, test.sequences):
        x = torch.from_numpy(features.encode(codes, "onehot"))[None]
        L = torch.tensor([len(codes)])
        with torch.no_grad():
            em, st, en = model._scores(x, L)
            _, result = model.crf.decode(em, st, en, L)
            out[n] = (labels_to_genes(model.predict(x, L)[0]), float(result.score[0]))
    return out


def test_own_mode_and_another_mode_give_those_models_genes(tmp_path, capsys):
    data = _data(tmp_path)
    tail = _gene_model("tail")
    ckpt = tmp_path / "m.pt"
    _save(tail, ckpt)
    ends = _gene_model("tail-ends")
    ends.load_state_dict(tail.state_dict())  # the same parameters, the 98 states
    assert ends.crf.num_states == 98 and tail.crf.num_states == 62
    want_tail, want_ends = _predict(tail, data), _predict(ends, data)
    for mode, want in ((None, want_tail), ("tail-ends", want_ends)):
        out = tmp_path / f"{mode}.gff3"
        assert pl.main(["--checkpoint", str(ckpt), "--data-dir", str(data), "--output-gff3", str(out)]
                       + (["--gene-long-runs", mode] if mode else [])) == 0
        genes, _ = read_genes_gff3(out, coding_types=("CDS",))
        assert {n: [(g.strand, g.exons) for g in genes.get(n, [])] for n in want} == {
            n: [(g.strand, g.exons) for g in w[0]] for n, w in want.items()}
        assert f"decoded with {mode or 'tail'}" in capsys.readouterr().out
    # tail-ends is tail's paths with fewer ways in and out of the intron tails and more splice checks:
    # its best path never scores above tail's, and the random model's genes hold introns.
    for n in want_tail:
        assert want_ends[n][1] <= want_tail[n][1] + 1e-6
    assert any(len(g.exons) > 1 for genes, _ in want_tail.values() for g in genes)


def test_refusals(tmp_path):
    data = _data(tmp_path)
    ckpt, out = tmp_path / "m.pt", tmp_path / "o.gff3"
    _save(_gene_model("tail"), ckpt)
    out.write_text("mine\n")
    with pytest.raises(SystemExit):  # an existing output is kept unless asked
        pl.main(["--checkpoint", str(ckpt), "--data-dir", str(data), "--output-gff3", str(out)])
    assert out.read_text() == "mine\n"
    with pytest.raises(pl.DecodeError, match="does not load as --gene-long-runs pieces"):
        pl.predict_loci(ckpt, data, "pieces")  # pieces has no splice checks: another model
    cfg = ModelConfig(input_dim=5, num_classes=5, encoder="bilstm", hidden_dim=8, num_layers=1, max_duration=6,
                      backend="cpu", mixed_precision=False)
    other = tmp_path / "s.pt"
    _save(build_model("semicrf", cfg), other, "semicrf")
    with pytest.raises(pl.DecodeError, match="not semicrf_gene"):
        pl.predict_loci(other, data)
