"""Figures of the synthetic-genomics benchmark.

``plot_duration_comparison`` draws ``duration_comparison.png``: one row per
class, one column for the ground truth and one per model, each panel a
histogram of segment durations on a log axis. ``plot_training_curves`` draws
``training_curves.png``: training loss, validation boundary F1 and validation
segment F1 against the epoch, one line per model.

Histograms on a log axis
    Durations are integers, so the bins of a row are runs of integers
    ``[a_i, a_{i+1})`` with roughly log-spaced ``a_i``, shared by every panel of
    the row and spanning every true and predicted duration of that class (and
    the learned priors' support), so nothing is cut off. A bin is drawn from
    ``a_i - 1/2`` to ``a_{i+1} - 1/2`` and its height is the fraction of segments
    in it divided by its width in ``log10`` units: a density per decade, whose
    area on the log axis is the probability, so panels with very different
    numbers of segments compare directly.

Learned duration prior
    A semi-CRF's ``durations`` parameter (K, C) gives, per class ``c``, the
    prior ``softmax(durations[:, c])`` over ``d = 1 .. K``: the segment-length
    law the model would use with uninformative emissions. It is binned exactly
    like the histograms, so its curve is directly comparable with the truth.

matplotlib is imported inside the functions, and figures are drawn on a bare
``Figure`` (Agg canvas), so neither the package nor pyplot's global state is
touched. Files are written atomically (``formats.atomic_output``): a
temporary PNG in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .formats import atomic_output
from .metrics import _check_durations

__all__ = ["plot_duration_comparison", "plot_training_curves"]

_NUM_BINS = 40
_TRUTH_FILL = "0.55"


# ----------------------------------------------------------------------------
# shared helpers


def _check_png_path(path) -> Path:
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise ValueError(f"path must be a file path, got {path!r}") from None
    if p.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(p)!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"the folder of path does not exist: {str(parent)!r}; create it first")
    return p


def _save_atomic(fig, path: Path, dpi: int) -> str:
    # The same temporary-file-and-rename as every other output of the benchmark (formats.atomic_output).
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return str(path)


# red (C3) is kept for the learned priors, so no model is drawn in it
_MODEL_PALETTE = ("C0", "C1", "C2", "C4", "C5", "C6", "C8", "C9", "C7")
_PRIOR_COLOR = "C3"


def _model_colors(models: Sequence[str]) -> dict[str, str]:
    return {m: _MODEL_PALETTE[i % len(_MODEL_PALETTE)] for i, m in enumerate(models)}


def _check_names(class_names) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names must be a list of class names, got {class_names!r}")
    names = list(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"class_names must be a non-empty list of strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, got {names!r}")
    return names


def _check_keys(mapping, expected: Sequence[str], what: str, kind: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{what} must be a dict keyed by {kind}, got {type(mapping).__name__}")
    missing = [k for k in expected if k not in mapping]
    extra = [k for k in mapping if k not in expected]
    if missing or extra:
        raise ValueError(
            f"{what} must have exactly one entry per {kind} {list(expected)}; "
            f"missing {missing}, unexpected {extra}"
        )


# ----------------------------------------------------------------------------
# duration comparison


def _row_edges(max_value: int, num_bins: int = _NUM_BINS) -> np.ndarray:
    """Integer bin edges ``1 = a_0 < ... < a_n = max_value + 1``, roughly log-spaced.

    Bin i holds the durations ``a_i <= d < a_{i+1}``; flooring makes the short
    bins one integer wide instead of empty.
    """
    edges = np.unique(np.floor(np.geomspace(1, max_value + 1, num_bins + 1)).astype(np.int64))
    edges[0], edges[-1] = 1, max_value + 1
    return edges


def _log_density(durations: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Fraction of mass per bin divided by the bin's width in log10(duration)."""
    idx = np.searchsorted(edges, durations, side="right") - 1
    mass = np.bincount(idx, weights=weights, minlength=edges.size - 1)[: edges.size - 1].astype(np.float64)
    total = mass.sum()
    if total > 0:
        mass /= total
    return mass / np.diff(np.log10(edges - 0.5))


def _prior_pmf(log_scores: np.ndarray) -> np.ndarray:
    """softmax over durations 1..K of one column of log-scores (K,)."""
    finite_max = np.max(log_scores)
    w = np.exp(log_scores - finite_max)
    return w / w.sum()


