"""The Dask build: one task per shard, commit records by the driver, resume by skipping them.

A task decodes and extracts the clips of its shard, writes the shard of every array it was
given whole, reads quantized ones back and returns only a small record: per part (status and
length, then each feature) the content hash of what is stored, ok/failed counts, failure
reasons and float64 partial sums for the statistics. The driver alone writes the commit
records, then combines the sums and marks the store complete. A recomputed shard (after a
kill, or a worker Dask lost) is written again with the same bytes, so the result does not
depend on the worker count, the scheduler or interruptions.

An existing store grows instead of being rebuilt: a feature it lacks is computed alone (the
ok clips are decoded again, nothing else is written); rows appended to the manifest are built
as new clips (the last, partial shard keeps its stored rows and gains the new ones); changed
labels or splits only rewrite the manifest copy and recompute the statistics from the stored
features. One build at a time writes a store (`featurestore.lock`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from featurestore import codecs, environment, stages, stats
from featurestore import store as st
from featurestore.errors import UserError
from featurestore.files import final_name
from featurestore.profile import BuildProfile
from featurestore.spec import DECODING, FeatureSpec
from featurestore.watch import CrashLog, SchedulerTimeout, WatchConfig, Watcher

VERSIONED = ("featurestore", "zarr", "numcodecs", "numpy", "torch", "torchaudio", "librosa", "soundfile", "soxr",
             "dask", "distributed")
# Dask sets these in worker processes before they start (`distributed.nanny.pre-spawn-environ`);
# one thread each for the numeric libraries, since parallelism comes from the processes.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Dask's own MALLOC_TRIM_THRESHOLD_=65536 also pins glibc's mmap threshold, so every large NumPy or
# torch temporary is mmap'ed and page-faulted afresh: build tasks ran up to 3x slower with it on this
# machine. Fixed thresholds keep those temporaries in the heap (0 page faults per clip, against
# ~5,000 at the gtzan/fma settings with glibc's adaptive default); a worker keeps at most 256 MB
# of freed memory. `worker_env={"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": None}`
# restores Dask's setting (benchmarks/ measures both).
BUILD_WORKER_ENV: dict[str, str | None] = {
    **WORKER_ENV, "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
}


@dataclass(frozen=True)
class BuildReport:
    url: str
    ok: int
    failed: int
    pending: int
    first_reasons: tuple[str, ...]  # "clip_id (path): reason", in store order
    elapsed: float  # seconds
    shards: int
    shards_built: int  # and committed by this run
    shards_skipped: int  # already committed by an earlier run
    shard_failures: tuple[str, ...] = ()  # "shard-00003 (clips 24-31): why its task failed"; clips stay pending
    decoded: int = 0  # clips decoded by this run
    changes: tuple[str, ...] = ()  # how this run changed an existing store: "added handcrafted", ...
    profile: BuildProfile | None = None  # where the time went

    def summary(self) -> str:
        lines = [
            f"{self.url}: ok {self.ok}, failed {self.failed}, pending {self.pending} of "
            f"{self.ok + self.failed + self.pending} clips; {self.shards} shards ({self.shards_built} built now, "
            f"{self.shards_skipped} already committed) in {self.elapsed:.1f} s; {self.decoded} clips decoded"
        ]
        if self.changes:
            lines.append("grew the store: " + "; ".join(self.changes))
        if self.first_reasons:
            lines.append("first failures:")
            lines += [f"  {r}" for r in self.first_reasons]
        if self.shard_failures:
            lines.append(f"{len(self.shard_failures)} shard(s) could not be built (their clips stay pending; "
                         "re-run the same command to retry them):")
            lines += [f"  {r}" for r in self.shard_failures]
        return "\n".join(lines)


class StorageError(Exception):
    """The store cannot be written (permissions, a full disk, a vanished folder): every shard would fail."""


def describe_os_error(exc: OSError) -> str:
    """"Permission denied: PATH", naming the file a temporary stood for."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {final_name(os.fspath(exc.filename))}"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class ShardJob:
    """Everything a task needs; small, so that it travels cheaply to a worker.

    The task writes the features in `write`, and status and length when `clips` is set. The
    shard's first `keep` rows are already stored and stay as they are: their status and length,
    and their values of the features in `kept` (a shard that grows keeps its old rows).
    """

    url: str
    audio_root: str
    spec: FeatureSpec  # the store's, every feature of it
    layout: st.Layout
    index: int
    clip_ids: tuple[str, ...]
    paths: tuple[str, ...]
    train: tuple[bool, ...]
    write: tuple[str, ...]
    clips: bool
    keep: int
    kept: tuple[str, ...]
    hashes: dict[str, str]  # settings hash of each part (`st.part_hashes`)
    crashed: Mapping[int, str] = field(default_factory=dict)  # rows that kill a worker: failed, not decoded
    probed: bool = False  # its clips were tried one by one after its task died with its worker


@dataclass(frozen=True)
class Plan:
    """What a build does to the store at its `--out`, decided before anything is written."""

    old: dict[str, Any] | None  # attributes of the store it grows or resumes; None: create one
    spec: FeatureSpec  # the store's spec afterwards: its features and the new ones
    layout: st.Layout
    added: tuple[str, ...] = ()  # features new to the store
    grown_from: int | None = None  # clips before rows were appended
    relabelled: bool = False  # stored rows with other labels, splits or groups

    def changes(self) -> tuple[str, ...]:
        out = [f"added {', '.join(self.added)}"] if self.added else []
        if self.grown_from is not None:
            out.append(f"appended {self.layout.n_clips - self.grown_from} clips to {self.grown_from}")
        if self.relabelled:
            out.append("labels or splits changed: manifest copy and statistics updated, nothing decoded for it")
        return tuple(out)


