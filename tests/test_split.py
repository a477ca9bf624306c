"""The splitter: whole groups per split, every clip once, ratios honoured, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.errors import UserError
from manifests.split import _rounding_floor, deviations_pp, group_counts, parse_ratios, stratified_split


@st.composite
def datasets(draw, max_group=8):
    """Random multi-label data: (labels bool matrix, group ids, ratios, seed)."""
    n = draw(st.integers(1, 300))
    n_labels = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    prevalence = rng.uniform(0.0, 0.8, n_labels)
    labels = rng.random((n, n_labels)) < prevalence
    group_size = draw(st.integers(1, max_group))
    groups = rng.integers(0, max(1, n // group_size), n) if group_size > 1 else np.arange(n)
    weights = draw(st.tuples(*[st.integers(1, 20)] * 3))
    ratios = tuple(w / sum(weights) for w in weights)
    return labels, groups.astype(str), ratios, draw(st.integers(0, 1000))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(datasets())
def test_every_clip_gets_one_split_and_no_group_spans_two(data):
    labels, groups, ratios, seed = data
    split = stratified_split(labels, groups, ratios, seed)
    assert split.shape == (len(labels),)
    assert set(np.unique(split)) <= {0, 1, 2}
    per_group = {}
    for group, code in zip(groups, split):
        assert per_group.setdefault(group, code) == code, f"group {group} is in two splits"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(datasets())
def test_shares_deviate_no_more_than_the_largest_group_or_rounding_allows(data):
    """A label's share may miss its ratio by at most one group's worth of that label (or rounding)."""
    labels, groups, ratios, seed = data
    split = stratified_split(labels, groups, ratios, seed)
    codes = np.unique(groups, return_inverse=True)[1]
    counts = group_counts(labels, codes)
    largest_share = (counts / np.maximum(counts.sum(0), 1)).max()
    floor = _rounding_floor(counts.sum(0), np.asarray(ratios))
    assert deviations_pp(labels, split, ratios).max() <= 100 * max(largest_share, floor) + 1e-9


@settings(max_examples=40, deadline=None, derandomize=True)
@given(datasets(max_group=1))
def test_without_groups_the_split_is_as_close_as_whole_clips_allow(data):
    labels, groups, ratios, seed = data
    split = stratified_split(labels, groups, ratios, seed)
    counts = group_counts(labels, np.arange(len(labels)))
    floor = _rounding_floor(counts.sum(0), np.asarray(ratios))
    # within the rounding floor plus one clip of the rarest label
    slack = 1 / max(1, counts[:, 1:].sum(0)[counts[:, 1:].sum(0) > 0].min(initial=len(labels)))
    assert deviations_pp(labels, split, ratios).max() <= 100 * (floor + slack) + 1e-9


@settings(max_examples=25, deadline=None, derandomize=True)
@given(datasets())
def test_same_input_same_split(data):
    labels, groups, ratios, seed = data
    first = stratified_split(labels, groups, ratios, seed)
    again = stratified_split(labels.copy(), groups.copy(), ratios, seed)
    assert first.tobytes() == again.tobytes()


def test_seed_changes_the_split_but_not_its_quality():
    rng = np.random.default_rng(0)
    labels = rng.random((2000, 4)) < [0.1, 0.3, 0.5, 0.05]
    groups = rng.integers(0, 200, 2000).astype(str)
    a = stratified_split(labels, groups, (0.7, 0.15, 0.15), 0)
    b = stratified_split(labels, groups, (0.7, 0.15, 0.15), 1)
    assert (a != b).any()
    for split in (a, b):
        assert deviations_pp(labels, split, (0.7, 0.15, 0.15)).max() < 1.5


def test_iterative_stratification_beats_random_group_assignment():
    """The point of the splitter: a random group split of skewed groups misses the ratios badly."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(20, 200, 120)  # artist-like groups
    groups = np.repeat(np.arange(len(sizes)), sizes).astype(str)
    genre = np.repeat(rng.integers(0, 5, len(sizes)), sizes)  # each artist mostly one genre
    labels = np.eye(5, dtype=bool)[genre]
    ours = deviations_pp(labels, stratified_split(labels, groups, (0.7, 0.15, 0.15), 0), (0.7, 0.15, 0.15)).max()
    random_split = rng.choice(3, len(sizes), p=[0.7, 0.15, 0.15])[np.arange(len(sizes)).repeat(sizes)]
    chance = deviations_pp(labels, random_split, (0.7, 0.15, 0.15)).max()
    assert ours < 1.5 < chance


@pytest.mark.parametrize(("text", "expected"), [("70/15/15", (0.7, 0.15, 0.15)), ("8/1/1", (0.8, 0.1, 0.1))])
def test_parse_ratios(text, expected):
    assert parse_ratios(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["70/30", "70/15/x", "70/0/30", "-1/1/1", "nan/1/1"])
def test_bad_ratios_are_a_user_error(text):
    with pytest.raises(UserError, match="three positive numbers"):
        parse_ratios(text)