def _as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_priors(learned_priors, models: list[str], num_classes: int) -> dict[str, np.ndarray]:
    if learned_priors is None:
        return {}
    if not isinstance(learned_priors, Mapping):
        raise ValueError("learned_priors must be a dict {model_name: (K, C) array of duration log-scores} or None")
    out = {}
    for model, scores in learned_priors.items():
        if model not in models:
            raise ValueError(f"learned_priors has model {model!r}, which is not in pred_durations {models}")
        a = _as_array(scores).astype(np.float64)
        if a.ndim != 2 or a.shape[1] != num_classes or a.shape[0] < 1:
            raise ValueError(
                f"learned_priors[{model!r}] must have shape (K, {num_classes}) (durations x classes), got {a.shape}"
            )
        if np.isnan(a).any() or np.isposinf(a).any():
            raise ValueError(f"learned_priors[{model!r}] holds NaN or +inf")
        if np.isneginf(a).all(axis=0).any():
            raise ValueError(f"learned_priors[{model!r}] has a class whose durations are all -inf")
        out[model] = a
    return out


def _kl_text(value) -> str:
    if value is None:
        return "KL n/a"
    value = float(value)
    return "KL n/a" if math.isnan(value) else f"KL = {value:.3g}"


def plot_duration_comparison(
    path,
    class_names: Sequence[str],
    true_durations: Mapping[str, np.ndarray],
    pred_durations: Mapping[str, Mapping[str, np.ndarray]],
    kl: Mapping[str, Mapping[str, float | None]],
    learned_priors: Mapping[str, np.ndarray] | None = None,
    max_duration: int | None = None,
) -> str:
    """Draw the duration "money plot" and write it to ``path`` (a .png).

    class_names: C names, one row each. true_durations: name -> (n,) ints, the
    true segment durations. pred_durations: model -> (name -> (n,) ints), one
    column per model in the order given. kl: model -> (name -> KL(true || pred)
    or None), written on each panel. learned_priors: model -> (K, C) duration
    log-scores; ``softmax(scores[:, c])`` is overlaid on that model's row-c
    panel. max_duration: the models' K, marked when the true durations exceed
    it. Returns the path written.
    """
    from matplotlib.figure import Figure

    out_path = _check_png_path(path)
    names = _check_names(class_names)
    max_duration, models, truth, preds, priors = _check_comparison_inputs(
        names, true_durations, pred_durations, kl, learned_priors, max_duration)

    colors = _model_colors(models)
    ncols, nrows = 1 + len(models), len(names)
    # At least 8.6 inches wide: the title and the legend below need it even with one model's column.
    fig = Figure(figsize=(max(2.9 * ncols + 0.6, 8.6), 2.3 * nrows + 1.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex="row", sharey="row", squeeze=False)
    k_line_drawn = False
    for r, c_name in enumerate(names):
        if _draw_duration_row(axes, r, c_name, truth[c_name], {m: preds[m][c_name] for m in models}, models,
                              colors, priors, kl, max_duration):
            k_line_drawn = True
    _duration_legend(fig, bool(priors), k_line_drawn, max_duration)
    fig.suptitle(
        "Segment durations: ground truth vs each model's predicted segmentation\n"
        "(KL = KL(true || predicted) of duration histograms over 1..K, durations > K in the last bin)",
        fontsize=12,
    )
    return _save_atomic(fig, out_path, dpi=110)


def _check_comparison_inputs(names, true_durations, pred_durations, kl, learned_priors, max_duration):
    """The money plot's inputs checked: (K, models, truth: name -> (n,), preds: model -> name -> (n,),
    priors: model -> (K, C)); raises ValueError naming the argument otherwise."""
    if max_duration is None:
        raise ValueError("max_duration is required: pass the models' longest segment duration K")
    if isinstance(max_duration, bool) or not isinstance(max_duration, (int, np.integer)) or max_duration < 1:
        raise ValueError(f"max_duration must be a positive integer, got {max_duration!r}")
    max_duration = int(max_duration)
    _check_keys(true_durations, names, "true_durations", "class name")
    if not isinstance(pred_durations, Mapping) or not pred_durations:
        raise ValueError("pred_durations must be a non-empty dict {model_name: {class_name: durations}}")
    models = [str(m) for m in pred_durations]
    truth = {c: _check_durations(true_durations[c], f"true_durations[{c!r}]") for c in names}
    preds = {}
    for m in models:
        _check_keys(pred_durations[m], names, f"pred_durations[{m!r}]", "class name")
        preds[m] = {c: _check_durations(pred_durations[m][c], f"pred_durations[{m!r}][{c!r}]") for c in names}
    _check_keys(kl, models, "kl", "model of pred_durations")
    for m in models:
        _check_keys(kl[m], names, f"kl[{m!r}]", "class name")
    priors = _check_priors(learned_priors, models, len(names))
    return max_duration, models, truth, preds, priors


def _draw_duration_row(axes, r, c_name, t, row_preds, models, colors, priors, kl, max_duration) -> bool:
    """Row ``r`` of the money plot, class ``c_name``: the true durations ``t`` (n,), then one panel per
    model (``row_preds``: model -> (n,)), one histogram range for the row. Returns whether the row
    marks K (true durations beyond it)."""
    nrows, ncols = axes.shape
    row_max = max(
        [int(t.max()) if t.size else 1]
        + [int(row_preds[m].max()) for m in models if row_preds[m].size]
        + [a.shape[0] for a in priors.values()]
    )
    if not t.size and not any(row_preds[m].size for m in models):
        row_max = max(row_max, max_duration)
    edges = _row_edges(row_max)
    x_edges = edges - 0.5
    true_density = _log_density(t, edges)
    row_peak = float(true_density.max())
    show_k = t.size > 0 and int(t.max()) > max_duration

    for col in range(ncols):
        ax = axes[r, col]
        ax.set_xscale("log")
        ax.set_xlim(x_edges[0], x_edges[-1])
        if col == 0:
            label, color = "ground truth", _TRUTH_FILL
            ax.stairs(true_density, x_edges, fill=True, color=_TRUTH_FILL)
            note = f"n = {t.size}" + (f"\nmedian {np.median(t):.0f}" if t.size else "")
        else:
            label = models[col - 1]
            color = colors[label]
            prior = priors[label][:, r] if label in priors else None
            note, row_peak = _draw_model_panel(ax, row_preds[label], color, true_density, edges, x_edges, prior,
                                               kl[label][c_name], row_peak)
        if show_k:
            ax.axvline(max_duration, color="0.3", linestyle=":", linewidth=1.2)
        ax.text(
            0.97, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=8,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
        if r == 0:
            ax.set_title(label, fontsize=11, fontweight="bold", color="black" if col == 0 else color)
        if col == 0:
            ax.set_ylabel(f"{c_name}\ndensity per decade", fontsize=10)
        if r == nrows - 1:
            ax.set_xlabel("segment duration (positions, log scale)", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.25)
    # headroom so the notes in the upper corner never hide the curves
    axes[r, 0].set_ylim(0, 1.45 * row_peak if row_peak > 0 else 1.0)
    return show_k


def _draw_model_panel(ax, d, color, true_density, edges, x_edges, prior, kl_value, row_peak):
    """One model's panel: its predicted durations ``d`` (n,) filled, the truth outlined, its learned
    prior (K,) log-scores dashed when given. Returns (the panel's note, the row's peak so far)."""
    density = _log_density(d, edges)
    row_peak = max(row_peak, float(density.max()))
    ax.stairs(density, x_edges, fill=True, color=color, alpha=0.55)
    ax.stairs(true_density, x_edges, color="black", linewidth=1.1)
    if prior is not None:
        pmf = _prior_pmf(prior)
        support = np.arange(1, pmf.size + 1)
        prior_density = _log_density(support, edges, weights=pmf)
        row_peak = max(row_peak, float(prior_density.max()))
        ax.stairs(prior_density, x_edges, color=_PRIOR_COLOR, linewidth=1.6, linestyle="--")
    if d.size:
        note = f"{_kl_text(kl_value)}\nn = {d.size}, median {np.median(d):.0f}"
    else:
        note = f"{_kl_text(kl_value)}\nno predicted segments"
    return note, row_peak


def _duration_legend(fig, has_priors: bool, k_line_drawn: bool, max_duration: int) -> None:
    """The money plot's legend, below the panels: only the marks that some panel shows."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=_TRUTH_FILL, label="ground truth"),
        Patch(facecolor="white", edgecolor="black", label="ground truth (outline on model panels)"),
        Patch(facecolor="C0", alpha=0.55, label="predicted segments (model colour)"),
    ]
    if has_priors:
        handles.append(
            Line2D([], [], color=_PRIOR_COLOR, linestyle="--", linewidth=1.6,
                   label="learned duration prior softmax(durations[:, c]), d = 1..K")
        )
    if k_line_drawn:
        handles.append(Line2D([], [], color="0.3", linestyle=":", label=f"K = {max_duration} (longest single segment)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2), fontsize=9, frameon=False)


# ----------------------------------------------------------------------------
# training curves


def _series(records: list[Mapping], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of one key, None when no record has it; None values become NaN."""
    if not any(key in rec for rec in records):
        return None
    pairs = [(rec["epoch"], rec.get(key)) for rec in records if key in rec]
    epochs = np.array([float(e) for e, _ in pairs])
    values = np.array([math.nan if v is None else float(v) for _, v in pairs])
    order = np.argsort(epochs, kind="stable")
    return epochs[order], values[order]


def _check_history(history) -> dict[str, list[Mapping]]:
    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict {model_name: [records per epoch]}")
    numeric = ("epoch", "train_loss", "train_loss_per_position", "val_loss", "val_loss_per_position",
               "val_boundary_f1", "val_segment_f1")
    out = {}
    for model, records in history.items():
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence) or not records:
            raise ValueError(f"history[{model!r}] must be a non-empty list of per-epoch records (dicts)")
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise ValueError(f"history[{model!r}][{i}] must be a dict, got {type(rec).__name__}")
            for key in ("epoch", "train_loss"):
                if key not in rec:
                    raise ValueError(f"history[{model!r}][{i}] has no {key!r}; every record needs 'epoch' and 'train_loss'")
            if rec["epoch"] is None:
                raise ValueError(f"history[{model!r}][{i}]['epoch'] is None; give the epoch number")
            for key in numeric:
                v = rec.get(key)
                if v is None:
                    continue
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"history[{model!r}][{i}][{key!r}] must be a number, got {v!r}") from None
        out[str(model)] = list(records)
    return out


