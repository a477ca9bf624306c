"""The Dask build: one task per shard, commit records by the driver, resume by skipping them.

A task decodes and extracts every clip of its shard, writes the shard of every array whole,
reads it back and returns only a small record: the content hash of what is stored, ok/failed
counts, failure reasons and float64 partial sums for the statistics. The driver alone writes
the commit records, then combines the sums and marks the store complete. A recomputed shard
(after a kill, or a worker Dask lost) is written again with the same bytes, so the result does
not depend on the worker count, the scheduler or interruptions.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from featurestore import codecs, environment, stats
from featurestore import store as st
from featurestore.errors import UserError
from featurestore.files import final_name
from featurestore.spec import FeatureSpec

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

    def summary(self) -> str:
        lines = [
            f"{self.url}: ok {self.ok}, failed {self.failed}, pending {self.pending} of "
            f"{self.ok + self.failed + self.pending} clips; {self.shards} shards ({self.shards_built} built now, "
            f"{self.shards_skipped} already committed) in {self.elapsed:.1f} s"
        ]
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
    """Everything a task needs; small, so that it travels cheaply to a worker."""

    url: str
    audio_root: str
    spec: FeatureSpec
    layout: st.Layout
    index: int
    paths: tuple[str, ...]
    train: tuple[bool, ...]
    manifest_hash: str


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
) -> BuildReport:
    """Build (or resume building) the store at `out` from a manifest and its audio.

    `scheduler` is the address of a running Dask scheduler; without it a LocalCluster of
    `workers` processes (default: one per core) runs the build. `worker_env` overrides the
    environment those processes start with (`BUILD_WORKER_ENV`; None unsets a variable).
    """
    import manifests

    started = time.perf_counter()
    if workers is not None and scheduler is not None:
        raise UserError("give either --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    codecs.parse(spec.codec)
    manifest = manifests.load(manifest_path)
    if len(manifest.table) == 0:
        raise UserError(f"{manifest_path}: the manifest has no rows: nothing to build")
    libraries = environment.FEATURE_LIBRARIES + (
        environment.HANDCRAFTED_LIBRARIES if "handcrafted" in spec.features else ())
    environment.require(libraries)
    url, audio_root = _location(out), _location(audio_root)
    check_audio_root(audio_root, manifest.table["path"].tolist())
    manifest_hash = manifest.content_hash()
    records: dict[int, dict[str, Any]] = {}
    failures: dict[int, str] = {}
    try:
        old, layout = _plan(url, spec, manifest_hash, os.fspath(manifest_path), len(manifest.table), shard_clips,
                            overwrite)
        if old is not None:
            records.update((i, r) for i, r in st.read_commits(url).items()
                           if _valid(r, layout, spec.hash(), manifest_hash))
        todo = [i for i in range(layout.n_shards) if i not in records]
        skipped = layout.n_shards - len(todo)
        cluster = dask_client(workers, scheduler, worker_env, progress) if todo else contextlib.nullcontext()
        with cluster as client:
            if client is not None:
                check_workers(client, libraries)  # before the store is touched
            group = _open(url, old, spec, manifest, manifest_hash, os.fspath(manifest_path), layout)
            if todo:
                table = manifest.table
                jobs = []
                for i in todo:
                    start, stop = layout.shard_range(i)
                    rows = table.iloc[start:stop]
                    jobs.append(ShardJob(url, audio_root, spec, layout, i, tuple(rows["path"]),
                                         tuple(rows["split"] == "train"), manifest_hash))
                failures = _run(client, url, jobs, records, layout, skipped, progress)
        ok, failed, pending, reasons = _finish(url, group, spec, manifest, os.fspath(manifest_path), records, layout)
    except (OSError, StorageError) as exc:
        why = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise UserError(f"cannot write the store {url} ({why}); the build stopped and its {len(records)} committed "
                        "shard(s) stay intact: make the location writable and re-run the same command to resume"
                        ) from None
    shard_failures = tuple(f"{st.shard_name(i)} (clips {layout.shard_range(i)[0]}-{layout.shard_range(i)[1] - 1}): "
                           f"{why}" for i, why in sorted(failures.items()))
    return BuildReport(url, ok, failed, pending, tuple(reasons[:5]), time.perf_counter() - started,
                       layout.n_shards, len(todo) - len(failures), skipped, shard_failures)


# --- the task (runs on a worker) -----------------------------------------------------------------

_EXTRACTORS: dict[str, Any] = {}  # one FeatureExtractor per spec per worker process


def _extractor(spec: FeatureSpec) -> Any:
    key = spec.hash()
    if key not in _EXTRACTORS:
        from featurestore.extract import FeatureExtractor

        _single_threaded()
        _EXTRACTORS[key] = FeatureExtractor(spec)
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
    """Compute, write and read back one whole shard; return its commit record."""
    import zarr

    from featurestore.audio import AudioError, decode, resolve

    t0 = time.perf_counter()
    spec, (start, stop) = job.spec, job.layout.shard_range(job.index)
    codec = codecs.parse(spec.codec)
    arrays = st.clip_arrays(spec)
    enc = {name: codec.for_array(name, a.dtype) for name, a in arrays.items()}
    data = {name: np.zeros((stop - start, *a.clip_shape), dtype=enc[name].dtype) for name, a in arrays.items()}
    extractor = _extractor(spec)
    errors: dict[str, str] = {}
    for i, path in enumerate(job.paths):
        try:
            decoded = decode(resolve(job.audio_root, path), spec)  # refuses paths leaving the root
            features = extractor(decoded.samples)
            _check(features, enc)
        except AudioError as exc:
            errors[str(i)] = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the build; its reason is kept
            errors[str(i)] = f"feature extraction failed: {type(exc).__name__}: {exc}"
        else:
            for name in spec.features:
                data[name][i] = features[name]
            data["status"][i] = st.OK
            data["length"][i] = decoded.length
            continue
        data["status"][i] = st.FAILED

    try:
        group = zarr.open_group(st.zarr_store(job.url, read_only=False), mode="r+")
        for name, values in data.items():
            st.node(group, name)[start:stop] = values
        # A lossless codec stores exactly these values; a quantized array is read back, since its
        # stored values (which the hash and the statistics describe) are the rounded ones.
        # `featurestore verify` re-hashes every shard from what is on disk.
        stored = {**data, **st.read_shard(group, job.layout, job.index, [n for n in data if n in codec.steps])}
    except OSError as exc:  # returned, not raised: the driver stops the build with one clear line
        return {"shard": job.index, "storage_error": describe_os_error(exc)}
    include = (stored["status"] == st.OK) & np.asarray(job.train, dtype=bool)
    return {
        "shard": job.index,
        "start": start,
        "stop": stop,
        "spec_hash": spec.hash(),
        "manifest_hash": job.manifest_hash,
        "hash": st.content_hash(stored),
        "ok": int(np.count_nonzero(stored["status"] == st.OK)),
        "failed": int(np.count_nonzero(stored["status"] == st.FAILED)),
        "errors": errors,
        "stats": stats.partial_sums(stored, include, st.normalised(spec)),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _check(features: dict[str, np.ndarray], enc: dict[str, codecs.ArrayCodec]) -> None:
    """Never store a non-finite value, nor one the array's encoding cannot hold."""
    for name, values in features.items():
        if not np.isfinite(values).all():
            raise ValueError(f"non-finite {name} values")
        if np.abs(values).max(initial=0.0) > enc[name].max_abs:
            raise ValueError(f"{name} values beyond +-{enc[name].max_abs:g}, the range of codec {enc[name].step} steps")


