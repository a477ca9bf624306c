"""One shard on a worker: decode its clips, compute their arrays, write the shard of every array
whole, and return what the commit record needs.

The task reads back nothing from storage: the content hashes and the statistics' partial sums
are taken from the values as readers will get them (a quantized array's rounded values), in
memory. A recomputed shard (after a kill, or a worker Dask lost) is written again with the same
bytes, so the store does not depend on the worker count, the scheduler or interruptions. Clip
faults become the clip's failure reason; a store that cannot be written is returned as a
refusal for the driver to stop on, never raised from inside Dask.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featurestore import codecs, stages
from featurestore.errors import AudioError, NotReadable
from featurestore.locations import final_name, size
from featurestore.maths.statistics import partial_sums
from featurestore.spec import FeatureSpec
from featurestore.store.commits import ArrayPart, ClipBytes, ClipsPart, Sums, content_hash, split_hash
from featurestore.store.layout import CLIP_ARRAYS, CLIPS, FAILED, OK, clip_arrays, normalised, shard_object
from featurestore.store.reader import read_rows
from featurestore.store.writer import write_shards
from featurestore.builder.plan import ShardJob


@dataclass(frozen=True)
class ShardWritten:
    """A shard written whole: its parts for the commit record, and where the task's time went."""

    shard: int
    clips: ClipsPart | None
    arrays: dict[str, ArrayPart]
    decoded: int  # clips decoded
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage
    began: float = 0.0  # wall clock (time.time())
    ended: float = 0.0
    worker: int = 0  # pid


@dataclass(frozen=True)
class ShardRefused:
    """Nothing committable was written. `storage`: the store cannot be written (every shard would
    fail alike: stop the build); else a stored row conflicts with what its clip gives now."""

    shard: int
    reason: str
    storage: bool


@dataclass(frozen=True)
class ShardUnread:
    """Files of the shard that this worker could not read (`NotReadable`: row -> reason); nothing
    was written. The driver checks whether it reads them itself: if not, they are the files'
    failures; if so, this worker cannot see them, and the shard goes to another."""

    shard: int
    rows: dict[int, str]
    worker: str  # the Dask worker's address


ShardResult = ShardWritten | ShardRefused | ShardUnread
_EXTRACTORS: dict[Any, Any] = {}  # one FeatureExtractor per spec and arrays per worker process


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # run outside a Dask worker
        return f"pid {os.getpid()}"


def describe_os_error(exc: OSError) -> str:
    """"Permission denied: PATH", naming the file a temporary stood for."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {final_name(os.fspath(exc.filename))}"
    return f"{type(exc).__name__}: {exc}"


def extractor(spec: FeatureSpec, names: tuple[str, ...]) -> Any:
    """This process's extractor of arrays `names` (its first clip compiles librosa, one process at a time)."""
    key = (spec.hash(), names)
    if key not in _EXTRACTORS:
        from featurestore.features.extract import FeatureExtractor

        _single_threaded()
        _EXTRACTORS[key] = FeatureExtractor(spec, names)
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


def build_shard(job: ShardJob) -> ShardResult:
    """Compute and write one whole shard."""
    began = time.time()
    with stages.recording() as watch:
        result = _build_shard(job)
    if isinstance(result, ShardWritten):
        result = replace(result, stages=watch.seconds, began=began, ended=time.time(), worker=os.getpid())
    return result