def plot_training_curves(path, history: Mapping[str, Sequence[Mapping]]) -> str:
    """Draw training loss and validation F1 curves and write them to ``path`` (a .png).

    history: model -> list of per-epoch records with ``epoch`` and ``train_loss``
    and optionally ``train_loss_per_position``, ``val_loss``,
    ``val_loss_per_position``, ``val_boundary_f1``, ``val_segment_f1``.
    Losses are shown per position for models that report it (the losses of
    different models sum over different things, so raw values are not
    comparable); otherwise as given, which the panel title says. Returns the
    path written.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    out_path = _check_png_path(path)
    hist = _check_history(history)
    models = list(hist)
    colors = _model_colors(models)

    fig = Figure(figsize=(15.5, 4.6), layout="constrained")
    ax_loss, ax_bf1, ax_sf1 = fig.subplots(1, 3)
    plotted_losses = []
    raw_models = []
    model_labels = {}

    for m in models:
        recs = hist[m]
        per_position = all(rec.get("train_loss_per_position") is not None for rec in recs)
        suffix = "_per_position" if per_position else ""
        if not per_position:
            raw_models.append(m)
        marker = "o" if len(recs) <= 30 else None
        train = _series(recs, "train_loss" + suffix)
        bad = train[0][~np.isfinite(train[1])]
        # a diverged run leaves a gap in its curve; say so rather than let it look short
        model_labels[m] = m + (f" (non-finite loss from epoch {bad[0]:g})" if bad.size else "")
        ax_loss.plot(train[0], train[1], color=colors[m], marker=marker, markersize=3)
        plotted_losses.append(train[1])
        val = _series(recs, "val_loss" + suffix)
        if val is not None:
            ax_loss.plot(val[0], val[1], color=colors[m], linestyle="--", marker=marker, markersize=3)
            plotted_losses.append(val[1])
        for ax, key in ((ax_bf1, "val_boundary_f1"), (ax_sf1, "val_segment_f1")):
            s = _series(recs, key)
            if s is not None:
                ax.plot(s[0], s[1], color=colors[m], marker=marker, markersize=3)

    values = np.concatenate(plotted_losses)
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite > 0):
        ax_loss.set_yscale("log")
    if not raw_models:
        ax_loss.set_title("training loss per position (dashed: validation)")
        ax_loss.set_ylabel("loss per position")
    elif len(raw_models) == len(models):
        ax_loss.set_title("training loss as reported (dashed: validation)\nscales differ between models")
        ax_loss.set_ylabel("loss")
    else:
        ax_loss.set_title(
            "training loss per position (dashed: validation)\n"
            f"as reported, not per position: {', '.join(raw_models)}"
        )
        ax_loss.set_ylabel("loss")
    for ax, title in ((ax_bf1, "validation boundary F1 (exact)"), (ax_sf1, "validation segment F1")):
        ax.set_title(title)
        ax.set_ylabel("F1")
        if not ax.lines:
            ax.text(0.5, 0.5, "no validation records", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_ylim(-0.02, 1.02)
    for ax in (ax_loss, ax_bf1, ax_sf1):
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)

    handles = [Line2D([], [], color=colors[m], label=model_labels[m]) for m in models]
    handles.append(Line2D([], [], color="0.3", linestyle="-", label="training"))
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="validation"))
    fig.legend(handles=handles, loc="outside right center", fontsize=9, frameon=False)
    fig.suptitle("Training curves per model", fontsize=13)
    return _save_atomic(fig, out_path, dpi=110)
