"""Tasks and metrics against scikit-learn on fixed inputs; the report table and its PNG figures."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.utils.class_weight import compute_class_weight

from trainers.report import per_class_markdown, write_report
from trainers.inputs import average_views
from trainers.tasks import AveragedLoss, Task, infer_task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = tuple(f"tag{i}" for i in range(5))


@pytest.fixture()
def multilabel():
    rng = np.random.default_rng(42)
    y = (rng.random((200, 5)) < [0.5, 0.3, 0.2, 0.1, 0.4]).astype(np.float32)
    prob = np.clip(0.6 * y + 0.5 * rng.random((200, 5)) - 0.1, 0, 1)
    return y, prob


@pytest.fixture()
def multiclass():
    rng = np.random.default_rng(7)
    true = rng.integers(0, 5, 300)
    logits = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[true]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return np.eye(5, dtype=np.float32)[true], prob


def test_multilabel_metrics_agree_with_scikit_learn(multilabel):
    y, prob = multilabel
    ev = Task("multilabel", LABELS).evaluate(y, prob)
    pred = (prob >= 0.5).astype(int)
    assert ev.summary["roc_auc_macro"] == pytest.approx(roc_auc_score(y, prob, average="macro"), abs=1e-12)
    assert ev.summary["pr_auc_macro"] == pytest.approx(average_precision_score(y, prob, average="macro"), abs=1e-12)
    assert ev.summary["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert ev.summary["accuracy"] == pytest.approx(accuracy_score(y, pred))
    p, r, f, s = precision_recall_fscore_support(y, pred, zero_division=0)
    table = ev.per_class
    np.testing.assert_allclose(table["precision"], p)
    np.testing.assert_allclose(table["recall"], r)
    np.testing.assert_allclose(table["f1"], f)
    np.testing.assert_array_equal(table["support"], s)
    np.testing.assert_allclose(table["ovr_accuracy"], (pred == y).mean(0))
    np.testing.assert_allclose(table["roc_auc"], roc_auc_score(y, prob, average=None))
    np.testing.assert_array_equal(ev.matrices["cooccurrence_true"], y.T.astype(int) @ y.astype(int))
    np.testing.assert_array_equal(np.diag(ev.matrices["cooccurrence_pred"]), pred.sum(0))
    assert ev.notes == []


def test_a_class_without_positives_is_skipped_not_fatal(multilabel):
    y, prob = multilabel
    y = y.copy()
    y[:, 3] = 0
    ev = Task("multilabel", LABELS).evaluate(y, prob)
    assert math.isnan(ev.per_class["roc_auc"][3]) and math.isnan(ev.per_class["pr_auc"][3])
    keep = [0, 1, 2, 4]
    assert ev.summary["roc_auc_macro"] == pytest.approx(roc_auc_score(y[:, keep], prob[:, keep], average="macro"))
    assert len(ev.notes) == 1 and "tag3" in ev.notes[0]
    payload = ev.to_json()
    assert payload["per_class"][3]["roc_auc"] is None  # JSON null, not NaN
    assert "| **macro avg** |" in per_class_markdown(ev.per_class)


def test_multiclass_metrics_agree_with_scikit_learn(multiclass):
    y, prob = multiclass
    ev = Task("multiclass", LABELS).evaluate(y, prob)
    true, pred = y.argmax(1), prob.argmax(1)
    assert ev.summary["accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert ev.summary["macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert ev.summary["roc_auc_macro"] == pytest.approx(roc_auc_score(true, prob, multi_class="ovr", average="macro"))
    np.testing.assert_array_equal(ev.matrices["confusion"], confusion_matrix(true, pred))
    p, r, f, s = precision_recall_fscore_support(true, pred)
    np.testing.assert_allclose(ev.per_class["precision"], p)
    np.testing.assert_allclose(ev.per_class["recall"], r)
    np.testing.assert_array_equal(ev.per_class["support"], s)
    # per-class accuracy in the GTZAN report's sense is recall: correct clips of the class / its clips
    np.testing.assert_allclose(ev.per_class["recall"], [(pred[true == k] == k).mean() for k in range(5)])
    np.testing.assert_allclose(ev.per_class["ovr_accuracy"], [((pred == k) == (true == k)).mean() for k in range(5)])
    # a class absent from the split: confusion row of zeros, AUC skipped, no crash
    present = true != 2
    ev = Task("multiclass", LABELS).evaluate(y[present], prob[present])
    assert ev.matrices["confusion"][2].sum() == 0 and math.isnan(ev.per_class["roc_auc"][2])


def test_task_inference_losses_and_balanced_weights(multiclass, multilabel):
    assert infer_task(np.array([1, 1, 1])) == "multiclass"
    assert infer_task(np.array([1, 0, 2])) == "multilabel"
    y, _ = multiclass
    task = Task("multiclass", LABELS)
    np.testing.assert_allclose(task.class_weights(y),
                               compute_class_weight("balanced", classes=np.arange(5), y=y.argmax(1)), rtol=1e-6)
    logits = torch.randn(300, 5)
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y.argmax(1)))
    assert torch.allclose(task.loss()(logits, torch.from_numpy(y)), expected)
    ym, _ = multilabel
    weights = Task("multilabel", LABELS).class_weights(ym)
    np.testing.assert_allclose(weights, (len(ym) - ym.sum(0)) / ym.sum(0), rtol=1e-6)
    assert torch.allclose(torch.softmax(logits, -1), task.probabilities(logits))


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_report_and_figures_are_written_and_valid_png(tmp_path, multilabel, multiclass):
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.9, 0.7, 0.6], "val_loss": [0.95, 0.8, 0.78],
                            "val_roc_auc_macro": [0.6, 0.7, 0.72], "val_accuracy": [0.2, 0.3, 0.35]})
    ml = write_report(tmp_path / "ml", Task("multilabel", LABELS).evaluate(*multilabel), title="tagging",
                      header={"model": "cnn4"}, history=history, monitor="val_roc_auc_macro")
    mc = write_report(tmp_path / "mc", Task("multiclass", LABELS).evaluate(*multiclass), title="genres",
                      header={"model": "cnn3"})
    assert {p.name for p in ml} == {"report.md", "curves.png", "cooccurrence.png", "per_class.png"}
    assert {p.name for p in mc} == {"report.md", "confusion.png", "per_class.png"}
    for path in ml + mc:
        if path.suffix == ".png":
            _assert_png(path)
    text = (tmp_path / "ml" / "report.md").read_text()
    assert ("| label | support | recall (per-class accuracy) | one-vs-rest accuracy | precision | F1 | AUC |"
            in text) and "### Definitions" in text
    assert all(f"| {label} |" in text for label in LABELS)
    evaluation = Task("multilabel", LABELS).evaluate(*multilabel)
    macro_row = next(line for line in text.splitlines() if line.startswith("| **macro avg** |")).split("|")[2:-1]
    support, _, _, _, f1, auc = (cell.strip() for cell in macro_row)
    assert int(support) == int(multilabel[0].sum())
    assert f1 == f"{evaluation.summary['macro_f1']:.3f}" and auc == f"{evaluation.summary['roc_auc_macro']:.3f}"
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("name", ["multiclass", "multilabel"])
def test_the_loss_is_that_of_the_averaged_prediction(name, multiclass, multilabel):
    """Several views per clip: the loss scores the mean of their probabilities (the prediction
    every metric scores), not the mean of per-view losses; one view: the training loss itself."""
    y = torch.from_numpy((multiclass if name == "multiclass" else multilabel)[0][:40])
    task, rng = Task(name, LABELS), torch.Generator().manual_seed(0)
    logits = torch.randn(40 * 3, 5, generator=rng) * 3
    views = torch.ones(40, 3)
    views[::4, 2] = 0  # some clips have only two decoded segments
    total, weight = AveragedLoss(task)(logits, views, y)
    mean = average_views(task.probabilities(logits), views).double()
    if name == "multiclass":
        expected = -torch.log(mean[torch.arange(40), y.argmax(1)]).mean()
    else:
        expected = -(y * torch.log(mean) + (1 - y) * torch.log(1 - mean)).mean()
    assert (total / weight).item() == pytest.approx(expected.item(), rel=1e-5)
    per_window = task.loss()(logits, y.repeat_interleave(3, 0)).item()
    assert abs((total / weight).item() - per_window) > 1e-3  # the old definition differs
    one = logits[:40]
    weights = task.class_weights(y.numpy())
    total, weight = AveragedLoss(task, weights)(one, torch.ones(40, 1), y)
    assert (total / weight).item() == pytest.approx(task.loss(weights)(one, y).item(), rel=1e-5)
