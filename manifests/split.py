"""Leakage-free, label-stratified train / valid / test assignment.

Clips are never placed one by one: whole groups (artist, album, song, or the clip itself when
there is no grouping) go to one split, so nothing a model could memorise crosses a split.

Two passes:
1. iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011) lifted to groups: take
   the label with the fewest unplaced clips, place each group carrying it (largest first) in
   the split that still lacks most clips of that label. For single-label data this is
   stratified group assignment.
2. a deterministic local search that moves or swaps whole groups while that lowers the
   largest deviation of any label's (or of all clips') share from the requested ratio.
   Greedy placement of large groups (an MTAT artist holds ~100 clips) overshoots; the
   search repairs that.

The result depends only on the input rows, the ratios and the seed (ties are broken by a
seeded NumPy generator), so the same input always gives the same bytes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.schema import SPLITS

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
_EPS = 1e-12
_MAX_STEPS = 20_000
_MAX_SWAP_PAIRS = 100_000
_MAX_ATTEMPTS = 32
_PLACEMENT_BUDGET = 40_000  # groups placed over all attempts


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'70/15/15' (or '0.8/0.1/0.1', '8/1/1') -> fractions summing to one."""
    try:
        values = [float(part) for part in text.split("/")]
    except ValueError:
        values = []
    return normalise_ratios(values, text)