# --- the driver ----------------------------------------------------------------------------------


def _location(path_or_url: str | os.PathLike[str]) -> str:
    """URLs as given; local paths absolute, since workers may run in another directory."""
    s = os.fspath(path_or_url)
    return s if "://" in s else os.path.abspath(s)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def _existing_attrs(url: str) -> dict[str, Any] | None:
    with contextlib.suppress(UserError):
        return st.open_store(url).attrs
    return None


def _plan(url: str, spec: FeatureSpec, manifest_hash: str, manifest_path: str, n_clips: int,
          shard_clips: int | None, overwrite: bool) -> tuple[dict[str, Any] | None, st.Layout]:
    """Read-only: the attributes of the store to resume (None: create one) and its layout;
    refuse to mix specs, manifests or layouts."""
    old = None if overwrite else _existing_attrs(url)
    if old is not None:
        if old.get("format_version") != st.FORMAT_VERSION:
            raise UserError(f"{url} has store format {old.get('format_version')}, this version writes "
                            f"{st.FORMAT_VERSION}: pass --overwrite to rebuild it, or choose another --out")
        if old.get("spec_hash") != spec.hash():
            raise UserError(f"{url} was built with another feature spec (hash {old.get('spec_hash')}, this one "
                            f"{spec.hash()}): pass --overwrite to rebuild it, or choose another --out")
        if old.get("manifest_hash") != manifest_hash:
            raise UserError(f"{url} was built from another manifest than {manifest_path}: pass --overwrite to "
                            "rebuild it, or choose another --out")
        if shard_clips is not None and shard_clips != old["shard_clips"]:
            raise UserError(f"{url} was started with --shard-size {old['shard_clips']}: resume with that size, "
                            "or pass --overwrite to rebuild it")
        return old, st.Layout(int(old["n_clips"]), int(old["chunk_clips"]), int(old["shard_clips"]))
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
    return None, st.Layout(n_clips, st.CHUNK_CLIPS, shard_clips or st.default_shard_clips(n_clips, spec))


