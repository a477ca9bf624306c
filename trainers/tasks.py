"""Tasks: the loss, the output activation and the metrics of multi-label tagging and single-label genres.

Targets are always a multi-hot (clips, classes) matrix; the multiclass task reads its one label
per row. Metrics are scikit-learn's. A class with only positives or only negatives in a split
has no ROC-AUC: it is reported as NaN, left out of the macro average, and named in `notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from featurestore.errors import UserError
from trainers.io import jsonable

TASKS = ("multilabel", "multiclass")
# --monitor name -> (history column, "max" or "min")
MONITORS = {
    "val_loss": ("val_loss", "min"),
    "val_roc_auc": ("val_roc_auc_macro", "max"),
    "val_pr_auc": ("val_pr_auc_macro", "max"),
    "val_accuracy": ("val_accuracy", "max"),
    "val_macro_f1": ("val_macro_f1", "max"),
}
DEFAULT_MONITOR = {"multilabel": "val_roc_auc", "multiclass": "val_accuracy"}


@dataclass
class Evaluation:
    """Plain-named summary numbers, the per-class table, the label matrices and notes on what was skipped."""

    summary: dict[str, float]
    per_class: pd.DataFrame
    matrices: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    levels: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. "segments": per-segment summary
    predictions: pd.DataFrame | None = None  # one row per evaluated clip (and segment): predictions.parquet
    intervals: Any = None  # trainers.uncertainty.Intervals: the group bootstrap's 95 % intervals

    def to_json(self) -> dict:
        return jsonable({
            **self.summary,
            **(self.intervals.to_json() if self.intervals is not None else {}),
            **({"levels": self.levels} if self.levels else {}),
            "per_class": self.per_class.to_dict("records"),
            **self.matrices,
            "notes": self.notes,
        })


def infer_task(label_counts: np.ndarray) -> str:
    """Several labels on any clip make the data multi-label."""
    return "multilabel" if (np.asarray(label_counts) > 1).any() else "multiclass"


def _per_class_scores(y: np.ndarray, scores: np.ndarray, labels: list[str], notes: list[str]):
    """Per-class ROC-AUC and average precision; NaN (and a note) where a class lacks positives or negatives."""
    roc, pr, skipped = np.full(len(labels), np.nan), np.full(len(labels), np.nan), []
    for k in range(len(labels)):
        col = y[:, k]
        if col.min() == col.max():
            skipped.append(labels[k])
            continue
        roc[k] = roc_auc_score(col, scores[:, k])
        pr[k] = average_precision_score(col, scores[:, k])
    if skipped:
        notes.append(
            f"ROC-AUC and PR-AUC undefined for {len(skipped)} class(es) with only positives or only negatives "
            f"in this split ({', '.join(skipped[:10])}{', ...' if len(skipped) > 10 else ''}): "
            "left out of the macro averages"
        )
    return roc, pr


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise UserError(f"unknown task {self.name!r}: choose from {', '.join(TASKS)}")

    # --- training ---
    def class_weights(self, y: np.ndarray) -> np.ndarray:
        """scikit-learn's 'balanced' weights (multiclass) or negatives/positives per class (multilabel pos_weight)."""
        if self.name == "multiclass":
            idx = y.argmax(1)
            present = np.unique(idx)
            w = np.ones(len(self.labels))
            w[present] = compute_class_weight("balanced", classes=present, y=idx)
            return w.astype(np.float32)
        pos = y.sum(0)
        return np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0).astype(np.float32)

    def loss(self, weights: np.ndarray | None = None) -> nn.Module:
        w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if self.name == "multiclass":
            return _CrossEntropyOnMultiHot(w)
        return nn.BCEWithLogitsLoss(pos_weight=w)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, -1) if self.name == "multiclass" else torch.sigmoid(logits)

    # --- metrics ---
    def evaluate(self, y: np.ndarray, prob: np.ndarray) -> Evaluation:
        y, prob = np.asarray(y), np.asarray(prob, dtype=np.float64)
        return self._multiclass(y, prob) if self.name == "multiclass" else self._multilabel(y, prob)

    def _multilabel(self, y: np.ndarray, prob: np.ndarray) -> Evaluation:
        labels, notes = list(self.labels), []
        y = y.astype(np.int64)
        pred = (prob >= 0.5).astype(np.int64)
        p, r, f, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
        mp, mr, mf, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
        roc, pr = _per_class_scores(y, prob, labels, notes)
        acc = np.array([accuracy_score(y[:, k], pred[:, k]) for k in range(len(labels))])
        summary = {
            "n_clips": len(y),
            "roc_auc_macro": _nanmean(roc),
            "pr_auc_macro": _nanmean(pr),
            "accuracy": float(accuracy_score(y, pred)),  # exact match of the whole label set
            "label_accuracy": float(acc.mean()),
            "macro_precision": float(mp),
            "macro_recall": float(mr),
            "macro_f1": float(mf),
            "micro_f1": float(precision_recall_fscore_support(y, pred, average="micro", zero_division=0)[2]),
        }
        matrices = {"cooccurrence_true": y.T @ y, "cooccurrence_pred": pred.T @ pred}
        return Evaluation(summary, _table(labels, support, acc, p, r, f, roc, pr), matrices, notes)

    def _multiclass(self, y: np.ndarray, prob: np.ndarray) -> Evaluation:
        labels, notes = list(self.labels), []
        classes = np.arange(len(labels))
        true, pred = y.argmax(1), prob.argmax(1)
        p, r, f, support = precision_recall_fscore_support(true, pred, labels=classes, average=None, zero_division=0)
        mp, mr, mf, _ = precision_recall_fscore_support(true, pred, labels=classes, average="macro", zero_division=0)
        onehot = (true[:, None] == classes).astype(np.int64)
        roc, pr = _per_class_scores(onehot, prob, labels, notes)
        acc = np.array([accuracy_score(true == k, pred == k) for k in classes])  # one-vs-rest, per class
        summary = {
            "n_clips": len(y),
            "accuracy": float(accuracy_score(true, pred)),
            "macro_precision": float(mp),
            "macro_recall": float(mr),
            "macro_f1": float(mf),
            "roc_auc_macro": _nanmean(roc),  # one-vs-rest
            "pr_auc_macro": _nanmean(pr),
        }
        matrices = {"confusion": confusion_matrix(true, pred, labels=classes)}
        return Evaluation(summary, _table(labels, support, acc, p, r, f, roc, pr), matrices, notes)


