"""Normalisation statistics from per-shard partial sums.

Each build task sums, in float64, the values it stored for the train split's ok clips (sum,
sum of squares, count, per mel band / MFCC coefficient / descriptor); the driver adds the
shards' sums in shard order. The statistics need no second pass over the audio, and they are
the same whatever the number of workers or the order in which shards finish.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np



def partial_sums(arrays: dict[str, np.ndarray], include: np.ndarray, keep_axes: dict[str, int]
                 ) -> dict[str, dict[str, Any]]:
    """JSON-ready float64 sums over the clips where `include` is true (all frames of each), per
    feature of `keep_axes` (feature -> the axis of its (clip, ...) array that the statistics keep)."""
    sums = {}
    for feature, keep in keep_axes.items():
        x = arrays[feature][include].astype(np.float64)
        reduce = tuple(a for a in range(x.ndim) if a != keep)
        sums[feature] = {
            "sum": x.sum(axis=reduce).tolist(),
            "sumsq": np.square(x).sum(axis=reduce).tolist(),
            "count": int(np.prod([x.shape[a] for a in reduce])),
        }
    return sums


def combine(partials: Iterable[dict[str, dict[str, Any]]]) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """(mean, std, count) per feature, float32 statistics from the shards' float64 sums.

    With no train clip at all (a test-only manifest) mean 0 and std 1 keep normalisation a no-op
    rather than storing NaN.
    """
    totals: dict[str, list[Any]] = {}
    for partial in partials:
        for feature, p in partial.items():
            t = totals.setdefault(feature, [0.0, 0.0, 0])
            t[0] = t[0] + np.asarray(p["sum"], dtype=np.float64)
            t[1] = t[1] + np.asarray(p["sumsq"], dtype=np.float64)
            t[2] += p["count"]
    stats = {}
    for feature, (s, sq, n) in totals.items():
        if n == 0:
            mean, std = np.zeros_like(s), np.ones_like(s)
        else:
            mean = s / n
            std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
        stats[feature] = (mean.astype(np.float32), std.astype(np.float32), n)
    return stats