def build_store(
    manifest_path: str | os.PathLike[str],
    audio_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    spec: FeatureSpec,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    shard_clips: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    worker_env: Mapping[str, str | None] | None = None,
    scheduler_timeout: float | None = None,
    moved_audio: bool = False,
) -> BuildReport:
    """Build (or resume building) the store at `out` from a manifest and its audio.

    `scheduler` is the address of a running Dask scheduler; without it a LocalCluster of
    `workers` processes (default: one per core) runs the build. `worker_env` overrides the
    environment those processes start with (`BUILD_WORKER_ENV`; None unsets a variable).
    A scheduler that does not answer for `scheduler_timeout` seconds (default 60) stops the
    build. The store records its audio root; resuming or growing it from another one is refused
    unless `moved_audio` says the same files moved there.
    """
    import manifests

    from featurestore.lock import writer_lock

    started = time.perf_counter()
    clock = stages.Stopwatch()
    if workers is not None and scheduler is not None:
        raise UserError("give either --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    if scheduler is not None:
        check_scheduler_address(scheduler)
    if scheduler_timeout is not None and not scheduler_timeout > 0:
        raise UserError(f"--scheduler-timeout must be positive seconds (got {scheduler_timeout})")
    codecs.parse(spec.codec)
    manifest = manifests.load(manifest_path)
    if len(manifest.table) == 0:
        raise UserError(f"{manifest_path}: the manifest has no rows: nothing to build")
    environment.require(_libraries(spec))
    clock.lap("manifest and libraries")
    url, audio_root = _location(out), _location(audio_root)
    records: dict[int, dict[str, Any]] = {}
    run = _Run()
    try:
        with writer_lock(url):
            plan = _plan(url, spec, manifest, os.fspath(manifest_path), shard_clips, overwrite)
            spec, layout = plan.spec, plan.layout
            if plan.old is not None:
                records.update(st.read_commits(url))
            jobs = _jobs(url, audio_root, plan, manifest.table, records)
            skipped = layout.n_shards - len(jobs)
            if jobs:  # a build that decodes nothing (new labels, say) needs no audio
                _check_same_audio(url, plan.old, audio_root, moved_audio)
                check_audio_root(audio_root, [manifest.table["path"].iat[i] for j in jobs for i in _decoded_rows(j)]
                                 or manifest.table["path"].tolist())
            clock.lap("plan")
            cluster = dask_client(workers, scheduler, worker_env, progress) if jobs else contextlib.nullcontext()
            with cluster as client:
                if client is not None:
                    check_workers(client, _libraries(spec))  # before the store is touched
                clock.lap("cluster start-up")
                recorded_root = audio_root if jobs or plan.old is None else plan.old.get("audio_root", audio_root)
                group = _apply(url, plan, manifest, os.fspath(manifest_path), recorded_root)
                clock.lap("store set-up")
                if jobs:
                    grow = functools.partial(add_local_workers, client, worker_env) if scheduler is None else None
                    run = _run(client, url, st.read_attrs(group)["store_id"], jobs, records, layout, skipped,
                               progress, WatchConfig.from_env(scheduler_timeout), grow)
                clock.lap("tasks")
            clock.lap("cluster shut-down")
            ok, failed, pending, reasons = _finish(url, group, plan, manifest, os.fspath(manifest_path), records)
            clock.lap("finish")
    except (OSError, StorageError) as exc:
        why = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise UserError(f"cannot write the store {url} ({why}); the build stopped and its {len(records)} committed "
                        "shard(s) stay intact: make the location writable and re-run the same command to resume"
                        ) from None
    shard_failures = tuple(f"{st.shard_name(i)} (clips {layout.shard_range(i)[0]}-{layout.shard_range(i)[1] - 1}): "
                           f"{why}" for i, why in sorted(run.failures.items()))
    return BuildReport(url, ok, failed, pending, tuple(reasons[:5]), time.perf_counter() - started,
                       layout.n_shards, len(jobs) - len(run.failures), skipped, shard_failures, run.decoded,
                       plan.changes(), BuildProfile(clock.seconds, run.workers, run.submitted, run.collected,
                                                   tuple(run.tasks)))


def check_scheduler_address(address: str) -> None:
    """Refuse what is not a Dask scheduler address before anything starts."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        protocol, location = parse_address(address, strict=True)
        if protocol not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
            raise ValueError(f"protocol {protocol}:// is not a Dask transport")
        if protocol != "inproc":  # a thread of this process (tests, notebooks): no port
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {address!r} is not a Dask scheduler address ({exc}): give one like "
                        "tcp://host:8786") from None


def _check_same_audio(url: str, old: dict[str, Any] | None, audio_root: str, moved: bool) -> None:
    before = (old or {}).get("audio_root")
    if before is not None and before != audio_root and not moved:
        raise UserError(f"{url} was built from the audio under {before}, this build gives --audio-root {audio_root}: "
                        "clips of one store come from one place; pass the same --audio-root, or add --moved-audio if "
                        "the same files now live there")


def _libraries(spec: FeatureSpec) -> tuple[str, ...]:
    """What the build's processes must import: the feature libraries, and what each feature requires."""
    extra = [m for name in spec.features for m in spec.feature(name).requires]
    return tuple(dict.fromkeys([*environment.FEATURE_LIBRARIES, *extra]))


def _decoded_rows(job: ShardJob) -> range:
    """Store rows of a job's shard that have never been decoded (the audio root must hold them)."""
    start, stop = job.layout.shard_range(job.index)
    return range(start + job.keep, stop)


# --- the task (runs on a worker) -----------------------------------------------------------------

_EXTRACTORS: dict[str, Any] = {}  # one FeatureExtractor per spec per worker process


def _extractor(spec: FeatureSpec) -> Any:
    key = spec.hash()
    if key not in _EXTRACTORS:
        from featurestore.extract import FeatureExtractor

        _single_threaded()
        _EXTRACTORS[key] = FeatureExtractor(spec)  # its first clip compiles librosa, one worker at a time
    return _EXTRACTORS[key]


def _single_threaded() -> None:
    """Parallelism comes from the worker processes: threads inside one (torch's, Blosc's, zarr's
    codec pool) only compete with the other workers for the same cores."""
    import numcodecs.blosc
    import torch
    import zarr

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    zarr.config.set({"threading.max_workers": 1})


def build_shard(job: ShardJob) -> dict[str, Any]:
    """Compute and write one whole shard; return its parts for the commit record, and where the
    task's time went (`stages`: seconds per stage; `began`/`ended`: wall-clock time; `worker`)."""
    began = time.time()
    with stages.recording() as watch:
        result = _build_shard(job)
    return {**result, "stages": watch.seconds, "began": began, "ended": time.time(), "worker": os.getpid()}


def _build_shard(job: ShardJob) -> dict[str, Any]:
    import zarr

    from featurestore.audio import AudioError, decode, resolve

    t0 = time.perf_counter()
    spec, (start, stop) = job.spec, job.layout.shard_range(job.index)
    codec = codecs.parse(spec.codec)
    arrays = st.clip_arrays(spec)
    names = [*job.write, *(("status", "length") if job.clips else ())]
    enc = {name: codec.for_array(name, arrays[name].dtype) for name in names}
    data = {name: np.zeros((stop - start, *arrays[name].clip_shape), dtype=enc[name].dtype) for name in names}
    try:
        group = zarr.open_group(st.zarr_store(job.url, read_only=False), mode="r+")
        # rows already stored: their status decides what to decode; kept features are carried over
        known = st.read_shard(group, job.layout, job.index, ["status", "length"]) if job.keep else {}
        for name in job.kept:
            data[name][: job.keep] = st.FeatureArray(st.node(group, name))[start : start + job.keep]
    except OSError as exc:
        return {"shard": job.index, "storage_error": describe_os_error(exc)}
    stages.lap("open store")
    if not job.clips:
        status = known["status"]
    else:
        status = data["status"]
        if job.keep:
            status[: job.keep], data["length"][: job.keep] = known["status"][: job.keep], known["length"][: job.keep]
    extractor = _extractor(spec.replace(features=job.write)) if job.write else None
    stages.lap("worker set-up")
    errors: dict[str, str] = {}
    decoded = 0
    for i, path in enumerate(job.paths):
        old = i < job.keep or not job.clips
        todo = [n for n in job.write if not (n in job.kept and i < job.keep)]
        if old and (status[i] != st.OK or not todo):
            continue
        try:
            if i in job.crashed:
                raise AudioError(job.crashed[i])
            decoded += 1
            clip = decode(resolve(job.audio_root, path), spec)  # refuses paths leaving the root
            features = extractor(clip.samples) if extractor is not None else {}
            _check(features, enc)
            stages.lap("checks")
        except AudioError as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the build; its reason is kept
            why = f"feature extraction failed: {type(exc).__name__}: {exc}"
        else:
            for name in todo:
                _store_row(data[name][i], features[name])
            if not old:
                data["status"][i], data["length"][i] = st.OK, clip.length
            stages.lap("copy into the shard")
            continue
        if old:  # stored as ok by an earlier build, now failing: the other arrays would disagree with it
            return {"shard": job.index, "clip_error": f"clip {start + i} ({path}) was built as ok and now fails: "
                                                      f"{why}; rebuild the store with --overwrite"}
        errors[str(i)] = why
        data["status"][i] = st.FAILED

    # What readers will get back (a quantized array's rounded values) is what the hash and the
    # statistics describe; `featurestore verify` re-hashes every shard from what is on disk.
    encoded = {name: enc[name].encode(values) for name, values in data.items()}
    stages.lap("encode")
    stored = {name: codecs.decode(values, enc[name].attributes()) for name, values in encoded.items()}
    stages.lap("stored values")
    try:
        _write_whole_shards({name: st.node(group, name) for name in encoded}, start, stop, encoded,
                            {n: st.shard_object(job.url, n, job.index, 1 + len(arrays[n].clip_shape)) for n in encoded})
        stages.lap("compress and write")
        sizes = st.written_sizes(job.url, [(n, 1 + len(arrays[n].clip_shape)) for n in encoded], job.index)
    except OSError as exc:  # returned, not raised: the driver stops the build with one clear line
        return {"shard": job.index, "storage_error": describe_os_error(exc)}
    stages.lap("object sizes")
    hashes = {name: st.content_hash({name: stored[name]}) for name in job.write}
    if job.clips:
        hashes[st.CLIPS] = st.content_hash({"status": stored["status"], "length": stored["length"]})
    stages.lap("content hash")
    train = np.asarray(job.train, dtype=bool)
    sums = stats.partial_sums(stored, (status == st.OK) & train, {n: a for n, a in st.normalised(spec).items()
                                                                  if n in job.write})
    stages.lap("statistics")
    parts: dict[str, dict[str, Any]] = {}
    if job.clips:
        parts[st.CLIPS] = {"settings_hash": job.hashes[st.CLIPS], "hash": hashes[st.CLIPS],
                           "ok": int(np.count_nonzero(status == st.OK)),
                           "failed": int(np.count_nonzero(status == st.FAILED)), "errors": errors,
                           "bytes": {n: sizes[n] for n in st.part_arrays(st.CLIPS)}}
    for name in job.write:
        parts[name] = {"settings_hash": job.hashes[name], "hash": hashes[name], "bytes": {name: sizes[name]}}
        if name in sums:
            parts[name] |= {"stats": sums[name], "split_hash": st.split_hash(train)}
    return {"shard": job.index, "start": start, "stop": stop, "parts": parts, "decoded": decoded,
            "seconds": round(time.perf_counter() - t0, 3)}


def _write_whole_shards(arrays: dict[str, Any], start: int, stop: int, values: dict[str, np.ndarray],
                        targets: dict[str, str]) -> None:
    """One shard of every array, written concurrently on zarr's event loop: one array at a time,
    each write's waits on storage and on the codec thread queue behind the others' (a 32-clip
    mtat-seed shard, one thread: 86 → 70 ms). Empty chunks are written too: a whole shard's
    chunks are rarely all zero, and asking each one costs a comparison of all its bytes (a
    32-clip mtat-seed shard: 52 → 44 ms with Blosc, 22 → 12 ms uncompressed); readers get the
    same values either way.

    zarr reads an existing shard's index before replacing the shard: when that object is
    damaged (truncated, flipped bytes), it is removed and the shard written afresh. Otherwise the
    replacement stays atomic, which readers during a build rely on."""
    import asyncio

    from zarr.core.sync import sync

    arrays = {name: array.with_config({"write_empty_chunks": True}) for name, array in arrays.items()}

    async def write_all() -> list[Any]:
        return await asyncio.gather(*(arrays[name].async_array.setitem(slice(start, stop), data)
                                      for name, data in values.items()), return_exceptions=True)

    for name, outcome in zip(values, sync(write_all())):
        try:
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception) or isinstance(outcome, OSError):
                    raise outcome
                st.remove_object(targets[name])  # a bad checksum or a short index, in whichever codec noticed
                arrays[name][start:stop] = values[name]
        except OSError as exc:
            exc.filename = exc.filename or targets[name]  # zarr's writes often lose it
            raise