def _table(labels, support, accuracy, precision, recall, f1, roc_auc, pr_auc) -> pd.DataFrame:
    """Per class: `recall` (correct / clips of the class; GTZAN's per-class accuracy) beside
    `ovr_accuracy` (one-vs-rest: correct decisions about this class over all clips)."""
    return pd.DataFrame({"label": labels, "support": support, "recall": recall, "ovr_accuracy": accuracy,
                         "precision": precision, "f1": f1, "roc_auc": roc_auc, "pr_auc": pr_auc})


class AveragedLoss:
    """The loss of each clip's averaged prediction: what the reported probabilities score, with any
    number of evaluation views (crops, segments); for one view it equals the training loss.

    The average is taken in probability space, as `average_views` does, and in log space for
    stability: log mean_v p_v = logsumexp_v(log p_v + log w_v) - log sum_v w_v. Class weights
    weigh it as the training loss does (cross-entropy's `weight`, BCE's `pos_weight`).
    """

    def __init__(self, task: Task, class_weights: np.ndarray | None = None):
        self.task = task
        self.weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, view_weights: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of losses, their weight) for a batch: the mean over batches is sum / weight."""
        b, v = view_weights.shape
        log_w = torch.log(view_weights).unsqueeze(-1)  # -inf for a missing view
        log_total = torch.log(view_weights.sum(1, keepdim=True))
        weights = None if self.weights is None else self.weights.to(logits.device)

        def log_mean(log_p: torch.Tensor) -> torch.Tensor:
            return torch.logsumexp(log_p.view(b, v, -1) + log_w, 1) - log_total

        if self.task.name == "multiclass":
            true = target.argmax(-1)
            nll = -log_mean(torch.log_softmax(logits, -1)).gather(1, true[:, None])[:, 0]
            w = torch.ones_like(nll) if weights is None else weights[true]
            return (w * nll).sum(), w.sum()
        log_p, log_q = log_mean(nn.functional.logsigmoid(logits)), log_mean(nn.functional.logsigmoid(-logits))
        positive = target if weights is None else target * weights
        loss = -(positive * log_p + (1 - target) * log_q)
        return loss.sum(), torch.tensor(float(loss.numel()), device=loss.device)


class _CrossEntropyOnMultiHot(nn.CrossEntropyLoss):
    """Cross-entropy whose target is the one-hot row the loaders deliver."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits, target.argmax(-1))