def _open(url: str, old: dict[str, Any] | None, spec: FeatureSpec, manifest: Any, manifest_hash: str,
          manifest_path: str, layout: st.Layout) -> Any:
    """The store's group, opened to resume (`old` is its attributes) or created afresh."""
    import zarr

    if old is not None:
        st.remove_temporaries(url)
        group = zarr.open_group(st.zarr_store(url, read_only=False), mode="r+")
        st.create_missing_nodes(group, spec, layout)
        return group
    st.remove_tree(url)
    arrays = st.clip_arrays(spec)
    attrs = {
        "format_version": st.FORMAT_VERSION,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "manifest_hash": manifest_hash,
        "dataset": manifest.meta.dataset,
        "labels": list(manifest.meta.labels),
        "n_clips": layout.n_clips,
        "chunk_clips": layout.chunk_clips,
        "shard_clips": layout.shard_clips,
        "build_state": "building",
        "versions": _versions(),
        "codec": codecs.parse(spec.codec).describe({a.name: a.dtype for a in arrays.values()}),
        "arrays": {name: {"settings": spec.array_settings(name), "added": _now()} for name in spec.features},
        "coordinates": {name: c for name in spec.features if (c := spec.feature(name).coordinates())},
    }
    group = st.create(url, attrs, spec, layout)
    _write_manifest(url, manifest, manifest_path, [""] * layout.n_clips)
    return group


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


