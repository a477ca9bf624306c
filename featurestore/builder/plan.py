"""What a build does to the store at its `--out`, decided from the store's state before anything
is written: create it, or resume or grow it, and which shard tasks that takes.

A store grows instead of being rebuilt: an array it lacks is computed alone (the ok clips are
decoded again, nothing else is written); rows appended to the manifest are built as new clips
(the last, partial shard keeps its stored rows and gains the new ones); changed labels or splits
only rewrite the manifest copy and recompute the statistics from the stored features. Whatever
would mix or lose data is refused here, before the store is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurestore.errors import UserError
from featurestore.spec import FeatureSpec
from featurestore.store.commits import part_hashes, rows_hash, shard_rows_hashes
from featurestore.store.layout import CHUNK_CLIPS, CLIPS, Layout, default_shard_clips
from featurestore.store.reader import read_manifest_copy
from featurestore.store.state import StoreState

AUDIO_SAMPLE = 16  # manifest paths looked up before a build starts


@dataclass(frozen=True)
class ShardJob:
    """Everything a task needs; small, so that it travels cheaply to a worker.

    The task writes the arrays in `write`, and status and length when `clips` is set. The
    shard's first `keep` rows are already stored and stay as they are: their status and length,
    and their values of the arrays in `kept` (a shard that grows keeps its old rows).
    """

    url: str
    audio_root: str
    spec: FeatureSpec  # the store's, every array of it
    index: int
    start: int
    stop: int
    clip_ids: tuple[str, ...]
    paths: tuple[str, ...]
    train: tuple[bool, ...]
    write: tuple[str, ...]
    clips: bool
    keep: int
    kept: tuple[str, ...]
    hashes: dict[str, str]  # settings hash of each part
    # rows failed without being read, with their reasons: files that kill a worker, files the
    # build's own process cannot read either
    unread: Mapping[int, str] = field(default_factory=dict)
    probed: bool = False  # its clips were tried one by one after its task died with its worker

    def decoded_rows(self) -> range:
        """Rows of the shard (offsets) that the task decodes."""
        return range(self.keep if self.clips else 0, len(self.paths))


@dataclass(frozen=True)
class Plan:
    spec: FeatureSpec  # the store's spec afterwards: its arrays and the new ones
    layout: Layout
    state: StoreState | None  # the store it grows or resumes; None: create one
    jobs: tuple[ShardJob, ...]
    valid: dict[int, frozenset[str]]  # committed parts of each shard before the build
    rows: tuple[str, ...]  # each shard's rows hash
    added: tuple[str, ...] = ()  # arrays new to the store
    grown_from: int | None = None  # clips before rows were appended
    relabelled: bool = False  # stored rows with other labels, splits or groups

    @property
    def skipped(self) -> int:
        return self.layout.n_shards - len(self.jobs)

    def changes(self) -> tuple[str, ...]:
        out = [f"added {', '.join(self.added)}"] if self.added else []
        if self.grown_from is not None:
            out.append(f"appended {self.layout.n_clips - self.grown_from} clips to {self.grown_from}")
        if self.relabelled:
            out.append("labels or splits changed: manifest copy and statistics updated, nothing decoded for it")
        return tuple(out)

    def unchanged(self) -> bool:
        """Nothing to write: a finished store of the same format asked for again."""
        return (self.state is not None and not self.jobs and not self.added and self.grown_from is None
                and not self.relabelled and self.state.attrs.build_state == "complete"
                and self.state.upgraded_from is None and self.state.consolidated)


def plan(url: str, state: StoreState | None, spec: FeatureSpec, manifest: Any, audio_root: str,
         shard_clips: int | None) -> Plan:
    """Read-only: what this build does to the store whose state is `state` (None: a new store)."""
    table = manifest.table
    n = len(table)
    if state is None or not state.records:  # new, or nothing committed yet (a build killed early): afresh
        if shard_clips is not None and (shard_clips < 1 or shard_clips % CHUNK_CLIPS):
            raise UserError(f"--shard-size must be a positive multiple of {CHUNK_CLIPS} clips (the chunk size), "
                            f"got {shard_clips}")
        layout = Layout(n, CHUNK_CLIPS, shard_clips or default_shard_clips(n, spec))
        return _with_jobs(url, audio_root, None, spec, layout, table, (), None, False)

    stored = state.spec
    differ = {k: (getattr(stored.decoding, k), getattr(spec.decoding, k))
              for k in stored.decoding.__dataclass_fields__ if getattr(stored.decoding, k) != getattr(spec.decoding, k)}
    if stored.codec != spec.codec:
        differ["codec"] = (stored.codec, spec.codec)
    if differ:
        raise UserError(f"{url} was built with {_settings(differ)}: a store's decoding and codec are fixed; pass "
                        "the same settings (its --preset), choose another --out, or --overwrite to rebuild it")
    if shard_clips is not None and shard_clips != state.attrs.shard_clips:
        raise UserError(f"{url} was started with --shard-size {state.attrs.shard_clips}: a store keeps its shard "
                        "size; leave --shard-size out, or pass --overwrite to rebuild it")
    for name, array in spec.arrays.items():
        old = stored.arrays.get(name)
        if old is not None and old != array:
            raise UserError(f"{url} holds {name} built with {_settings(_differences(old, array))}: give the new "
                            "array another name (e.g. in a --spec file), build into another --out, or --overwrite "
                            "to rebuild the store")
    added = tuple(name for name in spec.arrays if name not in stored.arrays)
    merged = FeatureSpec(stored.decoding, {**stored.arrays, **{n: spec.arrays[n] for n in added}}, stored.codec)
    grown, relabelled = _growth(url, state, manifest)
    layout = Layout(n, state.attrs.chunk_clips, state.attrs.shard_clips)
    return _with_jobs(url, audio_root, state, merged, layout, table, added, grown, relabelled)


def _with_jobs(url: str, audio_root: str, state: StoreState | None, spec: FeatureSpec, layout: Layout, table: Any,
               added: tuple[str, ...], grown: int | None, relabelled: bool) -> Plan:
    """One job per shard with anything left to write: new shards whole; a grown shard keeping its
    stored rows; committed shards computing only the arrays they lack; committed shards whole
    again when a file they recorded as unreadable reads now (`unreadable_again`)."""
    hashes = part_hashes(spec)
    rows = shard_rows_hashes(table, layout)
    ids, paths = table["clip_id"].astype(str).tolist(), table["path"].astype(str).tolist()
    train = (table["split"] == "train").to_numpy()
    jobs, valid = [], {}
    for i in range(layout.n_shards):
        start, stop = layout.shard_range(i)
        valid[i] = state.valid(i, rows[i]) if state is not None else frozenset()
        if CLIPS in valid[i] and unreadable_again(state.records[i], audio_root, paths):
            valid[i] = frozenset()
        done, keep, kept, clips = valid[i], stop - start, (), False
        if CLIPS not in done:  # new clips, or a grown shard whose first rows are stored
            keep, kept = _stored_prefix(state, i, start, stop, ids, paths, spec)
            clips, done = True, frozenset()
        write = tuple(name for name in spec.names if name not in done)
        if write or clips:
            jobs.append(ShardJob(url, audio_root, spec, i, start, stop, tuple(ids[start:stop]),
                                 tuple(paths[start:stop]), tuple(bool(t) for t in train[start:stop]), write, clips,
                                 keep, kept, hashes))
    return Plan(spec, layout, state, tuple(jobs), valid, tuple(rows), added, grown, relabelled)


def unreadable_again(record: Any, audio_root: str, paths: list[str]) -> bool:
    """Whether a clip this committed shard failed as not readable (`NotReadable`: not found,
    permission denied, an I/O error; perhaps a worker's missing mount) reads now: the shard is
    then built again."""
    from featurestore.audio.decoder import read_problem
    from featurestore.errors import NotReadable

    errors = record.clips.errors if record.clips is not None else {}
    return any(NotReadable.describes(why) and row.isdigit() and record.start + int(row) < record.stop
               and read_problem(audio_root, paths[record.start + int(row)]) is None for row, why in errors.items())


def _stored_prefix(state: StoreState | None, index: int, start: int, stop: int, ids: list[str], paths: list[str],
                   spec: FeatureSpec) -> tuple[int, tuple[str, ...]]:
    """(rows, arrays) a grown shard keeps: the rows its record committed before clips were appended."""
    record = state.records.get(index) if state is not None else None
    if record is None or not start < record.stop < stop:
        return 0, ()
    prefix = record.valid_parts(state.expected(), start, record.stop,
                                rows_hash(ids[start:record.stop], paths[start:record.stop]))
    if CLIPS not in prefix:
        return 0, ()
    return record.stop - start, tuple(name for name in spec.names if name in prefix)


def _settings(pairs: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {a} (this build: {b})" for k, (a, b) in pairs.items())


def _differences(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """The settings (or the kind) in which two arrays differ."""
    before, after = old.to_dict(), new.to_dict()
    if before["kind"] != after["kind"]:
        return {"kind": (before["kind"], after["kind"])}
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def _growth(url: str, state: StoreState, manifest: Any) -> tuple[int | None, bool]:
    """(the clip count before this build when the manifest appends rows, else None; whether
    stored rows change labels, split or group). Refuses a manifest that drops, reorders or
    repoints any stored clip."""
    copy = read_manifest_copy(url, state.attrs).table
    new = manifest.table
    n, n_old = len(new), len(copy)
    common = min(n, n_old)
    same = (copy["clip_id"].iloc[:common].to_numpy() == new["clip_id"].iloc[:common].to_numpy()) & (
        copy["path"].iloc[:common].to_numpy() == new["path"].iloc[:common].to_numpy())
    if not same.all():
        i = int(np.argmin(same))
        raise UserError(f"{url}: row {i} of the manifest is clip {new['clip_id'].iat[i]!r} ({new['path'].iat[i]}) "
                        f"where the store holds {copy['clip_id'].iat[i]!r} ({copy['path'].iat[i]}): a store only "
                        "grows by rows appended to its manifest; build another --out (or --overwrite) for "
                        "another clip list")
    if n < n_old:
        raise UserError(f"{url}: the manifest has {n} rows, the store {n_old} (it drops clip "
                        f"{copy['clip_id'].iat[n]!r} and those after it): a store only grows; build another --out "
                        "(or --overwrite) for fewer clips")
    before, now = copy.iloc[:common], new.iloc[:common]
    relabelled = not (before["labels"].map(list).tolist() == now["labels"].map(list).tolist()
                      and before["split"].tolist() == now["split"].tolist()
                      and before["group"].astype(str).tolist() == now["group"].astype(str).tolist())
    return (n_old if n > n_old else None), relabelled


def check_same_audio(url: str, state: StoreState | None, audio_root: str, moved: bool) -> None:
    before = state.attrs.audio_root if state is not None else None
    if before is not None and before != audio_root and not moved:
        raise UserError(f"{url} was built from the audio under {before}, this build gives --audio-root {audio_root}: "
                        "clips of one store come from one place; pass the same --audio-root, or add --moved-audio if "
                        "the same files now live there")


def sampled_paths(paths: list[str]) -> list[str]:
    """At most `AUDIO_SAMPLE` of the paths, spread evenly from the first to the last."""
    spread = np.linspace(0, len(paths) - 1, min(len(paths), AUDIO_SAMPLE)).round().astype(int)
    return [paths[i] for i in np.unique(spread)]


def check_audio_root(audio_root: str, paths: list[str]) -> list[str]:
    """Refuse an audio root that is not there, or under which none of a sample of the manifest's
    paths exists: a wrong root would otherwise run the whole build to mark every clip failed.
    Returns the sample (`sampled_paths`), for the workers to look at too."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(audio_root)
    if not fs.isdir(root):
        raise UserError(f"--audio-root {audio_root} is not a folder: give the folder the manifest paths are "
                        "relative to")
    sample = sampled_paths(paths)
    if not any(fs.exists(f"{root.rstrip('/')}/{path}") for path in sample):
        raise UserError(f"none of {len(sample)} manifest paths sampled from first to last is under --audio-root "
                        f"{audio_root} (e.g. {sample[0]}): give the folder the manifest paths are relative to")
    return sample


def audio_paths(plan: Plan, table: Any) -> list[str]:
    """The manifest paths the plan's tasks decode for the first time (every path if none)."""
    paths = table["path"]
    new = [paths.iat[job.start + row] for job in plan.jobs for row in range(job.keep, job.stop - job.start)]
    return new or paths.tolist()