def probe_clip(job: ShardJob, row: int) -> None:
    """Decode and extract one clip of a shard, storing nothing. After a shard's task died with
    its worker on every try, one probe per clip finds the clip(s) that kill a worker, so that only
    they fail (an ordinary failure is left to the shard's task, which records it)."""
    from featurestore.audio import decode, resolve

    with contextlib.suppress(Exception):
        clip = decode(resolve(job.audio_root, job.paths[row]), job.spec)
        if job.write:
            _extractor(job.spec.replace(features=job.write))(clip.samples)


def _probed_rows(job: ShardJob) -> range:
    """Rows of a job's shard that its task decodes (offsets in the shard)."""
    return range(job.keep if job.clips else 0, len(job.paths))


def _check(features: dict[str, np.ndarray], enc: dict[str, codecs.ArrayCodec]) -> None:
    """Never store a value the array's encoding cannot hold (the extractor has already refused
    non-finite values and clamped float16 ones to float16's range)."""
    for name, values in features.items():
        limit = enc[name].max_abs
        if limit < np.inf and values.size and max(values.max(), -values.min()) > limit:
            raise ValueError(f"{name} values beyond +-{limit:g}, the range of codec {enc[name].step} steps")


def _store_row(row: np.ndarray, values: np.ndarray) -> None:
    """`row[...] = values`. float32 -> float16 through torch, whose vectorised conversion costs a
    tenth of NumPy's here (0.02 against 0.2 ms for a 65,536-sample crop); both round to nearest
    even, so the stored bits are the same."""
    if row.dtype == np.float16 and values.dtype == np.float32:
        import torch

        torch.from_numpy(row).copy_(torch.from_numpy(values))
    else:
        row[...] = values