def _valid(record: dict[str, Any], layout: st.Layout, spec_hash: str, manifest_hash: str) -> bool:
    start, stop = layout.shard_range(int(record["shard"]))
    return (
        record.get("spec_hash") == spec_hash
        and record.get("manifest_hash") == manifest_hash
        and (record.get("start"), record.get("stop")) == (start, stop)
        and isinstance(record.get("hash"), str)
        and record.get("ok", 0) + record.get("failed", 0) == stop - start
    )


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
    summary (Dask's "Compute Failed" block would repeat it with a traceback), and a build that
    stops cancels its tasks in flight (a warning each)."""
    logging.getLogger("distributed.worker").addFilter(_DropMessages("Compute Failed"))
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextlib.contextmanager
def local_cluster(workers: int, worker_env: Mapping[str, str | None] | None = None) -> Iterator[Any]:
    """A LocalCluster of `workers` single-threaded processes started with `BUILD_WORKER_ENV`
    updated by `worker_env` (None unsets a variable)."""
    import dask
    from dask.distributed import LocalCluster

    env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **BUILD_WORKER_ENV, **(worker_env or {})}
    # Dask's Nanny copies the pre-spawn environment into this process's os.environ, never restores
    # it, and prefers os.environ over its config: left alone, every later cluster in this process
    # would inherit the first one's settings. Clear those variables while the workers spawn (so
    # they neither inherit nor override), and restore os.environ afterwards.
    saved = dict(os.environ)
    try:
        for name in env:
            os.environ.pop(name, None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=":0")  # a free port; the dashboard needs bokeh
    finally:
        os.environ.clear()
        os.environ.update(saved)
    # Closing kills workers still busy after a few seconds (a cancelled task finishing a clip); the
    # nanny's warning about it says nothing the user can act on.
    quiet_close = _DropMessages("Worker process still alive")
    logging.getLogger("distributed.nanny").addFilter(quiet_close)
    try:
        with cluster:
            yield cluster
    finally:
        logging.getLogger("distributed.nanny").removeFilter(quiet_close)


def _announce(client: Any, progress: bool) -> None:
    if progress and "dashboard" in client.scheduler_info().get("services", {}):
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)


def _run(client: Any, url: str, jobs: list[ShardJob], records: dict[int, dict[str, Any]], layout: st.Layout,
         skipped: int, progress: bool) -> dict[int, str]:
    """Submit one task per shard; commit each as its result arrives. Return why tasks failed, by
    shard: one shard's failure (a worker that died on every try) leaves the others to finish. A
    storage error is raised at once instead (StorageError), since every other shard would hit it too;
    losing the cluster becomes a UserError."""
    from concurrent.futures import CancelledError

    from dask.distributed import as_completed
    from distributed.comm import CommClosedError
    from tqdm import tqdm

    futures = {client.submit(build_shard, job, pure=False, key=f"build-{st.shard_name(job.index)}-{os.urandom(4).hex()}"):
               job.index for job in jobs}
    failures: dict[int, str] = {}
    clips = failed = 0
    t0 = time.perf_counter()
    with tqdm(total=layout.n_shards, initial=skipped, unit="shard", disable=not progress, file=sys.stderr) as bar:
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    failures[futures[future]] = _task_failure(future.exception())
                    bar.update()
                    continue
                record = future.result()
                if "storage_error" in record:
                    raise StorageError(record["storage_error"])
                st.write_commit(url, record)
                records[record["shard"]] = record
                clips += record["ok"] + record["failed"]
                failed += record["failed"]
                bar.set_postfix(clips_per_s=f"{clips / (time.perf_counter() - t0):.1f}", failed=failed)
                bar.update()
        except (CancelledError, CommClosedError):
            raise UserError(f"lost the Dask cluster ({client.scheduler.address}) during the build; its "
                            f"{len(records)} committed shard(s) stay intact: re-run the same command to resume") from None
        except BaseException:
            client.cancel(list(futures))
            raise
    return failures


def _task_failure(exc: BaseException) -> str:
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        return ("the task died with the worker running it on every try (a file that crashes the decoder, "
                "or too little memory per worker): see the worker logs")
    return f"{type(exc).__name__}: {exc}"


def _finish(url: str, group: Any, spec: FeatureSpec, manifest: Any, manifest_path: str,
            records: dict[int, dict[str, Any]], layout: st.Layout) -> tuple[int, int, int, list[str]]:
    """The manifest copy with the errors known so far; statistics and `complete` once every shard
    is committed."""
    table = manifest.table
    errors = [""] * layout.n_clips
    for r in records.values():
        for offset, reason in r["errors"].items():
            errors[r["start"] + int(offset)] = reason
    ok = sum(r["ok"] for r in records.values())
    failed = sum(r["failed"] for r in records.values())
    pending = layout.n_clips - ok - failed
    reasons = [f"{table['clip_id'].iat[i]} ({table['path'].iat[i]}): {e}" for i, e in enumerate(errors) if e]
    _write_manifest(url, manifest, manifest_path, errors)
    if pending == 0:
        combined = stats.combine(records[i]["stats"] for i in range(layout.n_shards))
        st.write_stats(group, spec, {f: (mean, std) for f, (mean, std, _) in combined.items()})
        attrs = dict(group.attrs[st.ATTRS_KEY])
        attrs.update(build_state="complete", stats_values={f: n for f, (_, _, n) in combined.items()})
        group.update_attributes({st.ATTRS_KEY: attrs})
    return ok, failed, pending, reasons


def _write_manifest(url: str, manifest: Any, source: str, errors: list[str]) -> None:
    """The manifest rows in store order plus `error`, keeping the source file's metadata."""
    import pyarrow as pa

    table = pa.Table.from_pandas(manifest.table.assign(error=errors), preserve_index=False)
    labels = table.schema.get_field_index("labels")  # list<null> if every list were empty
    table = table.set_column(labels, "labels", table.column(labels).cast(pa.list_(pa.string())))
    table = table.replace_schema_metadata({**_source_metadata(source), **(table.schema.metadata or {})})
    st.write_parquet(st.join(url, st.MANIFEST_FILE), table)


def _source_metadata(path: str) -> dict[bytes, bytes]:
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as f:
        metadata = pq.read_schema(f).metadata or {}
    return {k: v for k, v in metadata.items() if k != b"pandas"}
