"""The human-readable side of a run: report.md with the per-class table and the PNG figures.

Figures use matplotlib's object API (`Figure`, Agg canvas), so no global pyplot state and no
display are involved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from trainers.io import atomic_path, write_text
from trainers.published import METRIC_NAMES, Comparison
from trainers.tasks import Evaluation

CURVES, CONFUSION, COOCCURRENCE, PER_CLASS = "curves.png", "confusion.png", "cooccurrence.png", "per_class.png"


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_curves(history: pd.DataFrame, path: Path, monitor: str) -> Path:
    """Train/valid loss and the validation metrics per epoch."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for col in ("train_loss", "val_loss"):
        loss_ax.plot(history["epoch"], history[col], marker="o", label=col)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    metrics = [c for c in ("val_roc_auc_macro", "val_pr_auc_macro", "val_accuracy", "val_macro_f1") if c in history]
    for col in metrics:
        metric_ax.plot(history["epoch"], history[col], marker="o", label=col, linewidth=2.5 if col == monitor else 1.2)
    metric_ax.set(xlabel="epoch", title=f"validation metrics (checkpoint by {monitor})")
    metric_ax.legend()
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def _heatmap(ax, matrix: np.ndarray, labels: list[str], title: str, xlabel: str, ylabel: str) -> None:
    image = ax.imshow(matrix, cmap="Blues")
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(labels))
    small = max(4, 10 - len(labels) // 8)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=small)
    ax.set_yticks(ticks, labels, fontsize=small)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(labels) <= 20:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                    color="white" if v > matrix.max() / 2 else "black")


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path) -> Path:
    size = 3 + 0.35 * len(labels)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    _heatmap(fig.subplots(), matrix, labels, "confusion matrix", "predicted", "true")
    return _save(fig, path)


def plot_cooccurrence(true: np.ndarray, pred: np.ndarray, labels: list[str], path: Path) -> Path:
    """True and predicted (at 0.5) label co-occurrence counts side by side, diagonal = label counts."""
    size = 3 + 0.3 * len(labels)
    fig = Figure(figsize=(2 * size + 2, size), layout="constrained")
    left, right = fig.subplots(1, 2)
    _heatmap(left, true, labels, "true label co-occurrence", "label", "label")
    _heatmap(right, pred, labels, "predicted label co-occurrence", "label", "label")
    return _save(fig, path)