# --- the driver ----------------------------------------------------------------------------------


def _location(path_or_url: str | os.PathLike[str]) -> str:
    """URLs as given; local paths absolute, since workers may run in another directory."""
    s = os.fspath(path_or_url)
    return s if "://" in s else os.path.abspath(s)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@functools.cache
def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _plan(url: str, spec: FeatureSpec, manifest: Any, manifest_path: str, shard_clips: int | None,
          overwrite: bool) -> Plan:
    """Read-only: what this build does to the store at `url`; refuse what would mix or lose data."""
    n = len(manifest.table)
    old = None if overwrite else st.stored_attrs(url)
    if old is not None and old.get("format_version") != st.FORMAT_VERSION:
        raise UserError(f"{url} has store format {old.get('format_version')}, this version writes "
                        f"{st.FORMAT_VERSION}: pass --overwrite to rebuild it, or choose another --out")
    if old is not None and not st.read_commits(url):
        old = None  # nothing committed yet (a build killed early): start it afresh
        overwrite = True
    if old is None:
        existing = st.list_names(url)
        if existing and not st.is_store(url):
            raise UserError(f"{url} holds files that are not a feature store ({', '.join(existing[:3])}"
                            f"{', ...' if len(existing) > 3 else ''}): choose a new or empty --out (--overwrite "
                            "replaces only a feature store, and nothing here was deleted)")
        if existing and not overwrite:
            raise UserError(f"{url} holds a feature store this build cannot resume: pass --overwrite to rebuild it, "
                            "or choose another --out")
        if shard_clips is not None and (shard_clips < 1 or shard_clips % st.CHUNK_CLIPS):
            raise UserError(f"--shard-size must be a positive multiple of {st.CHUNK_CLIPS} clips (the chunk size), "
                            f"got {shard_clips}")
        return Plan(None, spec, st.Layout(n, st.CHUNK_CLIPS, shard_clips or st.default_shard_clips(n, spec)))

    stored = FeatureSpec.from_dict(old["spec"])
    fixed = {k: (getattr(stored, k), getattr(spec, k)) for k in (*DECODING, "codec")}
    differ = {k: v for k, v in fixed.items() if v[0] != v[1]}
    if differ:
        raise UserError(f"{url} was built with {_settings(differ)}: a store's decoding and codec are fixed; pass "
                        "the same settings (its --preset), choose another --out, or --overwrite to rebuild it")
    if shard_clips is not None and shard_clips != old["shard_clips"]:
        raise UserError(f"{url} was started with --shard-size {old['shard_clips']}: a store keeps its shard size; "
                        "leave --shard-size out, or pass --overwrite to rebuild it")
    merged = stored.to_dict()
    added = tuple(f for f in spec.features if f not in stored.features)
    for name in spec.features:
        own = {k: (getattr(stored, k), getattr(spec, k)) for k in spec.feature(name).settings}
        if name in stored.features and any(a != b for a, b in own.values()):
            raise UserError(f"{url} holds {name} built with {_settings({k: v for k, v in own.items() if v[0] != v[1]})}:"
                            f" build {name} with its settings, into another --out, or --overwrite to rebuild the store")
    for name in added:
        for k in spec.feature(name).settings:
            users = [a for a in stored.features if k in stored.feature(a).settings]
            if users and getattr(stored, k) != getattr(spec, k):
                raise UserError(f"{url}: {name} would use {_settings({k: (getattr(stored, k), getattr(spec, k))})} but "
                                f"the store's {users[0]} uses {k} {getattr(stored, k)}; features of one store share "
                                f"their common settings: pass --{k.replace('_', '-')} {getattr(stored, k)}")
            merged[k] = getattr(spec, k)
    merged["features"] = [*stored.features, *added]
    grown, relabelled = _growth(url, manifest, int(old["n_clips"]))
    layout = st.Layout(n, int(old["chunk_clips"]), int(old["shard_clips"]))
    return Plan(old, FeatureSpec.from_dict(merged), layout, added, grown, relabelled)


