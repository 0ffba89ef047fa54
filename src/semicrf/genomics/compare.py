"""The ``compare`` command: the comparison table of one or several benchmark runs.

``compare --results-dir DIR`` prints one row per model: boundary F1 (exact and
within 5 positions), segment F1 and the duration KL of each class, and --
when the results record it -- the optimizer steps each model trained, marked
``(budget)``, ``(time budget)`` or ``(patience)`` when ``--step-budget``,
``--time-budget`` or ``--patience`` stopped it before ``--epochs``, so that
an undertrained model is visible. Given
several directories (runs at several sequence lengths, say) it prints one
table over all of them, with the run's directory and sequence length first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS_FILE = "metrics.json"
RESULTS_FORMAT = "semicrf-benchmark-results"
MISSING = "-"


class ResultsError(ValueError):
    """A results directory without a usable metrics.json; the message says what to do."""


def load_results(results_dir) -> dict:
    """The parsed ``metrics.json`` of a results directory (raises :class:`ResultsError`)."""
    d = Path(results_dir)
    path = d / METRICS_FILE
    if not d.is_dir():
        raise ResultsError(f"results directory {str(d)!r} does not exist; give the --output-dir of a finished "
                           "'run' command")
    if not path.is_file():
        raise ResultsError(f"{path} is missing: {d} holds no finished benchmark run (run it with "
                           f"'semicrf-bench run --output-dir {d} ...', or --resume an interrupted one)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path} is unreadable ({e}); rerun the benchmark into a fresh directory") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT or not isinstance(doc.get("models"), dict):
        raise ResultsError(f"{path} is not a metrics file of this benchmark (no 'format': {RESULTS_FORMAT!r} "
                           "and 'models' object); rerun the benchmark into a fresh directory")
    if not doc["models"]:
        raise ResultsError(f"{path} has no model results yet; let the run finish or --resume it")
    doc["_dir"] = str(d)
    return doc


def _num(x, digits: int = 3) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return MISSING
    return f"{x:.{digits}f}"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _steps(m: dict) -> str:
    steps = m.get("steps_trained")
    if steps is None or isinstance(steps, bool) or not isinstance(steps, int):
        return MISSING
    why = {"step_budget": " (budget)", "time_budget": " (time budget)", "patience": " (patience)"}.get(
        m.get("stopped_by"), "")
    return f"{steps}{why}"


def _seq_length(doc: dict) -> str:
    data = doc.get("data", {})
    value = data.get("seq_length") or data.get("test_mean_length")
    return str(int(value)) if isinstance(value, (int, float)) else MISSING


def format_table(docs: list[dict], run_names: list[str] | None = None) -> str:
    """A pipe-separated table of the models of ``docs`` (from :func:`load_results`).

    With several docs, each row starts with the run's name and sequence length.
    """
    if not docs:
        raise ValueError("format_table needs at least one results document")
    classes: list[str] = []
    for doc in docs:
        for c in doc.get("class_names", []):
            if c not in classes:
                classes.append(c)
    multi = len(docs) > 1
    # Results written before steps were recorded keep their old table.
    with_steps = any("steps_trained" in m for doc in docs for m in doc["models"].values() if isinstance(m, dict))
    if run_names is None:
        run_names = [Path(doc.get("_dir", f"run{i}")).name or doc.get("_dir", "") for i, doc in enumerate(docs)]
        if len(set(run_names)) != len(run_names):
            run_names = [doc.get("_dir", f"run{i}") for i, doc in enumerate(docs)]
    header = (["Run", "T"] if multi else []) + ["Model"] + (["Steps"] if with_steps else []) \
        + ["Boundary F1", "Boundary F1 @5", "Segment F1"] + [f"Duration KL ({c})" for c in classes]
    rows = []
    for name, doc in zip(run_names, docs):
        for model, m in doc["models"].items():
            row = [name, _seq_length(doc)] if multi else []
            row += [model] + ([_steps(m)] if with_steps else [])
            row += [_num(m.get("boundary_f1")), _num(_get(m, "boundary_f1_tolerance", "5")), _num(m.get("segment_f1"))]
            row += [_num(_get(m, "duration_kl", c), 2) for c in classes]
            rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    numeric = [h not in ("Run", "Model") for h in header]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w)
                                 for c, w, num in zip(cells, widths, numeric)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if num else "-") for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--results-dir", nargs="+", required=True, metavar="DIR",
                        help="one or more --output-dir of the run command")
    return parser


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``compare`` subcommand."""
    p = subparsers.add_parser(
        "compare",
        help="print the comparison table of one or several runs",
        description="Print boundary F1, segment F1 and per-class duration KL of every model of one or several "
        "benchmark runs (several: one table across them).",
    )
    add_compare_arguments(p)
    p.set_defaults(func=compare_main)
    return p


def compare_main(args) -> int:
    """Print the table for ``args.results_dir``; returns 0."""
    dirs = args.results_dir if isinstance(args.results_dir, (list, tuple)) else [args.results_dir]
    docs = [load_results(d) for d in dirs]
    print(format_table(docs))
    if len(docs) == 1:
        doc = docs[0]
        cfg = doc.get("config", {})
        print(f"\n{doc['_dir']}: encoder {cfg.get('encoder', MISSING)}, K={cfg.get('max_duration', MISSING)}, "
              f"{cfg.get('epochs', MISSING)} epochs, T~{_seq_length(doc)}; KL = KL(true || predicted) of the "
              "duration histograms over 1..K")
    return 0
