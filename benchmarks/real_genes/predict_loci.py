#!/usr/bin/env python3
"""Predict the test loci of an imported data set with a trained semicrf_gene checkpoint, optionally under
another long-run grammar, and write the genes as GFF3 for score_models.py's measures and exon_errors.py.

    python3 benchmarks/real_genes/predict_loci.py --checkpoint results/fly_gene_s1/checkpoints/semicrf_gene_best.pt \
        --data-dir data/fly --output-gff3 OUT.gff3 [--gene-long-runs tail-ends] [--overwrite]

``--gene-long-runs`` rebuilds the model with that mode's states around the checkpoint's parameters (the
modes ``tail``, ``tail-ends`` and ``tail-exons`` share every parameter but the exon-side splice penalties
of ``tail-exons``, so ``tail`` and ``tail-ends`` checkpoints load into each other): a model trained with
``tail``, where an exon may enter or leave any intron tail piece, decoded with ``tail-ends``, where only a
long intron's first and last pieces touch an exon and pay the splice checks. Without it the checkpoint's
own mode: the run's own test predictions. The prediction is the model's ``predict`` (Viterbi over the
states) on each test locus alone, on the CPU, one thread; it prints exon and gene Sn / Sp.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from semicrf.genomics import features, gene_metrics
from semicrf.genomics.dataset import load_split
from semicrf.genomics.gene_model import GeneSemiCRFTagger
from semicrf.genomics.gene_structures import genes_by_sequence, labels_to_genes, write_genes_gff3
from semicrf.genomics.models import GENE_LONG_RUNS, build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_chromosome import DecodeError, load_model  # noqa: E402


def predict_loci(checkpoint, data_dir, gene_long_runs: str | None = None) -> tuple[dict, object, str]:
    """({name: [Gene]} predicted on the test split, the test split, the mode decoded with)."""
    model, name, kind = load_model(checkpoint)
    if not isinstance(model, GeneSemiCRFTagger):
        raise DecodeError(f"{checkpoint}: model {name!r} is not semicrf_gene; predict_loci.py decodes the gene "
                          "model's states (the run's own predictions/ hold the other models')")
    mode = gene_long_runs or model.config.gene_long_runs
    if mode != model.config.gene_long_runs:
        try:
            other = build_model(name, dataclasses.replace(model.config, gene_long_runs=mode))
            other.load_state_dict(model.state_dict())
        except (RuntimeError, ValueError) as e:
            raise DecodeError(f"{checkpoint} ({model.config.gene_long_runs}) does not load as --gene-long-runs "
                              f"{mode}: {str(e).splitlines()[0]}") from None
        model = other.eval()
    test = load_split(data_dir, "test")
    pred = {}
    with torch.no_grad():
        for seq, codes in zip(test.names, test.sequences):
            x = torch.from_numpy(features.encode(codes, kind))[None]
            pred[seq] = labels_to_genes(model.predict(x, torch.tensor([len(codes)]))[0])
    return pred, test, mode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoints/semicrf_gene_best.pt of a run on imported data")
    ap.add_argument("--data-dir", required=True, help="the imported data set whose test split to predict")
    ap.add_argument("--output-gff3", required=True, help="where to write the predicted genes")
    ap.add_argument("--gene-long-runs", default=None, choices=GENE_LONG_RUNS,
                    help="decode under this mode's states (default: the checkpoint's own)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --output-gff3")
    args = ap.parse_args(argv)
    out = Path(args.output_gff3)
    if out.exists() and not args.overwrite:
        ap.error(f"--output-gff3 {out} exists; pass --overwrite to replace it")
    torch.set_num_threads(1)
    try:
        pred, test, mode = predict_loci(args.checkpoint, args.data_dir, args.gene_long_runs)
    except DecodeError as e:
        print(f"predict_loci: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    write_genes_gff3(out, [(n, len(c), pred[n]) for n, c in zip(test.names, test.sequences)])  # atomically
    acc = gene_metrics.gene_accuracy(genes_by_sequence(test.names, test.labels), pred)
    print(f"{args.checkpoint} decoded with {mode}: " + ", ".join(
        f"{lv} {acc[lv]['sensitivity']:.3f} / {acc[lv]['specificity']:.3f}" for lv in gene_metrics.LEVELS)
        + f"; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