def normalise_ratios(values, shown: str | None = None) -> tuple[float, float, float]:
    """Three positive train/valid/test weights -> fractions summing to one."""
    values = [float(v) for v in values]
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise UserError(
            f"--split {shown or values!r}: expected three positive numbers like 70/15/15 (train/valid/test)"
        )
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def stratified_split(
    labels: np.ndarray, groups: np.ndarray | pd.Series, ratios: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Split index (0 train, 1 valid, 2 test) per clip; `labels` is a (clips, labels) bool matrix."""
    codes, _ = pd.factorize(np.asarray(groups), sort=True)
    counts = group_counts(labels, codes)
    ratios_arr = np.asarray(ratios, dtype=float)
    floor = _rounding_floor(counts.sum(0), ratios_arr)
    best = None
    # restarts escape poor local optima, which coarse groups (few, large) make likely
    attempts = int(np.clip(_PLACEMENT_BUDGET // max(1, len(counts)), 1, _MAX_ATTEMPTS))
    for child in np.random.SeedSequence(seed).spawn(attempts):
        rng = np.random.default_rng(child)
        score, assign = _refine(counts, _iterative_stratification(counts, ratios_arr, rng), ratios_arr, floor, rng)
        if best is None or _better(score, best[0]):
            best = (score, assign)
        if score[0] <= floor + _EPS:
            break
    return best[1][codes]


def group_counts(labels: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(groups, 1 + labels) int64: clips per group, then clips per group carrying each label."""
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    columns = [np.bincount(codes, minlength=n_groups)]
    columns += [np.bincount(codes, weights=labels[:, j], minlength=n_groups) for j in range(labels.shape[1])]
    return np.column_stack(columns).astype(np.int64)


def deviations_pp(labels: np.ndarray, split: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """(splits, 1 + labels) |share - ratio| in percentage points; column 0 is all clips.

    A label no clip carries has no share; its column is 0.
    """
    counts = group_counts(labels, np.asarray(split, dtype=np.int64))
    if len(counts) < len(SPLITS):
        counts = np.vstack([counts, np.zeros((len(SPLITS) - len(counts), counts.shape[1]), np.int64)])
    totals = counts.sum(0)
    share = counts / np.where(totals > 0, totals, 1)
    return 100 * np.where(totals > 0, np.abs(share - np.asarray(ratios)[:, None]), 0.0)


def _better(new: tuple[float, float], old: tuple[float, float]) -> bool:
    """Lexicographic on (max deviation, sum of squared deviations)."""
    return new[0] < old[0] - _EPS or (new[0] <= old[0] + _EPS and new[1] < old[1] - _EPS)


def _choose(primary: np.ndarray, secondary: np.ndarray, rng: np.random.Generator) -> int:
    """Split with the largest `primary` need, then largest `secondary` need, then a seeded coin."""
    tied = np.flatnonzero(primary >= primary.max() - _EPS)
    if len(tied) > 1:
        tied = tied[secondary[tied] >= secondary[tied].max() - _EPS]
    return int(tied[0] if len(tied) == 1 else rng.choice(tied))


def _iterative_stratification(counts: np.ndarray, ratios: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split per group: rarest label first, each of its groups (largest first) where it is most lacking."""
    n_groups = len(counts)
    need = np.outer(ratios, counts.sum(0)).astype(float)
    assign = np.full(n_groups, -1, dtype=np.int64)
    rank = rng.permutation(n_groups)
    per_label = counts[:, 1:]
    unplaced = np.ones(n_groups, dtype=bool)

    def place(members: np.ndarray, column: int) -> None:
        order = members[np.lexsort((rank[members], -counts[members, column]))]
        for group in order:
            split = _choose(need[:, column], need[:, 0], rng)
            need[split] -= counts[group]
            assign[group] = split
        unplaced[members] = False

    left = per_label.sum(0)  # clips of each label in unplaced groups
    while left.any():
        label = int(np.argmin(np.where(left > 0, left, np.iinfo(np.int64).max)))
        members = np.flatnonzero(unplaced & (per_label[:, label] > 0))
        place(members, 1 + label)
        left -= per_label[members].sum(0)
    place(np.flatnonzero(unplaced), 0)  # groups without labels only fill sizes
    return assign


def _refine(
    counts: np.ndarray, assign: np.ndarray, ratios: np.ndarray, floor: float, rng: np.random.Generator
) -> tuple[tuple[float, float], np.ndarray]:
    """Move or swap whole groups while the (max, sum of squares) deviation drops.

    Only transfers that touch the worst (split, column) cell can lower the maximum, so the
    search looks at groups carrying that column only; it stops at a local optimum or when
    the maximum reaches the rounding floor no assignment can beat.
    """
    assign = assign.copy()
    counts = counts[:, counts.sum(0) > 0]  # a column nobody carries never deviates
    inverse = 1.0 / counts.sum(0)
    per_split = np.stack([counts[assign == s].sum(0) for s in range(len(ratios))])
    rank = rng.permutation(len(counts))
    deviation = np.abs(per_split * inverse - ratios[:, None])
    current = (float(deviation.max()), float((deviation**2).sum()))
    for _ in range(_MAX_STEPS):
        if current[0] <= floor + _EPS:
            break
        worst, column = np.unravel_index(int(np.argmax(deviation)), deviation.shape)
        over = per_split[worst, column] * inverse[column] > ratios[worst]
        carriers = counts[:, column] > 0
        pairs = [(worst, other) if over else (other, worst) for other in range(len(ratios)) if other != worst]
        best = None
        for kind in (_moves, _swaps):  # swaps cost more: only when no move helps
            for source, target in pairs:
                step = kind(counts, assign, per_split, inverse, ratios, source, target, carriers, rank)
                if step is not None and (best is None or _better(step[0], best[0])):
                    best = step
            if best is not None and _better(best[0], current):
                break
        if best is None or not _better(best[0], current):
            break
        current, moves = best
        for group, target in moves:
            per_split[assign[group]] -= counts[group]
            per_split[target] += counts[group]
            assign[group] = target
        deviation = np.abs(per_split * inverse - ratios[:, None])
    return current, assign


def _rounding_floor(totals: np.ndarray, ratios: np.ndarray) -> float:
    """Lower bound of the max deviation: whole clips cannot hit fractional targets.

    Per column, the best any split assignment can do is to round each split's target
    down or up so that the counts still add up to the column's total.
    """
    target = np.outer(ratios, totals)  # (splits, columns)
    choices = np.array(list(itertools.product((0, 1), repeat=len(ratios))))  # (combos, splits)
    counts = np.floor(target)[None] + choices[:, :, None]  # (combos, splits, columns)
    feasible = counts.sum(1) == totals[None]
    worst = np.abs(counts - target[None]).max(1) / np.where(totals > 0, totals, 1)
    best = np.where(feasible, worst, np.inf).min(0)
    return float(np.max(np.where(totals > 0, best, 0.0)))


def _moves(counts, assign, per_split, inverse, ratios, source, target, carriers, rank):
    """Best move of one carrier group from source to target."""
    out = np.flatnonzero((assign == source) & carriers)
    if not len(out):
        return None
    score, i = _best_transfer(per_split, inverse, ratios, source, target, counts[out])
    return score, [(int(out[i]), target)]


def _swaps(counts, assign, per_split, inverse, ratios, source, target, carriers, rank):
    """Best exchange of a carrier group of source with any group of target."""
    out = np.flatnonzero((assign == source) & carriers)
    back = np.flatnonzero(assign == target)
    if not len(out) or not len(back):
        return None
    out = out[np.argsort(rank[out])][: max(1, _MAX_SWAP_PAIRS // len(back))]
    delta = (counts[out][:, None, :] - counts[back][None, :, :]).reshape(-1, counts.shape[1])
    score, k = _best_transfer(per_split, inverse, ratios, source, target, delta)
    i, j = divmod(k, len(back))
    return score, [(int(out[i]), target), (int(back[j]), source)]


def _best_transfer(per_split, inverse, ratios, source, target, delta) -> tuple[tuple[float, float], int]:
    """Best (max, sum of squares) deviation, and its row, after moving a row of `delta` source -> target."""
    rest = [s for s in range(len(ratios)) if s not in (source, target)]
    fixed = np.abs(per_split[rest] * inverse - ratios[rest, None])
    into = np.abs((per_split[target] + delta) * inverse - ratios[target])
    away = np.abs((per_split[source] - delta) * inverse - ratios[source])
    peak = np.maximum(np.maximum(into.max(1), away.max(1)), fixed.max(initial=0.0))
    spread = np.einsum("ij,ij->i", into, into) + np.einsum("ij,ij->i", away, away) + (fixed**2).sum()
    ties = np.flatnonzero(peak <= peak.min() + _EPS)
    k = int(ties[np.argmin(spread[ties])])
    return (float(peak[k]), float(spread[k])), k