def _settings(pairs: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {a} (this build: {b})" for k, (a, b) in pairs.items())


def _growth(url: str, manifest: Any, n_old: int) -> tuple[int | None, bool]:
    """(the clip count before this build when the manifest appends rows, else None; whether
    stored rows change labels, split or group). Refuses a manifest that drops, reorders or
    repoints any stored clip."""
    copy = st.open_store(url).manifest
    new = manifest.table
    n = len(new)
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


def _jobs(url: str, audio_root: str, plan: Plan, table: Any, records: dict[int, dict[str, Any]]) -> list[ShardJob]:
    """One job per shard with anything left to write: new shards whole; a grown shard keeping its
    stored rows; committed shards computing only the features they lack."""
    spec, layout = plan.spec, plan.layout
    hashes = st.part_hashes(spec)
    expected = _expected(url, plan.old, spec)
    rows = st.shard_rows_hashes(table, layout)
    ids, paths = table["clip_id"].astype(str).tolist(), table["path"].astype(str).tolist()
    train = (table["split"] == "train").to_numpy()
    jobs = []
    for i in range(layout.n_shards):
        start, stop = layout.shard_range(i)
        valid = st.valid_parts(records.get(i), start, stop, rows[i], expected)
        keep, kept, clips = stop - start, (), False
        if st.CLIPS not in valid:  # new clips, or a grown shard whose first rows are stored
            record = records.get(i) or {}
            old_stop = record.get("stop")
            prefix = (set() if not isinstance(old_stop, int) or not start < old_stop < stop else
                      st.valid_parts(record, start, old_stop, st.rows_hash(ids[start:old_stop], paths[start:old_stop]),
                                     expected))
            keep = old_stop - start if st.CLIPS in prefix else 0
            kept = tuple(f for f in spec.features if f in prefix) if keep else ()
            clips, valid = True, set()
        write = tuple(f for f in spec.features if f not in valid)
        if write or clips:
            jobs.append(ShardJob(url, audio_root, spec, layout, i, tuple(ids[start:stop]), tuple(paths[start:stop]),
                                 tuple(bool(t) for t in train[start:stop]), write, clips, keep, kept, hashes))
    return jobs


def _expected(url: str, attrs: dict[str, Any] | None, spec: FeatureSpec) -> st.Expected:
    """What the commit records of the store at `url` (attributes `attrs`, None if new) must match."""
    if attrs is None:
        return st.Expected(None, st.part_hashes(spec), {})
    return st.expected_now(url, attrs.get("store_id"), st.part_hashes(spec), (st.CLIPS, *spec.features))


def _apply(url: str, plan: Plan, manifest: Any, manifest_path: str, audio_root: str) -> Any:
    """Create the store, or grow it: new arrays, arrays resized for appended clips, attributes
    describing what the store will hold; the manifest copy of a new store."""
    import zarr

    spec, layout = plan.spec, plan.layout
    if plan.old is None:
        st.remove_tree(url)
        group = st.create(url, _attrs(spec, manifest, layout, {}, audio_root), spec, layout)
        _write_manifest(group, manifest, manifest_path, [None] * layout.n_clips)
        return group
    st.unconsolidate(url)
    st.remove_temporaries(url)
    group = zarr.open_group(st.zarr_store(url, read_only=False), mode="r+")
    if plan.grown_from is not None:
        for name, array in st.clip_arrays(spec).items():
            existing = st.node(group, name)
            if existing is not None and existing.shape[0] != layout.n_clips:
                existing.resize((layout.n_clips, *array.clip_shape))
    st.create_missing_nodes(group, spec, layout)
    st.write_attrs(group, _attrs(spec, manifest, layout, plan.old, audio_root))
    return group


def _attrs(spec: FeatureSpec, manifest: Any, layout: st.Layout, old: dict[str, Any], audio_root: str) -> dict[str, Any]:
    """The store's attributes for this build (state `building` until `_finish`)."""
    arrays = st.clip_arrays(spec)
    previous = old.get("arrays", {})
    return {
        **old,
        "format_version": st.FORMAT_VERSION,
        "store_id": old.get("store_id") or uuid.uuid4().hex,  # commit records name the store they belong to
        "audio_root": audio_root,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "decoding_hash": st.decoding_hash(spec),
        "manifest_hash": manifest.content_hash(),
        "dataset": manifest.meta.dataset,
        "labels": list(manifest.meta.labels),
        "n_clips": layout.n_clips,
        "chunk_clips": layout.chunk_clips,
        "shard_clips": layout.shard_clips,
        "build_state": "building",
        "versions": dict(_versions()),
        "codec": codecs.parse(spec.codec).describe({a.name: a.dtype for a in arrays.values()}),
        "arrays": {name: {"settings": spec.array_settings(name), "hash": st.array_hash(spec, name),
                          "added": previous.get(name, {}).get("added") or _now()} for name in spec.features},
        "coordinates": {name: c for name in spec.features if (c := spec.feature(name).coordinates())},
    }


AUDIO_SAMPLE = 16  # manifest paths looked up before a build starts


def check_audio_root(audio_root: str, paths: list[str]) -> None:
    """Refuse an audio root that is not there, or under which none of a sample of the manifest's
    paths exists: a wrong root would otherwise run the whole build to mark every clip failed."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(audio_root)
    if not fs.isdir(root):
        raise UserError(f"--audio-root {audio_root} is not a folder: give the folder the manifest paths are "
                        "relative to")
    spread = np.linspace(0, len(paths) - 1, min(len(paths), AUDIO_SAMPLE)).round().astype(int)
    sample = [paths[i] for i in np.unique(spread)]
    if not any(fs.exists(f"{root.rstrip('/')}/{path}") for path in sample):
        raise UserError(f"none of {len(sample)} manifest paths sampled from first to last is under --audio-root "
                        f"{audio_root} (e.g. {sample[0]}): give the folder the manifest paths are relative to")


@contextlib.contextmanager
def _spawning(worker_env: Mapping[str, str | None] | None) -> Iterator[None]:
    """The environment in which local workers start: `BUILD_WORKER_ENV` updated by `worker_env`.

    Dask's Nanny copies the pre-spawn environment into this process's os.environ, never restores
    it, and prefers os.environ over its config: left alone, every later cluster in this process
    would inherit the first one's settings. Those variables are cleared while workers spawn (so
    they neither inherit nor override), and os.environ is restored afterwards."""
    import dask

    env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **BUILD_WORKER_ENV, **(worker_env or {})}
    saved = dict(os.environ)
    try:
        for name in env:
            os.environ.pop(name, None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def add_local_workers(client: Any, worker_env: Mapping[str, str | None] | None, n: int) -> None:
    """Start `n` more workers in the client's LocalCluster, set up like its first ones, and wait
    (up to two minutes) until they have joined."""
    cluster = client.cluster
    target = len(client.scheduler_info()["workers"]) + n
    with _spawning(worker_env):
        cluster.scale(len(cluster.worker_spec) + n)
        with contextlib.suppress(TimeoutError):  # the watch tries again if they never join
            client.wait_for_workers(target, timeout=120)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                worker_env: Mapping[str, str | None] | None = None, progress: bool = False) -> Iterator[Any]:
    """A Client of the cluster at `scheduler`, or of a LocalCluster of `workers` processes with
    one thread each (closed on exit), its workers' environment set before they start."""
    from dask.distributed import Client

    if scheduler is not None:
        if worker_env:
            raise UserError("worker environment settings apply to a local cluster only, not to --scheduler")
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            _announce(client, progress)
            yield client
        return
    with local_cluster(workers or os.cpu_count() or 1, worker_env) as cluster, Client(cluster) as client:
        client.run(_quiet_worker_logs)
        _announce(client, progress)
        yield client