def plot_per_class(table: pd.DataFrame, path: Path) -> Path:
    fig = Figure(figsize=(max(6, 0.3 * len(table) + 2), 4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["f1"], width=0.4, label="F1")
    ax.bar(x + 0.2, table["roc_auc"].fillna(0), width=0.4, label="ROC-AUC")
    ax.set_xticks(x, table["label"], rotation=90, fontsize=max(5, 10 - len(table) // 10))
    ax.set(ylim=(0, 1), title="per-class F1 and ROC-AUC (missing bars: AUC undefined)")
    ax.legend(loc="lower left", bbox_to_anchor=(1.0, 0.0), frameon=False)  # beside the bars, never on them
    return _save(fig, path)


def _range(bounds: tuple[float, float]) -> str:
    return "—" if np.isnan(bounds[0]) else f"{bounds[0]:.3f} – {bounds[1]:.3f}"


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "—" if v is None or np.isnan(v) else f"{v:.3f}"


def _with_interval(row: pd.Series, column: str) -> str:
    """A value, with its 95 % interval where the table carries one (`COLUMN_low`, `COLUMN_high`)."""
    if f"{column}_low" not in row or np.isnan(row[f"{column}_low"]):
        return _fmt(row[column])
    return f"{_fmt(row[column])} [{_fmt(row[f'{column}_low'])}, {_fmt(row[f'{column}_high'])}]"


def per_class_markdown(table: pd.DataFrame) -> str:
    """The source reports' layout: one row per class, then the macro and support-weighted averages;
    recall, F1 and AUC with their 95 % group-bootstrap intervals where the table has them."""
    cols = ["support", "recall", "ovr_accuracy", "precision", "f1", "roc_auc"]
    head = ("| label | support | recall (per-class accuracy) | one-vs-rest accuracy | precision | F1 | AUC |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    rows = ["| " + " | ".join([str(r["label"])] + [_with_interval(r, c) for c in cols]) + " |"
            for _, r in table.iterrows()]
    support = table["support"].to_numpy()
    macro, weighted = [int(support.sum())], [int(support.sum())]
    for c in cols[1:]:
        values = table[c].to_numpy(dtype=float)
        known = ~np.isnan(values)  # AUC is undefined for a class missing from the split
        macro.append(values[known].mean() if known.any() else np.nan)
        weighted.append(np.average(values[known], weights=support[known]) if support[known].sum() else np.nan)
    rows.append("| **macro avg** | " + " | ".join(_fmt(v) for v in macro) + " |")
    rows.append("| **weighted avg** | " + " | ".join(_fmt(v) for v in weighted) + " |")
    return head + "\n".join(rows) + "\n"


DEFINITIONS = """### Definitions

- **recall (per-class accuracy)**: clips of the class predicted as it, over the clips of the class
  (the GTZAN report's per-class accuracy). **one-vs-rest accuracy**: correct yes/no decisions about
  the class over all clips (dominated by the other classes' clips).
- Multi-label: a tag is predicted at probability >= 0.5; `accuracy` is the exact match of a
  clip's whole tag set, `label_accuracy` the mean one-vs-rest accuracy over tags.
- **loss**: the loss of each clip's averaged prediction (the mean of its views' probabilities,
  the prediction every other metric scores), unweighted.
- Macro averages weigh classes equally; a class without positives or negatives has no AUC and
  is left out of the AUC averages.
"""


def published_markdown(comparison: Comparison) -> list[str]:
    """The report's headline beside this run's, and what differs between the two setups."""
    p = comparison.published
    lines = ["## Beside the published result", "",
             f"The recipe `{comparison.recipe}` reproduces the {p.report}'s {p.setup}.", "",
             f"| | {p.split} {METRIC_NAMES[p.metric]} | 95 % interval | protocol |", "|---|---:|---:|---|",
             f"| {p.report} | {p.value:g} | not stated | {p.protocol} |",
             f"| this run | {comparison.ours:.4f} | "
             f"{_range(comparison.interval) if comparison.interval is not None else '—'} | see **splits** above |"]
    if p.also:
        lines += ["", "The report also states: " + ", ".join(f"{k} {v:g}" for k, v in p.also.items()) + "."]
    lines += ["", "What differs from the report's setup:", ""]
    lines += [f"- {d}" for d in comparison.differences] or ["- nothing this toolkit records"]
    return lines + [""]


def write_report(out: Path, evaluation: Evaluation, *, title: str, header: dict[str, str],
                 published: Comparison | None = None, history: pd.DataFrame | None = None,
                 monitor: str | None = None) -> list[Path]:
    """report.md plus its figures in `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    labels = list(evaluation.per_class["label"])
    figures = []
    if history is not None and len(history):
        figures.append(plot_curves(history, out / CURVES, monitor or "val_loss"))
    if "confusion" in evaluation.matrices:
        figures.append(plot_confusion(evaluation.matrices["confusion"], labels, out / CONFUSION))
    else:
        m = evaluation.matrices
        figures.append(plot_cooccurrence(m["cooccurrence_true"], m["cooccurrence_pred"], labels, out / COOCCURRENCE))
    figures.append(plot_per_class(evaluation.per_class, out / PER_CLASS))

    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", "## Summary" + (" (per clip: its views' predictions averaged)" if evaluation.levels else ""), ""]
    intervals = evaluation.intervals
    if intervals is not None:
        lines += [f"{intervals.n_clips} clips from {intervals.n_groups} groups. The 95 % intervals come from "
                  f"{intervals.resamples} bootstrap resamples of the groups (songs, artists: the manifest's "
                  "`group`), which share their mistakes; few groups mean wide intervals.", ""]
    lines += ["| metric | value | 95 % interval |", "|---|---:|---:|"]
    ranges = intervals.summary if intervals is not None else {}
    lines += [f"| {k} | {_fmt(v)} | {_range(ranges[k]) if k in ranges else ''} |"
              for k, v in evaluation.summary.items()]
    if published is not None:
        lines += [""] + published_markdown(published)
    for level, summary in evaluation.levels.items():
        lines += ["", f"## Per {level.removesuffix('s')} (each of a clip's {level} scored on its own)", "",
                  "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
    lines += ["", "## Per class", "", per_class_markdown(evaluation.per_class), DEFINITIONS]
    if evaluation.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in evaluation.notes] + [""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    write_text(out / "report.md", "\n".join(lines))
    return [out / "report.md", *figures]
