"""One table of every system on the imported test loci: the gene finders and this project's models.

    python3 benchmarks/real_genes/score_models.py --results-dir results/fly_cpu \
        --gene-finders-json results/gene_finders/gene_finders.json [--data-dir data/fly] [--json OUT]

Our models' rows score ``<results-dir>/predictions/<model>.gff3`` (the run's
test-split predictions at each model's best weights, written through
:mod:`semicrf.genomics.gene_structures`) against the test split of the data
set the run used, with :func:`semicrf.genomics.gene_metrics.gene_accuracy`:
the measures and definitions of the AUGUSTUS and SNAP rows, which come from
``gene_finders.json`` (``benchmarks/real_genes/gene_finders.py``). The truth
is the genes of the test split's labels
(:func:`~semicrf.genomics.gene_structures.labels_to_genes`); the script checks
that it has exactly the gene finders' true base, exon and gene counts, so that
every row is scored on the same loci, and refuses otherwise. Beside Sn / Sp
our rows show the benchmark's boundary F1 and mean duration KL (from
``metrics.json``), the optimizer steps, and the training and prediction
seconds the run measured (prediction: the model's time on the test split;
the gene finders': their command's wall time).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from semicrf.genomics import gene_metrics
from semicrf.genomics.dataset import load_split
from semicrf.genomics.gene_structures import genes_by_sequence, read_genes_gff3

GENE_FINDER_LABELS = {
    "augustus_trained": "AUGUSTUS, trained here",
    "augustus_fly": "AUGUSTUS, shipped fly",
    "snap_trained": "SNAP, trained here",
    "snap_fly": "SNAP, shipped fly HMM",
}


class ScoreError(ValueError):
    """Inputs that cannot be scored together; the message says what to change."""


def _read_json(path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ScoreError(f"{path} is not JSON ({e})") from None


def truth_genes(data_dir) -> dict:
    """{name: [Gene]} of the test split of an imported data set."""
    test = load_split(data_dir, "test")
    return genes_by_sequence(test.names, test.labels)


def read_predictions(truth: dict, gff3) -> dict:
    """{name: [Gene]} of a predictions GFF3's coding exons (sequences outside ``truth`` refused)."""
    pred, _ = read_genes_gff3(gff3, coding_types=("CDS",))
    extra = sorted(set(pred) - set(truth))
    if extra:
        raise ScoreError(f"{gff3}: predictions on sequences the test split does not have: {extra[:3]}")
    return pred


def score_predictions(truth: dict, gff3) -> dict:
    """gene_metrics.gene_accuracy of a predictions GFF3 against ``truth`` (sequences outside the truth refused)."""
    return gene_metrics.gene_accuracy(truth, read_predictions(truth, gff3))


def collect(results_dir, gene_finders_json, data_dir=None) -> list[dict]:
    """The table's rows: gene finders first (in their file's order), then the run's models."""
    metrics = _read_json(Path(results_dir) / "metrics.json", "metrics file")
    if not isinstance(metrics.get("models"), dict) or not metrics["models"]:
        raise ScoreError(f"{results_dir}/metrics.json has no finished model; let the run finish or --resume it")
    finders = _read_json(gene_finders_json, "--gene-finders-json")
    if not isinstance(finders.get("systems"), dict):
        raise ScoreError(f"{gene_finders_json} has no 'systems': not written by gene_finders.py")
    data_dir = data_dir or (metrics.get("config") or {}).get("data_dir")
    if not data_dir:
        raise ScoreError("the run's metrics.json names no data_dir; pass --data-dir")
    truth = truth_genes(data_dir)
    rows = []
    for name, r in finders["systems"].items():
        rows.append({"system": GENE_FINDER_LABELS.get(name, name), "kind": "gene finder", "accuracy": r["accuracy"],
                     "train_seconds": r.get("train_seconds"), "predict_seconds": r.get("predict_seconds")})
    for name, m in metrics["models"].items():
        gff3 = Path(results_dir) / "predictions" / f"{name}.gff3"
        if not gff3.is_file():
            raise ScoreError(f"{gff3} is missing: the run wrote no predictions for {name}")
        rows.append({"system": name, "kind": "semicrf model", "accuracy": score_predictions(truth, gff3),
                     "train_seconds": m.get("training_time_s"), "predict_seconds": m.get("inference_time_s"),
                     "boundary_f1": m.get("boundary_f1"), "duration_kl_mean": m.get("duration_kl_mean"),
                     "steps": m.get("steps_trained"), "epochs": m.get("epochs_trained"),
                     "stopped_by": m.get("stopped_by")})
    # Every row must count the same truth: same loci, same genes.
    want = {lv: rows[0]["accuracy"][lv]["num_true"] for lv in gene_metrics.LEVELS} if rows else {}
    for row in rows:
        got = {lv: row["accuracy"][lv]["num_true"] for lv in gene_metrics.LEVELS}
        if got != want:
            raise ScoreError(f"{row['system']}: true counts {got} differ from {rows[0]['system']}'s {want}: the "
                             f"run's test split ({data_dir}) is not the gene finders' test loci")
    return rows


def _f(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """A Markdown table: Sn / Sp at the three levels, boundary F1, duration KL, steps, seconds."""
    head = ["system", "nucleotide Sn / Sp", "exon Sn / Sp", "gene Sn / Sp", "boundary F1", "duration KL",
            "steps", "train s", "predict s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        a = r["accuracy"]
        cells = [r["system"]] + [f"{a[lv]['sensitivity']:.3f} / {a[lv]['specificity']:.3f}"
                                 for lv in gene_metrics.LEVELS]
        steps = "-" if r.get("steps") is None else str(r["steps"]) + (
            f" ({r['stopped_by']})" if r.get("stopped_by") in ("step_budget", "patience") else "")
        cells += [_f(r.get("boundary_f1")), _f(r.get("duration_kl_mean"), 2), steps,
                  _f(r.get("train_seconds"), 1), _f(r.get("predict_seconds"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", required=True, help="--output-dir of a finished run on imported data")
    ap.add_argument("--gene-finders-json", required=True, help="gene_finders.json of gene_finders.py")
    ap.add_argument("--data-dir", default=None, help="the imported data set (default: the run's --data-dir)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    try:
        rows = collect(args.results_dir, args.gene_finders_json, args.data_dir)
    except (ScoreError, ValueError, OSError) as e:
        print(f"score_models: {e}", file=sys.stderr)
        return 2
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