def check_workers(client: Any, libraries: tuple[str, ...] = environment.FEATURE_LIBRARIES) -> None:
    """Stop with one line when a worker cannot import or run the feature libraries, instead of
    one identical failure per shard."""
    try:
        found = {w: p for w, p in client.run(environment.problem, libraries).items() if p}
    except Exception as exc:  # noqa: BLE001 - e.g. featurestore itself missing on the workers
        raise UserError(f"the Dask workers cannot run featurestore ({type(exc).__name__}: {exc}): "
                        f"{environment.FIX}") from None
    if found:
        worker, problem = sorted(found.items())[0]
        others = f" (and {len(found) - 1} other worker(s))" if len(found) > 1 else ""
        raise UserError(f"Dask worker {worker}{others}: {problem}")


class _DropMessages(logging.Filter):
    """Drops log records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _quiet_worker_logs() -> None:
    """Our own local workers log nothing the build reports itself: a task that failed is in the
    summary (Dask's "Compute Failed" block would repeat it with a traceback), a build that
    stops cancels its tasks in flight (a warning each), and a heartbeat that meets the scheduler
    closing at the end of a build is a traceback about nothing (a scheduler lost mid-build is
    reported by the driver, in one line)."""
    logging.getLogger("distributed.worker").addFilter(
        _DropMessages("Compute Failed", "Failed to communicate with scheduler during heartbeat"))
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextlib.contextmanager
def local_cluster(workers: int, worker_env: Mapping[str, str | None] | None = None) -> Iterator[Any]:
    """A LocalCluster of `workers` single-threaded processes started with `BUILD_WORKER_ENV`
    updated by `worker_env` (None unsets a variable)."""
    from dask.distributed import LocalCluster

    with _spawning(worker_env):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")  # a free port; the dashboard needs bokeh
    # Closing kills workers still busy after a few seconds (a cancelled task finishing a clip); the
    # nanny's warning about it says nothing the user can act on.
    # ... nor does its "Restarting worker" after a death, which the build reports itself.
    quiet_close = _DropMessages("Worker process still alive", "Restarting worker")
    logging.getLogger("distributed.nanny").addFilter(quiet_close)
    try:
        with cluster:
            yield cluster
    finally:
        logging.getLogger("distributed.nanny").removeFilter(quiet_close)


def _announce(client: Any, progress: bool) -> None:
    if progress and "dashboard" in client.scheduler_info().get("services", {}):
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)


@dataclass
class _Run:
    """What `_run` reports: why tasks failed, by shard; clips decoded; each task's timing."""

    failures: dict[int, str] = field(default_factory=dict)
    decoded: int = 0
    workers: int = 0
    submitted: float = 0.0
    collected: float = 0.0
    tasks: list[dict[str, Any]] = field(default_factory=list)


def _run(client: Any, url: str, store_id: str, jobs: list[ShardJob], records: dict[int, dict[str, Any]],
         layout: st.Layout, skipped: int, progress: bool, watch: WatchConfig,
         grow: Callable[[int], None] | None) -> _Run:
    """Submit one task per shard; commit each as its result arrives. One shard's failure leaves the others to finish;
    a task that died with its worker on every try is retried clip by clip (`probe_clip`), so that
    only the clips that kill a worker fail, named. A storage error is raised at once instead
    (StorageError), since every other shard would hit it too; losing the cluster, or a scheduler
    that stops answering, becomes a UserError."""
    from concurrent.futures import CancelledError

    from dask.distributed import wait
    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    def submit(fn: Any, *args: Any, name: str) -> Any:
        return client.submit(fn, *args, pure=False, key=f"{name}-{os.urandom(4).hex()}")

    run = _Run(workers=sum(client.nthreads().values()), submitted=time.time())
    pending = {submit(build_shard, job, name=f"build-{st.shard_name(job.index)}"): job for job in jobs}
    probes: dict[Any, tuple[int, int]] = {}  # future -> (shard, row)
    isolating: dict[int, tuple[ShardJob, dict[int, str], set[int]]] = {}  # shard -> job, crashed rows, rows left
    failures = run.failures
    clips = failed = 0
    t0 = time.perf_counter()
    watcher = Watcher(client, watch, grow=grow)
    with CrashLog() as crashes, tqdm(total=layout.n_shards, initial=skipped, unit="shard", disable=not progress,
                                     file=sys.stderr) as bar:
        try:
            while pending or probes:
                try:
                    done, _ = wait([*pending, *probes], timeout=watch.every, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    watcher.check(len(pending) + len(probes))
                    continue
                unanswered = False
                for future in done:
                    if future in probes:
                        index, row = probes.pop(future)
                        job, crashed, left = isolating[index]
                        if future.status == "error" and isinstance(future.exception(), KilledWorker):
                            crashed[row] = ("the worker decoding this file died on every try (" + (
                                crashes.latest() or "see the worker logs") + "): a file that crashes the decoder, "
                                "or more memory than a worker has")
                        left.discard(row)
                        if not left:  # again, the culprits failed unread (none: the deaths had another cause)
                            del isolating[index]
                            retry = replace(job, crashed=crashed, probed=True)
                            pending[submit(build_shard, retry, name=f"build-{st.shard_name(index)}")] = retry
                        continue
                    if future.status != "error":
                        try:  # a finished task's result stays on its worker until fetched
                            result = future.result(timeout=watch.every)
                        except TimeoutError:  # that worker froze since: fetching would wait for ever
                            unanswered = True
                            continue
                    job = pending.pop(future)
                    if future.status == "error":
                        exc = future.exception()
                        if isinstance(exc, KilledWorker) and not job.probed:
                            rows = _probed_rows(job)
                            print(f"featurestore build: warning: the task of {st.shard_name(job.index)} died with its "
                                  f"worker on every try ({crashes.latest() or 'the worker logs say how'}); trying its "
                                  f"{len(rows)} clip(s) one by one", file=sys.stderr, flush=True)
                            isolating[job.index] = (job, {}, set(rows))
                            for row in rows:
                                probes[submit(probe_clip, job, row, name=f"probe-{st.shard_name(job.index)}-{row}")] = (
                                    job.index, row)
                            continue
                        failures[job.index] = (_crash_text(crashes) if isinstance(exc, KilledWorker)
                                               else f"{type(exc).__name__}: {exc}")
                        bar.update()
                        continue
                    if "storage_error" in result:
                        raise StorageError(result["storage_error"])
                    if "clip_error" in result:
                        failures[job.index] = result["clip_error"]
                        bar.update()
                        continue
                    record = _merge(records.get(job.index), result, job, store_id)
                    st.write_commit(url, record)
                    records[job.index] = record
                    watcher.finished(result["seconds"])
                    run.decoded += result["decoded"]
                    run.tasks.append({k: result[k] for k in ("shard", "worker", "began", "ended", "decoded", "stages")}
                                     | {"clips": result["stop"] - result["start"]})
                    clips += result["stop"] - result["start"]
                    failed += record["parts"][st.CLIPS]["failed"]
                    bar.set_postfix(clips_per_s=f"{clips / (time.perf_counter() - t0):.1f}", failed=failed)
                    bar.update()
                if unanswered:
                    watcher.check(len(pending) + len(probes))
        except SchedulerTimeout:
            raise UserError(f"the Dask scheduler at {client.scheduler.address} has not answered for "
                            f"{watch.scheduler_timeout:g} s (stopped, overloaded or unreachable); the build stopped and "
                            f"its {len(records)} committed shard(s) stay intact: check the cluster, then re-run the "
                            "same command to resume (--scheduler-timeout sets the wait)") from None
        except (CancelledError, CommClosedError):
            raise UserError(f"lost the Dask cluster ({client.scheduler.address}) during the build; its "
                            f"{len(records)} committed shard(s) stay intact: re-run the same command to resume") from None
        except BaseException:
            client.cancel([*pending, *probes])
            raise
    run.collected = time.time()
    return run


def _crash_text(crashes: CrashLog) -> str:
    return ("the task died with the worker running it on every try: "
            + (crashes.latest() or "the worker logs say why (a crash, or more memory than a worker has)"))


def _merge(old: dict[str, Any] | None, result: dict[str, Any], job: ShardJob, store_id: str) -> dict[str, Any]:
    """The shard's new commit record: the task's parts over the old record's still-valid ones
    (a grown shard keeps the failure reasons of its stored rows)."""
    start, stop = result["start"], result["stop"]
    parts = dict(result["parts"])
    if old is not None and not job.clips:
        parts = {**old["parts"], **parts}
    elif old is not None and job.keep:
        kept = {k: v for k, v in old["parts"][st.CLIPS].get("errors", {}).items() if int(k) < job.keep}
        parts[st.CLIPS] = {**parts[st.CLIPS], "errors": {**kept, **parts[st.CLIPS]["errors"]}}
    clips = parts[st.CLIPS]
    return {"shard": job.index, "store_id": store_id, "start": start, "stop": stop,
            "rows_hash": st.rows_hash(job.clip_ids, job.paths), "parts": parts, "hash": st.record_hash(parts),
            "ok": clips["ok"], "failed": clips["failed"], "seconds": result["seconds"]}




def _finish(url: str, group: Any, plan: Plan, manifest: Any, manifest_path: str,
            records: dict[int, dict[str, Any]]) -> tuple[int, int, int, list[str]]:
    """The manifest copy with the errors known so far; statistics and `complete` once every shard
    is committed for every part. Partial sums of a shard whose train rows changed since they
    were computed (new labels or splits) are computed again from the stored features."""
    spec, layout, table = plan.spec, plan.layout, manifest.table
    hashes = st.part_hashes(spec)
    expected = _expected(url, st.read_attrs(group), spec)
    rows = st.shard_rows_hashes(table, layout)
    train = (table["split"] == "train").to_numpy()
    errors: list[str | None] = [None] * layout.n_clips
    ok = failed = 0
    complete = True
    for i in range(layout.n_shards):
        start, stop = layout.shard_range(i)
        valid = st.valid_parts(records.get(i), start, stop, rows[i], expected)
        complete &= valid >= set(hashes)
        if st.CLIPS in valid:
            clips = records[i]["parts"][st.CLIPS]
            ok, failed = ok + clips["ok"], failed + clips["failed"]
            for offset, reason in clips.get("errors", {}).items():
                errors[start + int(offset)] = reason
    pending = layout.n_clips - ok - failed
    reasons = [f"{table['clip_id'].iat[i]} ({table['path'].iat[i]}): {e}" for i, e in enumerate(errors) if e]
    _write_manifest(group, manifest, manifest_path, errors)
    if not complete:
        return ok, failed, pending, reasons
    axes = st.normalised(spec)
    for i in range(layout.n_shards):
        start, stop = layout.shard_range(i)
        record, split = records[i], st.split_hash(train[start:stop])
        stale = [f for f in axes if record["parts"][f].get("split_hash") != split]
        if stale:
            stored = st.read_shard(group, layout, i, [*stale, "status"])
            sums = stats.partial_sums(stored, (stored["status"] == st.OK) & train[start:stop], {f: axes[f] for f in stale})
            for f in stale:
                record["parts"][f] |= {"stats": sums[f], "split_hash": split}
            st.write_commit(url, record)
    combined = stats.combine({f: records[i]["parts"][f]["stats"] for f in axes} for i in range(layout.n_shards))
    st.write_stats(group, spec, {f: (mean, std) for f, (mean, std, _) in combined.items()})
    attrs = st.read_attrs(group)
    attrs.update(build_state="complete", stats_values={f: n for f, (_, _, n) in combined.items()})
    st.write_attrs(group, attrs)
    st.consolidate(url)
    return ok, failed, pending, reasons


def _write_manifest(group: Any, manifest: Any, source: str, errors: list[str | None]) -> None:
    """The manifest rows in store order plus `error`, keeping the source file's metadata."""
    st.write_manifest_copy(group, st.manifest_arrow(manifest, errors, _source_metadata(source)))


def _source_metadata(path: str) -> dict[bytes, bytes]:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as f:
        metadata = pq.read_schema(f).metadata or {}
    return {k: v for k, v in metadata.items() if k != b"pandas"}
