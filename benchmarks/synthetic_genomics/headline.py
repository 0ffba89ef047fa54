"""The benchmark's headline: every model over its seeds, read against the oracle.

    python3 headline.py table RUN_DIR_OR_METRICS [...]          # markdown tables
    python3 headline.py curves HISTORIES_JSON --figure curves.png [--oracle 0.740]

``table`` takes the ``metrics.json`` of one ``run`` per seed (a results
directory or the file itself; the oracle may appear in any of them; ``PATH@TAG``
names that run's models ``<model>@TAG``, a second schedule's rows) and prints
three markdown tables:

- the headline: per model, the number of seeds, then each metric's mean over
  the seeds with its range (min-max) and, for boundary and segment F1, the
  fraction of the oracle's value;
- the duration table: duration KL and W1 of log-durations per class (KL over
  the histogram of lengths 1..K with longer ones in the last bin, as the
  ``run`` command computes it; W1 over the durations themselves, in units of
  log length);
- the pairwise readings of test boundary F1: for each pair of models, the
  difference of their means and whether it exceeds the spread between seeds
  (the larger of the two models' ranges). Within the spread it is a tie; a
  model with one seed has no spread and the pair is marked as such.

``curves`` draws validation boundary F1 against optimizer steps for every
(model, seed) of the ``histories.json`` that ``full_run.sh gather`` writes.

``confusion --data-dir DATA RUN_DIR [...]`` scores each run's test predictions
(``predictions/<model>.gff3``) against the data set's test labels and prints
where the positions go: per model, the share of each true class's positions
labelled as each other class, mean over the runs (seeds). ``table`` prints the
same from ``metrics.json`` when the run recorded ``position_confusion``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np

ORACLE = "oracle"


def load_runs(paths: list[str]) -> list[dict]:
    """The parsed metrics.json of each path (a results directory or the file); raises ValueError.

    A path written ``PATH@TAG`` reports that run's trained models as ``<model>@TAG`` (its oracle keeps
    its name): the rows of a second schedule of the same models beside the first, e.g. a longer run of
    one model next to the full comparison.
    """
    runs = []
    for p in paths:
        tag = None
        if "@" in p and not Path(p).exists():
            p, tag = p.rsplit("@", 1)
            if not tag:
                raise ValueError(f"{p}@: give the tag after '@' (e.g. RUN_DIR@48ep), or no '@'")
        path = Path(p)
        if path.is_dir():
            path = path / "metrics.json"
        if not path.is_file():
            raise ValueError(f"{p}: no metrics.json there; give a finished run's --output-dir or its metrics.json")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc.get("models"), dict):
            raise ValueError(f"{path} is not a metrics file of the benchmark (no 'models')")
        if tag is not None:
            doc["models"] = {(n if n == ORACLE else f"{n}@{tag}"): m for n, m in doc["models"].items()}
        runs.append(doc)
    return runs


def per_model(runs: list[dict]) -> dict[str, list[dict]]:
    """{model: [its metrics in each run that has it]}, models in order of first appearance."""
    out: dict[str, list[dict]] = {}
    for doc in runs:
        for name, m in doc["models"].items():
            out.setdefault(name, []).append(m)
    return out


def _value(m: dict, key: str):
    for part in key.split("."):
        if not isinstance(m, dict) or part not in m:
            return None
        m = m[part]
    return m if isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m) else None


def summary(values: list) -> dict | None:
    """{"mean", "min", "max", "n"} of the finite values (None when there are none)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def stat(metrics: list[dict], key: str) -> dict | None:
    return summary([_value(m, key) for m in metrics])


