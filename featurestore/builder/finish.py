"""The end of a build: the manifest copy with every failure reason known, then, once every shard
is committed for every part, the statistics and the root document marked complete, with
consolidated metadata, in one write.

The statistics are combined from the commit records' partial sums, in shard order, so they do
not depend on the worker count or the order in which shards finished. A shard whose train rows
changed since its sums were taken (new labels or splits) has them taken again from its stored
values: nothing is decoded for it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from featurestore.builder.events import Events, StatisticsWritten
from featurestore.builder.plan import Plan
from featurestore.maths.statistics import combine, partial_sums
from featurestore.store.attrs import RootAttributes, write_root
from featurestore.store.commits import CommitRecord, Sums, split_hash, write_record
from featurestore.store.layout import CLIPS, OK, normalised
from featurestore.store.reader import read_rows
from featurestore.store.writer import ManifestCopy, consolidated, remove_other_copies, write_stats


@dataclass(frozen=True)
class Tally:
    ok: int
    failed: int
    pending: int
    reasons: tuple[str, ...]  # "clip_id (path): reason", in store order


def errors(plan: Plan, records: dict[int, CommitRecord], valid: dict[int, frozenset[str]]) -> list[str | None]:
    """Each clip's failure reason, from the shards whose status is committed (None: ok or pending)."""
    out: list[str | None] = [None] * plan.layout.n_clips
    for i in range(plan.layout.n_shards):
        if CLIPS in valid.get(i, frozenset()):
            start = plan.layout.shard_range(i)[0]
            for offset, reason in records[i].clips.errors.items():
                out[start + int(offset)] = reason
    return out


def tally(plan: Plan, manifest: Any, records: dict[int, CommitRecord], valid: dict[int, frozenset[str]]) -> Tally:
    """Clips ok, failed and pending, and the failure reasons, as committed."""
    done = [records[i].clips for i in range(plan.layout.n_shards) if CLIPS in valid.get(i, frozenset())]
    ok, failed = sum(c.ok for c in done), sum(c.failed for c in done)
    table = manifest.table
    ids, paths = table["clip_id"].tolist(), table["path"].tolist()
    return Tally(ok, failed, plan.layout.n_clips - ok - failed,
                 tuple(f"{ids[i]} ({paths[i]}): {e}" for i, e in enumerate(errors(plan, records, valid)) if e))


def finish(url: str, plan: Plan, manifest: Any, attrs: RootAttributes, records: dict[int, CommitRecord],
           valid: dict[int, frozenset[str]], events: Events) -> Tally:
    """`attrs`: the root attributes the build wrote when it started (state "building")."""
    parts = {CLIPS, *plan.spec.names}
    complete = all(parts <= valid.get(i, frozenset()) for i in range(plan.layout.n_shards))
    copy = ManifestCopy(manifest, errors(plan, records, valid))
    if copy.name != attrs.manifest_copy:
        copy.write(url)
    if not complete:
        if copy.name != attrs.manifest_copy:
            write_root(url, replace(attrs, manifest_copy=copy.name))
            remove_other_copies(url, copy.name)
        return tally(plan, manifest, records, valid)
    stats_values = _statistics(url, plan, records, (manifest.table["split"] == "train").to_numpy(), events)
    final = replace(attrs, build_state="complete", manifest_copy=copy.name, stats_values=stats_values)
    write_root(url, final, consolidated(url, final))
    remove_other_copies(url, copy.name)
    return tally(plan, manifest, records, valid)


def _statistics(url: str, plan: Plan, records: dict[int, CommitRecord], train: np.ndarray,
                events: Events) -> dict[str, int]:
    """Write each normalised array's statistics; returns how many values each covers."""
    spec, layout = plan.spec, plan.layout
    axes = normalised(spec)
    for i in range(layout.n_shards):
        start, stop = layout.shard_range(i)
        record, split = records[i], split_hash(train[start:stop])
        stale = [a for a in axes if record.arrays[a].split_hash != split]
        if stale:
            stored = read_rows(url, [*stale, "status"], start, stop)
            sums = partial_sums(stored, (stored["status"] == OK) & train[start:stop], {a: axes[a] for a in stale})
            arrays = {**record.arrays, **{a: replace(record.arrays[a], split_hash=split, stats=Sums(
                tuple(sums[a]["sum"]), tuple(sums[a]["sumsq"]), sums[a]["count"])) for a in stale}}
            records[i] = replace(record, arrays=arrays)
            write_record(url, records[i])
    combined = combine({a: _as_dict(records[i].arrays[a].stats) for a in axes} for i in range(layout.n_shards))
    for name, (mean, std, _) in combined.items():
        write_stats(url, spec, name, mean, std)
        events.emit(StatisticsWritten(name))
    return {name: n for name, (_, _, n) in combined.items()}


def _as_dict(sums: Sums) -> dict[str, Any]:
    return {"sum": sums.sum, "sumsq": sums.sumsq, "count": sums.count}
