"""The group bootstrap behind every report's 95 % intervals: its weighted metrics are the
library's, and its intervals behave as intervals over groups should."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, roc_auc_score

from trainers.uncertainty import bootstrap, group_weights, weighted_auc


def test_weighted_auc_is_scikit_learns_with_sample_weights_ties_included():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 2)  # many ties
    positive = rng.random(300) < 0.3
    weights = group_weights(rng.integers(0, 40, 300), 50, seed=1)
    expected = [roc_auc_score(positive, scores, sample_weight=row) for row in weights]
    np.testing.assert_allclose(weighted_auc(scores, positive, weights), expected, atol=1e-12)
    none = weighted_auc(scores, np.zeros(300, bool), weights)
    assert np.isnan(none).all(), "no positives: undefined"


def test_one_group_gives_no_spread_and_the_point_estimate():
    """Resampling the only group draws the same clips every time: the interval is the estimate."""
    rng = np.random.default_rng(1)
    y = np.eye(4)[rng.integers(0, 4, 80)]
    prob = rng.dirichlet(np.ones(4), 80)
    intervals = bootstrap("multiclass", y, prob, np.zeros(80), resamples=200)
    accuracy = accuracy_score(y.argmax(1), prob.argmax(1))
    macro_f1 = f1_score(y.argmax(1), prob.argmax(1), average="macro", labels=range(4), zero_division=0)
    np.testing.assert_allclose(intervals.summary["accuracy"], (accuracy, accuracy))
    precision = precision_score(y.argmax(1), prob.argmax(1), average="macro", labels=range(4), zero_division=0)
    np.testing.assert_allclose(intervals.summary["macro_f1"], (macro_f1, macro_f1))
    np.testing.assert_allclose(intervals.summary["macro_precision"], (precision, precision))
    assert (intervals.n_clips, intervals.n_groups) == (80, 1)


def test_fewer_groups_mean_wider_intervals_around_the_estimate():
    """The same 400 clips as 200 groups of 2 or as 8 groups of 50 (mistakes shared within a group):
    the interval contains the estimate, and few groups widen it."""
    rng = np.random.default_rng(2)
    correct = np.repeat(rng.random(8) < 0.6, 50)  # whole groups right or wrong
    y = np.eye(2)[np.zeros(400, int)]
    prob = np.where(correct[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    accuracy = correct.mean()
    widths = {}
    for n_groups in (8, 200):
        low, high = bootstrap("multiclass", y, prob, np.arange(400) // (400 // n_groups)).summary["accuracy"]
        assert low <= accuracy <= high
        widths[n_groups] = high - low
    assert widths[8] > 3 * widths[200]


def test_multilabel_intervals_cover_exact_match_and_macro_auc():
    rng = np.random.default_rng(3)
    y = rng.random((120, 5)) < 0.3
    prob = np.clip(y * 0.6 + rng.random((120, 5)) * 0.5, 0, 1)
    intervals = bootstrap("multilabel", y, prob, np.arange(120) // 3, resamples=300)
    auc = np.mean([roc_auc_score(y[:, k], prob[:, k]) for k in range(5)])
    low, high = intervals.summary["roc_auc_macro"]
    assert low <= auc <= high and high - low < 0.2
    assert len(intervals.per_class["roc_auc"]) == 5