def _cell(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return "-"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _fraction(s: dict | None, oracle: dict | None) -> str:
    if s is None or oracle is None or oracle["mean"] <= 0:
        return "-"
    return f"{s['mean'] / oracle['mean']:.2f}"


def _steps(metrics: list[dict]) -> str:
    steps = [m.get("steps_trained") for m in metrics]
    why = {m.get("stopped_by") for m in metrics} - {None, "epochs"}
    text = "/".join("-" if s is None else str(s) for s in steps)
    return f"{text} ({', '.join(sorted(why))})" if why else text


def headline_table(models: dict[str, list[dict]], class_names: list[str]) -> str:
    oracle = models.get(ORACLE)
    ob = stat(oracle, "boundary_f1") if oracle else None
    osf = stat(oracle, "segment_f1") if oracle else None
    head = ["model", "seeds", "steps", "boundary F1", "/ oracle", "@1 bp", "@5 bp", "@10 bp", "segment F1", "/ oracle"]
    head += [f"position F1 {c}" for c in class_names]
    rows = ["| " + " | ".join(head) + " |", "|---|---:|---|" + "---:|" * (len(head) - 3)]
    for name, ms in models.items():
        b, s = stat(ms, "boundary_f1"), stat(ms, "segment_f1")
        cells = [name, str(len(ms)), _steps(ms), _cell(b), _fraction(b, ob)]
        cells += [_cell(stat(ms, f"boundary_f1_tolerance.{t}")) for t in ("1", "5", "10")]
        cells += [_cell(s), _fraction(s, osf)]
        cells += [_cell(stat(ms, f"position_f1.{c}")) for c in class_names]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def duration_table(models: dict[str, list[dict]], class_names: list[str]) -> str:
    head = ["model"] + [f"KL {c}" for c in class_names] + [f"W1(log d) {c}" for c in class_names]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name, ms in models.items():
        cells = [name] + [_cell(stat(ms, f"duration_kl.{c}"), 2) for c in class_names]
        cells += [_cell(stat(ms, f"duration_w1_log.{c}"), 3) for c in class_names]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def compare_pair(a: dict | None, b: dict | None) -> str:
    """How model a's boundary F1 summary reads against b's: "better", "worse", "tie" or why not comparable."""
    if a is None or b is None:
        return "no result"
    if a["n"] < 2 and b["n"] < 2:
        return "one seed each: no spread to judge by"
    spread = max(a["max"] - a["min"], b["max"] - b["min"])
    diff = a["mean"] - b["mean"]
    if abs(diff) <= spread:
        return "tie"
    return "better" if diff > 0 else "worse"


def pairs_table(models: dict[str, list[dict]]) -> str:
    trained = [m for m in models if m != ORACLE]
    rows = ["| model A | model B | A - B (boundary F1) | spread (largest range) | reading |", "|---|---|---:|---:|---|"]
    for a, b in itertools.combinations(trained, 2):
        sa, sb = stat(models[a], "boundary_f1"), stat(models[b], "boundary_f1")
        if sa is None or sb is None:
            continue
        spread = max(sa["max"] - sa["min"], sb["max"] - sb["min"])
        rows.append(f"| {a} | {b} | {sa['mean'] - sb['mean']:+.3f} | {spread:.3f} | {compare_pair(sa, sb)} |")
    return "\n".join(rows)


def confusion_rates(conf: dict, class_names: list[str]) -> dict[tuple[str, str], float]:
    """{(true, predicted): share of the true class's positions} for the off-diagonal pairs."""
    out = {}
    for t in class_names:
        total = sum(conf[t].values())
        for q in class_names:
            if q != t:
                out[(t, q)] = conf[t][q] / total if total else float("nan")
    return out


def confusion_table(confusions: dict[str, list[dict]], class_names: list[str]) -> str:
    """Markdown: per model, mean over its runs of each off-diagonal share (true -> predicted)."""
    pairs = [(t, q) for t in class_names for q in class_names if q != t]
    rows = ["| model | runs | " + " | ".join(f"{t} -> {q}" for t, q in pairs) + " |",
            "|---|---:|" + "---:|" * len(pairs)]
    for name, confs in confusions.items():
        rates = [confusion_rates(c, class_names) for c in confs]
        cells = [f"{sum(r[pq] for r in rates) / len(rates):.4f}" for pq in pairs]
        rows.append(f"| {name} | {len(confs)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def rescore_confusions(data_dir: str, run_dirs: list[str]) -> tuple[dict[str, list[dict]], list[str]]:
    """{model: [position confusion of each run]} from the runs' test predictions (GFF3) and the data set."""
    from semicrf.genomics import dataset, formats, metrics

    test = dataset.load_split(data_dir, "test")
    class_names = list(dataset.load_metadata(data_dir)["class_names"])
    names = dataset.sequence_names("test", len(test.labels))
    out: dict[str, list[dict]] = {}
    for run in run_dirs:
        for gff in sorted((Path(run) / "predictions").glob("*.gff3")):
            pred = formats.read_gff3(gff, class_names)
            labels = [pred.get(n, np.zeros_like(y))[: len(y)] for n, y in zip(names, test.labels)]
            scores = metrics.evaluate(test.labels, labels, class_names, max_duration=1)
            out.setdefault(gff.stem, []).append(scores["position_confusion"])
    return out, class_names


def plot_curves(histories: dict, path: Path, oracle: float | None = None) -> None:
    """Validation boundary F1 against steps, one line per (model, seed) key ``<model>_s<seed>``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors: dict[str, str] = {}
    styles = ["-", "--", ":", "-."]
    for key in sorted(histories):
        model, _, seed = key.rpartition("_s")
        records = [r for r in histories[key].get("history") or [] if "val_boundary_f1" in r]
        if not records:
            continue
        color = colors.setdefault(model, f"C{len(colors)}")
        ax.plot([r["steps"] for r in records], [r["val_boundary_f1"] for r in records], styles[(int(seed) - 1) % 4],
                color=color, marker=".", label=f"{model} (seed {seed})")
    if oracle is not None:
        ax.axhline(oracle, color="k", linestyle=":", label=f"oracle (test) {oracle:.3f}")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("validation boundary F1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="headline, duration and pairwise tables of several seeds' runs")
    t.add_argument("runs", nargs="+", help="results directories (or metrics.json files), one per seed; PATH@TAG: that run's models "
                                          "as MODEL@TAG")
    f = sub.add_parser("confusion", help="where each model's test positions go, from its predictions")
    f.add_argument("runs", nargs="+", help="results directories holding predictions/<model>.gff3")
    f.add_argument("--data-dir", required=True, help="the data set the runs were tested on")
    c = sub.add_parser("curves", help="validation boundary F1 against steps of every (model, seed)")
    c.add_argument("histories", help="histories.json of full_run.sh gather")
    c.add_argument("--figure", required=True, help="PNG to write")
    c.add_argument("--oracle", type=float, default=None, help="draw the oracle's boundary F1 as a line")
    args = p.parse_args(argv)
    if args.command == "curves":
        plot_curves(json.loads(Path(args.histories).read_text(encoding="utf-8")), Path(args.figure), args.oracle)
        print(f"wrote {args.figure}")
        return 0
    if args.command == "confusion":
        confusions, class_names = rescore_confusions(args.data_dir, args.runs)
        print(confusion_table(confusions, class_names))
        return 0
    try:
        runs = load_runs(args.runs)
    except ValueError as e:
        p.error(str(e))
    models = per_model(runs)
    class_names = list(runs[0].get("class_names") or [])
    print(headline_table(models, class_names))
    print()
    print(duration_table(models, class_names))
    print()
    print(pairs_table(models))
    confusions = {name: [m["position_confusion"] for m in ms] for name, ms in models.items()
                  if all(isinstance(m.get("position_confusion"), dict) for m in ms)}
    if confusions:
        print()
        print(confusion_table(confusions, class_names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