def _build_shard(job: ShardJob) -> ShardResult:
    from featurestore.audio.decoder import decode, resolve

    t0 = time.perf_counter()
    spec, start, stop = job.spec, job.start, job.stop
    codec = codecs.parse(spec.codec)
    arrays = clip_arrays(spec)
    names = [*job.write, *(CLIP_ARRAYS if job.clips else ())]
    enc = {name: codec.for_array(spec.feature(name) if name in spec.arrays else arrays[name]) for name in names}
    data = {name: np.zeros((stop - start, *arrays[name].clip_shape), dtype=enc[name].dtype) for name in names}
    try:  # rows already stored: their status decides what to decode; kept arrays are carried over
        known = read_rows(job.url, [*CLIP_ARRAYS, *job.kept], start, start + job.keep) if job.keep else {}
    except OSError as exc:
        return ShardRefused(job.index, describe_os_error(exc), storage=True)
    for name in job.kept:
        data[name][: job.keep] = known[name]
    stages.lap("open store")
    if not job.clips:
        status = known["status"]
    else:
        status = data["status"]
        if job.keep:
            status[: job.keep], data["length"][: job.keep] = known["status"], known["length"]
    compute = extractor(spec, job.write) if job.write else None
    stages.lap("worker set-up")
    errors: dict[str, str] = {}
    unreadable: dict[int, str] = {}
    decoded = 0
    for i, path in enumerate(job.paths):
        old = i < job.keep or not job.clips
        todo = [n for n in job.write if not (n in job.kept and i < job.keep)]
        if old and (status[i] != OK or not todo):
            continue
        try:
            if i in job.unread:
                raise AudioError(job.unread[i])
            decoded += 1
            clip = decode(resolve(job.audio_root, path), spec.decoding)  # refuses paths leaving the root
            features = compute(clip.samples) if compute is not None else {}
            _check(features, enc)
            stages.lap("checks")
        except NotReadable as exc:  # perhaps this machine's fault, not the file's: the driver decides
            unreadable[i] = exc.reason
            continue
        except AudioError as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the build; its reason is kept
            why = f"feature extraction failed: {type(exc).__name__}: {exc}"
        else:
            for name in todo:
                _store_row(data[name][i], features[name])
            if not old:
                data["status"][i], data["length"][i] = OK, clip.length
            stages.lap("copy into the shard")
            continue
        if old:  # stored as ok by an earlier build, now failing: the other arrays would disagree with it
            return ShardRefused(job.index, f"clip {start + i} ({path}) was built as ok and now fails: {why}; "
                                           "rebuild the store with --overwrite", storage=False)
        errors[str(i)] = why
        data["status"][i] = FAILED
    if unreadable:  # nothing written: the shard is built again once the driver has looked at these files
        return ShardUnread(job.index, unreadable, _worker_address())

    # What readers will get back (a quantized array's rounded values) is what the hash and the
    # statistics describe; `featurestore verify` re-hashes every shard from what is on disk.
    encoded = {name: enc[name].encode(values) for name, values in data.items()}
    stages.lap("encode")
    stored = {name: codecs.decode(values, enc[name].attributes()) for name, values in encoded.items()}
    stages.lap("stored values")
    try:
        write_shards(job.url, start, stop, encoded)
        stages.lap("compress and write")
        written = {n: size(shard_object(job.url, n, job.index, 1 + len(arrays[n].clip_shape))) for n in encoded}
    except OSError as exc:  # returned, not raised: the driver stops the build with one clear line
        return ShardRefused(job.index, describe_os_error(exc), storage=True)
    stages.lap("object sizes")
    hashes = {name: content_hash({name: stored[name]}) for name in job.write}
    if job.clips:
        hashes[CLIPS] = content_hash({a: stored[a] for a in CLIP_ARRAYS})
    stages.lap("content hash")
    train = np.asarray(job.train, dtype=bool)
    axes = {n: a for n, a in normalised(spec).items() if n in job.write}
    sums = partial_sums(stored, (status == OK) & train, axes)
    stages.lap("statistics")
    clips = None
    if job.clips:
        clips = ClipsPart(job.hashes[CLIPS], hashes[CLIPS], int(np.count_nonzero(status == OK)),
                          int(np.count_nonzero(status == FAILED)), ClipBytes(written["status"], written["length"]),
                          errors)
    parts = {name: ArrayPart(job.hashes[name], hashes[name], written[name],
                             _sums(sums[name]) if name in sums else None,
                             split_hash(train) if name in sums else None) for name in job.write}
    return ShardWritten(job.index, clips, parts, decoded, round(time.perf_counter() - t0, 3))


def _sums(partial: dict[str, Any]) -> Sums:
    return Sums(tuple(partial["sum"]), tuple(partial["sumsq"]), partial["count"])


def probe_clip(job: ShardJob, row: int) -> None:
    """Decode and extract one clip of a shard, storing nothing. After a shard's task died with
    its worker on every try, one probe per clip finds the clip(s) that kill a worker, so that only
    they fail (an ordinary failure is left to the shard's task, which records it)."""
    from featurestore.audio.decoder import decode, resolve

    with contextlib.suppress(Exception):
        clip = decode(resolve(job.audio_root, job.paths[row]), job.spec.decoding)
        if job.write:
            extractor(job.spec, job.write)(clip.samples)


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
