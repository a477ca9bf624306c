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
from trainers.prepare import label_matrix
from trainers.published import METRIC_NAMES, Comparison
from trainers.tasks import Evaluation

CURVES, CONFUSION, COOCCURRENCE, PER_CLASS, ROC_PR = (
    "curves.png", "confusion.png", "cooccurrence.png", "per_class.png", "roc_pr.png")
OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0), "frameon": False, "fontsize": 8}  # legends beside data


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_curves(history: pd.DataFrame, path: Path, monitor: str, best_epoch: int | None = None) -> Path:
    """Train/valid loss and the validation metrics per epoch, the checkpoint's epoch and every
    learning-rate change marked."""
    fig = Figure(figsize=(12, 4), layout="constrained")
    loss_ax, metric_ax = fig.subplots(1, 2)
    for col in ("train_loss", "val_loss"):
        loss_ax.plot(history["epoch"], history[col], marker="o", label=col)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    metrics = [c for c in ("val_roc_auc_macro", "val_pr_auc_macro", "val_accuracy", "val_macro_f1") if c in history]
    for col in metrics:
        metric_ax.plot(history["epoch"], history[col], marker="o", label=col, linewidth=2.5 if col == monitor else 1.2)
    metric_ax.set(xlabel="epoch", title=f"validation metrics (checkpoint by {monitor})")
    lr = history["lr"].to_numpy() if "lr" in history else np.array([])
    changes = [(int(history["epoch"].iloc[k]), lr[k]) for k in range(1, len(lr)) if lr[k] != lr[k - 1]]
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color="black", linestyle=":", label=f"best epoch ({best_epoch})")
        for k, (epoch, value) in enumerate(changes):
            ax.axvline(epoch - 0.5, color="tab:gray", linestyle="--", linewidth=0.8,
                       label="learning rate changed" if k == 0 else None)
            ax.annotate(f"lr {value:.2g}", (epoch - 0.5, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                        va="top", ha="right", fontsize=7, color="tab:gray")
        ax.legend(**OUTSIDE)
    return _save(fig, path)


def _heatmap(ax, matrix: np.ndarray, labels: list[str], title: str, xlabel: str, ylabel: str,
             fmt: str = "{:.0f}", vmax: float | None = None) -> None:
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(labels))
    small = max(4, 10 - len(labels) // 8)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=small)
    ax.set_yticks(ticks, labels, fontsize=small)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if len(labels) <= 20:
        top = vmax if vmax is not None else matrix.max()
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if v > top / 2 else "black")


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, caption: str) -> Path:
    """The row-normalised matrix (each true class's clips: where they went, so rare classes show)
    beside the counts."""
    size = 3 + 0.35 * len(labels)
    fig = Figure(figsize=(2 * size + 2, size + 0.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    rows = matrix.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(rows > 0, matrix / np.where(rows > 0, rows, 1), 0.0)
    _heatmap(left, normalised, labels, "share of each true class (rows sum to 1)", "predicted", "true",
             fmt="{:.2f}", vmax=1.0)
    _heatmap(right, matrix, labels, "clips", "predicted", "true")
    fig.suptitle(f"confusion matrix: {caption}")
    return _save(fig, path)


def plot_cooccurrence(true: np.ndarray, pred: np.ndarray, labels: list[str], path: Path, caption: str) -> Path:
    """True and predicted (at 0.5) label co-occurrence counts side by side, diagonal = label counts."""
    size = 3 + 0.3 * len(labels)
    fig = Figure(figsize=(2 * size + 2, size + 0.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    _heatmap(left, true, labels, "true label co-occurrence", "label", "label")
    _heatmap(right, pred, labels, "predicted label co-occurrence", "label", "label")
    fig.suptitle(f"label co-occurrence: {caption}")
    return _save(fig, path)


def plot_roc_pr(y: np.ndarray, prob: np.ndarray, labels: list[str], path: Path, caption: str) -> Path:
    """ROC and precision-recall curves per class (one-vs-rest for a single-label task), each with
    its area; a class without positives or negatives in the split has no curve and says so."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    fig = Figure(figsize=(12, 5), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    palette = _palette(len(labels))
    missing = []
    for k, label in enumerate(labels):
        truth = y[:, k] > 0
        if truth.all() or not truth.any():
            missing.append(label)
            continue
        fpr, tpr, _ = roc_curve(truth, prob[:, k])
        precision, recall, _ = precision_recall_curve(truth, prob[:, k])
        roc_ax.plot(fpr, tpr, color=palette[k], linewidth=1.2, label=f"{label} ({auc(fpr, tpr):.2f})")
        pr_ax.plot(recall, precision, color=palette[k], linewidth=1.2, drawstyle="steps-post",
                   label=f"{label} ({average_precision_score(truth, prob[:, k]):.2f})")
    roc_ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8, label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (area)", xlim=(0, 1), ylim=(0, 1.01))
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall (average precision)", xlim=(0, 1),
              ylim=(0, 1.01))
    for ax in (roc_ax, pr_ax):
        ax.set_aspect("equal")
        if len(labels) <= 30:
            ax.legend(**{**OUTSIDE, "fontsize": 7})
    note = f"; no curve for {', '.join(missing)} (only positives or only negatives)" if missing else ""
    fig.suptitle(f"per-class curves: {caption}{note}")
    return _save(fig, path)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    return [colormaps["tab10" if n <= 10 else "tab20"](k % 20) for k in range(n)]


def plot_per_class(table: pd.DataFrame, path: Path, caption: str) -> Path:
    """F1 and ROC-AUC per class, the class's support under its name; a score of 0 is drawn as a
    zero mark and an undefined AUC is written out, so no missing bar is left to guess."""
    fig = Figure(figsize=(max(7, 0.45 * len(table) + 3), 4.5), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(table))
    f1, auc = table["f1"].to_numpy(float), table["roc_auc"].to_numpy(float)
    ax.bar(x - 0.2, f1, width=0.4, label="F1", color="tab:blue")
    ax.bar(x + 0.2, np.nan_to_num(auc), width=0.4, label="ROC-AUC", color="tab:orange")
    for k in range(len(table)):
        if f1[k] == 0:
            ax.plot([x[k] - 0.38, x[k] - 0.02], [0, 0], color="tab:blue", linewidth=3)
            ax.text(x[k] - 0.2, 0.02, "0", ha="center", va="bottom", fontsize=7, color="tab:blue")
        if np.isnan(auc[k]):
            ax.text(x[k] + 0.2, 0.02, "undefined", ha="center", va="bottom", fontsize=6, rotation=90,
                    color="tab:orange")
    names = [f"{label}\n(n={support})" for label, support in zip(table["label"], table["support"])]
    ax.set_xticks(x, names, rotation=90 if len(table) > 8 else 0, fontsize=max(5, 9 - len(table) // 10))
    ax.set(ylim=(0, 1.05), ylabel="score", title=f"per-class F1 and ROC-AUC: {caption}")
    ax.legend(**OUTSIDE)
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


def figure_caption(evaluation: Evaluation, header: dict[str, str]) -> str:
    """What every figure's title names: the model, the split, the clips and the headline score."""
    summary = evaluation.summary
    score = "accuracy" if "confusion" in evaluation.matrices else "roc_auc_macro"
    bounds = evaluation.intervals.summary.get(score) if evaluation.intervals is not None else None
    shown = f"{summary[score]:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds and not np.isnan(bounds[0])
                                       else "")
    return (f"{header.get('model', 'model')} on {header.get('split', 'test')} ({summary['n_clips']} clips), "
            f"{score} {shown}")


def write_report(out: Path, evaluation: Evaluation, *, title: str, header: dict[str, str],
                 published: Comparison | None = None, history: pd.DataFrame | None = None,
                 monitor: str | None = None, best_epoch: int | None = None) -> list[Path]:
    """report.md plus its figures in `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    labels = list(evaluation.per_class["label"])
    caption = figure_caption(evaluation, header)
    figures = []
    if history is not None and len(history):
        figures.append(plot_curves(history, out / CURVES, monitor or "val_loss", best_epoch))
    if "confusion" in evaluation.matrices:
        figures.append(plot_confusion(evaluation.matrices["confusion"], labels, out / CONFUSION, caption))
    else:
        m = evaluation.matrices
        figures.append(plot_cooccurrence(m["cooccurrence_true"], m["cooccurrence_pred"], labels, out / COOCCURRENCE,
                                         caption))
    if evaluation.predictions is not None:
        clips = evaluation.predictions[evaluation.predictions["level"] == "clip"]
        y = label_matrix(clips["labels"], labels)
        figures.append(plot_roc_pr(y, clips[[f"prob_{label}" for label in labels]].to_numpy(), labels,
                                   out / ROC_PR, caption))
    figures.append(plot_per_class(evaluation.per_class, out / PER_CLASS, caption))

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
