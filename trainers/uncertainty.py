"""How far a test score could move with other songs: 95 % intervals from a bootstrap over groups.

Clips of one group (a song, an artist: the manifest's `group`) share their mistakes, so
resampling clips would overstate what a test set of a few groups shows. Each resample draws the
test set's groups with replacement; a clip then weighs as many times as its group was drawn, and
every metric is the weighted one, computed for all resamples at once: accuracy and F1 from
weighted confusion counts, ROC-AUC by the weighted Mann-Whitney statistic (what scikit-learn's
`roc_auc_score` gives with those sample weights; the tests check it). Intervals are the 2.5th
and 97.5th percentiles; a class without positives or negatives in a resample is left out of that
resample's AUC, and an interval is NaN where no resample defines the metric.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
PERCENTILES = (2.5, 97.5)


@dataclass(frozen=True)
class Intervals:
    n_clips: int
    n_groups: int
    resamples: int
    summary: dict[str, tuple[float, float]]  # accuracy, macro_f1, macro_precision, roc_auc_macro -> (low, high)
    per_class: dict[str, list[tuple[float, float]]]  # recall, f1, roc_auc -> one interval per class

    def to_json(self) -> dict:
        return {"n_groups": self.n_groups, "bootstrap": {"resamples": self.resamples, "resampled": "groups",
                                                          "level": 0.95},
                "intervals": {k: list(v) for k, v in self.summary.items()}}


def group_weights(groups: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(resamples, clips): how many times each clip's group was drawn in each resample."""
    unique, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(unique), np.full(len(unique), 1.0 / len(unique)), size=resamples)
    return counts[:, inverse].astype(np.float64)


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of `scores` for `positive` under each row of `weights` (resamples, clips); ties
    count half; NaN where a row weighs no positive or no negative."""
    order = np.argsort(scores, kind="stable")
    s, t, w = scores[order], positive[order].astype(bool), weights[:, order]
    new = np.r_[True, s[1:] != s[:-1]]
    starts, block = np.flatnonzero(new), np.cumsum(new) - 1
    negatives = np.add.reduceat(w * ~t, starts, axis=1)  # (resamples, distinct scores)
    below = np.cumsum(negatives, axis=1) - negatives
    credit = below[:, block] + 0.5 * negatives[:, block]
    pos = w * t
    num, den = (pos * credit).sum(1), pos.sum(1) * negatives.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _ratio(a: np.ndarray, b: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), empty)


def weighted_metrics(task: str, y: np.ndarray, prob: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every bootstrapped metric under each row of clip weights `w` (resamples, clips): summary
    metrics as (resamples,) arrays (`accuracy`, `macro_f1`, `macro_precision`, `roc_auc_macro`),
    per-class ones as (resamples, classes) (`recall`, `f1`, `roc_auc`). A row of ones gives the
    plain, unweighted metrics. `task` is "multiclass" (one label per clip) or "multilabel" (a
    decision at 0.5 per label)."""
    y, prob = np.asarray(y) > 0, np.asarray(prob, dtype=np.float64)
    total = w.sum(1)
    if task == "multiclass":
        truth = np.eye(y.shape[1], dtype=bool)[y.argmax(1)]
        decided = np.eye(y.shape[1], dtype=bool)[prob.argmax(1)]
        accuracy = _ratio(w @ (truth & decided).any(1), total, np.nan)
    else:
        truth, decided = y, prob >= 0.5
        accuracy = _ratio(w @ (truth == decided).all(1), total, np.nan)
    tp, fp, fn = w @ (truth & decided), w @ (~truth & decided), w @ (truth & ~decided)  # (resamples, classes)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)  # scikit-learn's zero_division=0
    precision = _ratio(tp, tp + fp, 0.0)
    auc = np.stack([weighted_auc(prob[:, k], truth[:, k], w) for k in range(y.shape[1])], axis=1)
    with warnings.catch_warnings():  # a resample in which no class has both kinds: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        auc_macro = np.nanmean(auc, axis=1)
    return {"accuracy": accuracy, "macro_f1": f1.mean(1), "macro_precision": precision.mean(1),
            "roc_auc_macro": auc_macro, "recall": _ratio(tp, tp + fn, np.nan), "f1": f1, "roc_auc": auc}


SUMMARY = ("accuracy", "macro_f1", "macro_precision", "roc_auc_macro")
PER_CLASS = ("recall", "f1", "roc_auc")


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of the finite values; NaN where there are none."""
    values = values[np.isfinite(values)]
    return tuple(float(v) for v in np.percentile(values, PERCENTILES)) if len(values) else (np.nan, np.nan)


def bootstrap(task: str, y: np.ndarray, prob: np.ndarray, groups: np.ndarray, *, resamples: int = RESAMPLES,
              seed: int = 0) -> Intervals:
    """95 % intervals of the `weighted_metrics` of predictions `prob` of targets `y` (clips,
    classes), resampling `groups`."""
    metrics = weighted_metrics(task, y, prob, group_weights(groups, resamples, seed))
    return Intervals(
        n_clips=len(y), n_groups=len(np.unique(np.asarray(groups).astype(str))), resamples=resamples,
        summary={name: interval(metrics[name]) for name in SUMMARY},
        per_class={name: [interval(metrics[name][:, k]) for k in range(np.shape(y)[1])] for name in PER_CLASS},
    )
