"""The store's layout, and the read-only view trainers and tools use.

A store is one Zarr v3 group. Every per-clip array has the clip as its first axis (manifest
order), chunks of `chunk_clips` clips for random access and shards of `shard_clips` clips as
the unit of writing: a build task writes whole shards only, because the sharding codec loses
data when two writers share a shard. Beside the arrays sit `manifest/manifest.parquet` (the
manifest rows in store order plus `error`) and `commits/shard-NNNNN.json`, one small record per finished
shard written atomically by the build driver alone, so a killed or concurrent build can never
leave a half-updated shared record behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import posixpath
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable

import numpy as np

from featurestore.errors import UserError
from featurestore.files import TEMPORARY_GLOB, ZARR_TEMPORARY_GLOB, atomic_path
from featurestore.spec import FeatureSpec

FORMAT_VERSION = 1
ATTRS_KEY = "featurestore"
PENDING, OK, FAILED = 0, 1, 2
MANIFEST_DIR = "manifest"
MANIFEST_FILE = f"{MANIFEST_DIR}/manifest.parquet"
COMMITS_DIR = "commits"
CHUNK_CLIPS = 8
MAX_SHARD_CLIPS = 512
MAX_SHARD_BYTES = 64 * 2**20  # of the largest array, before compression


@dataclass(frozen=True)
class ClipArray:
    """One per-clip array: its dimension names, the shape of one clip's rows, natural dtype."""

    name: str
    dims: tuple[str, ...]
    clip_shape: tuple[int, ...]
    dtype: str

    @property
    def clip_bytes(self) -> int:
        return math.prod(self.clip_shape) * np.dtype(self.dtype).itemsize


def clip_arrays(spec: FeatureSpec) -> dict[str, ClipArray]:
    """The per-clip arrays a spec implies: its features (as each feature kind declares), then
    `status` and `length`."""
    arrays = {}
    for name in spec.features:
        feature = spec.feature(name)
        arrays[name] = ClipArray(name, ("clip", *feature.dims), feature.clip_shape(), feature.dtype)
    arrays["status"] = ClipArray("status", ("clip",), (), "uint8")
    arrays["length"] = ClipArray("length", ("clip",), (), "int64")
    return arrays


def normalised(spec: FeatureSpec) -> dict[str, int]:
    """The features the store keeps normalisation statistics for, each with the axis of its
    (clip, ...) array that the statistics keep."""
    return {name: f.stats_axis for name in spec.features if (f := spec.feature(name)).normalised}


@dataclass(frozen=True)
class Layout:
    """How the clip axis is cut: chunks inside shards; the last shard may be partial."""

    n_clips: int
    chunk_clips: int
    shard_clips: int

    @property
    def n_shards(self) -> int:
        return math.ceil(self.n_clips / self.shard_clips)

    def shard_range(self, index: int) -> tuple[int, int]:
        start = index * self.shard_clips
        return start, min(start + self.shard_clips, self.n_clips)


def default_shard_clips(n_clips: int, spec: FeatureSpec, chunk_clips: int = CHUNK_CLIPS) -> int:
    """About 16 shards (so even small builds keep two workers busy), at most 512 clips or 64 MB.

    Depends on the manifest size and the spec only, never on the worker count, so any number of
    workers writes the same shards.
    """
    largest = max(a.clip_bytes for a in clip_arrays(spec).values())
    cap = max(chunk_clips, min(MAX_SHARD_CLIPS, MAX_SHARD_BYTES // largest) // chunk_clips * chunk_clips)
    wanted = math.ceil(math.ceil(n_clips / 16) / chunk_clips) * chunk_clips
    return min(cap, max(chunk_clips, wanted))


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


# --- locations: a local path or an fsspec URL -------------------------------------------------


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def zarr_store(url: str, *, read_only: bool) -> Any:
    """LocalStore for paths (atomic file writes), FsspecStore for anything else (s3://, memory://)."""
    from zarr.storage import FsspecStore, LocalStore

    fs, path = _fs(url)
    if _is_local(fs):
        return LocalStore(path, read_only=read_only)
    return FsspecStore.from_url(url, read_only=read_only)


def write_bytes(url: str, data: bytes) -> None:
    """Atomic on local disks (temp file + rename) and object stores (one PUT)."""
    fs, path = _fs(url)
    if not _is_local(fs):
        fs.pipe_file(path, data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_bytes(url: str) -> bytes | None:
    fs, path = _fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def list_names(url: str) -> list[str]:
    """Names directly under a folder (empty when it does not exist)."""
    fs, path = _fs(url)
    try:
        # refresh: object-store listings are cached per process, and another process may have written
        return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:
        return []


def is_store(url: str) -> bool:
    """Whether `url` holds a feature store's root group (whole or half-built): what --overwrite may replace."""
    try:
        meta = json.loads(read_bytes(join(url, "zarr.json")) or b"")
    except ValueError:
        return False
    return isinstance(meta, dict) and ATTRS_KEY in (meta.get("attributes") or {})


def remove_tree(url: str) -> None:
    fs, path = _fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def remove_temporaries(url: str) -> None:
    """Delete what killed writers left behind on a local disk: zarr's `KEY.HEX.partial` files
    and this package's hidden temporaries (object stores write whole objects, and leave none)."""
    from pathlib import Path

    fs, path = _fs(url)
    if _is_local(fs):
        for pattern in (ZARR_TEMPORARY_GLOB, TEMPORARY_GLOB):
            for leftover in Path(path).rglob(pattern):
                leftover.unlink(missing_ok=True)


def write_parquet(url: str, table: Any) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes(url, buf.getvalue())


# --- commit records ----------------------------------------------------------------------------


def commit_url(url: str, index: int) -> str:
    return join(url, COMMITS_DIR, f"{shard_name(index)}.json")


def write_commit(url: str, record: dict[str, Any]) -> None:
    write_bytes(commit_url(url, record["shard"]), json.dumps(record, sort_keys=True).encode())


def read_commits(url: str) -> dict[int, dict[str, Any]]:
    """Every readable commit record by shard index (an unreadable one counts as absent)."""
    records = {}
    for name in list_names(join(url, COMMITS_DIR)):
        if not (name.startswith("shard-") and name.endswith(".json")):
            continue
        data = read_bytes(join(url, COMMITS_DIR, name))
        try:
            record = json.loads(data or b"")
            records[int(record["shard"])] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


# --- shards --------------------------------------------------------------------------------------


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a shard's decoded values (name, dtype, shape and bytes of each array)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def read_shard(group: Any, layout: Layout, index: int, names: Iterable[str]) -> dict[str, np.ndarray]:
    start, stop = layout.shard_range(index)
    return {name: node(group, name)[start:stop] for name in names}


# --- creating a store ---------------------------------------------------------------------------


def create(url: str, attrs: dict[str, Any], spec: FeatureSpec, layout: Layout) -> Any:
    """A fresh group holding `attrs` (written first), then its arrays."""
    import zarr

    group = zarr.create_group(zarr_store(url, read_only=False), attributes={ATTRS_KEY: attrs}, overwrite=True)
    create_missing_nodes(group, spec, layout)
    return group


def create_missing_nodes(group: Any, spec: FeatureSpec, layout: Layout) -> None:
    """Create the nodes a killed build had not created yet (all of them when fresh)."""
    from featurestore import codecs

    # Memberless groups around the non-Zarr files, so that zarr and xarray list the store
    # without warning about objects that are not part of the hierarchy.
    for folder, what in ((COMMITS_DIR, "one JSON commit record per finished shard"),
                         (MANIFEST_DIR, "manifest.parquet: the manifest rows in store order, with an error column")):
        if node(group, folder) is None:
            group.create_group(folder, attributes={ATTRS_KEY: what})

    codec = codecs.parse(spec.codec)
    for a in clip_arrays(spec).values():
        if node(group, a.name) is not None:
            continue
        enc = codec.for_array(a.name, a.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numcodecs filters are outside the v3 core spec
            group.create_array(
                a.name,
                shape=(layout.n_clips, *a.clip_shape),
                dtype=enc.dtype,
                chunks=(layout.chunk_clips, *a.clip_shape),
                shards=(layout.shard_clips, *a.clip_shape),
                filters=enc.filters,
                compressors=enc.compressors,
                fill_value=0,
                dimension_names=a.dims,
            )


def node(group: Any, name: str) -> Any:
    """`group[name]`, or None. Mutes zarr's warning that the quantized codec's numcodecs
    filter is outside the v3 core spec (zarr-python reads it all the same)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return group[name]
        except KeyError:
            return None


def write_stats(group: Any, spec: FeatureSpec, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for feature, (mean, std) in stats.items():
        for kind, values in (("mean", mean), ("std", std)):
            arr = group.create_array(
                f"{feature}_{kind}", shape=values.shape, dtype="float32", fill_value=0,
                dimension_names=(spec.feature(feature).stats_dim,), overwrite=True,
            )
            arr[:] = values


# --- the reader --------------------------------------------------------------------------------


class Store:
    """A read-only view of a built (or partly built) store."""

    def __init__(self, url: str, group: Any):
        self.url = url
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs[ATTRS_KEY])

    @cached_property
    def spec(self) -> FeatureSpec:
        return FeatureSpec.from_dict(self.attrs["spec"])

    @property
    def labels(self) -> list[str]:
        return list(self.attrs["labels"])

    @property
    def build_state(self) -> str:
        return self.attrs["build_state"]

    @property
    def n_clips(self) -> int:
        return int(self.attrs["n_clips"])

    @property
    def chunk_clips(self) -> int:
        return int(self.attrs["chunk_clips"])

    @property
    def shard_clips(self) -> int:
        return int(self.attrs["shard_clips"])

    @property
    def layout(self) -> Layout:
        return Layout(self.n_clips, self.chunk_clips, self.shard_clips)

    @property
    def clip_arrays(self) -> dict[str, ClipArray]:
        return clip_arrays(self.spec)

    def array(self, name: str) -> Any:
        array = node(self.group, name)
        if array is None:
            raise UserError(
                f"store {self.url} has no array {name!r} (features: {', '.join(self.spec.features)}): "
                "rebuild with that feature in --features"
            )
        return array

    @property
    def status(self) -> np.ndarray:
        """Per-clip status as committed. A shard without a commit record of this build counts as
        pending whatever its status array says: after an interrupted build, tasks that were still
        running may have written their shard without the driver ever committing it."""
        status = self.array("status")[:]
        committed = {i for i, r in self.commits().items() if r.get("spec_hash") == self.attrs["spec_hash"]}
        for index in range(self.layout.n_shards):
            if index not in committed:
                start, stop = self.layout.shard_range(index)
                status[start:stop] = PENDING
        return status

    @property
    def n_pending(self) -> int:
        return int(np.count_nonzero(self.status == PENDING))

    @cached_property
    def manifest(self) -> Any:
        """The manifest rows in store order, with `error` ("" for ok and pending clips)."""
        import manifests

        return manifests.load(join(self.url, MANIFEST_FILE)).table

    def stats(self, feature: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per band / coefficient / descriptor over the train split's ok clips."""
        if feature not in normalised(self.spec):
            raise UserError(f"store {self.url} keeps no statistics for {feature!r}")
        if node(self.group, f"{feature}_mean") is None:
            raise UserError(f"store {self.url} is not complete ({self.build_state}): re-run its build to finish it")
        return self.array(f"{feature}_mean")[:], self.array(f"{feature}_std")[:]

    def commits(self) -> dict[int, dict[str, Any]]:
        return read_commits(self.url)


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open a store read-only; a UserError if there is none at `url`."""
    import zarr

    url = os.fspath(url)
    try:
        group = zarr.open_group(zarr_store(url, read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.BaseZarrError):
        raise UserError(f"{url}: not a feature store (no Zarr group there): build one with `featurestore build`") from None
    if ATTRS_KEY not in group.attrs:
        raise UserError(f"{url}: a Zarr group, but not a feature store (no {ATTRS_KEY!r} attributes)")
    return Store(url, group)


# --- inspecting and checking ---------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """One row of `featurestore info`."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    chunks: tuple[int, ...] | None
    shards: tuple[int, ...] | None
    codec: str
    stored: int  # bytes on disk, metadata included
    bytes_per_clip: float | None  # over the clips written so far
    ratio: float | None  # decoded bytes / stored bytes


def footprint(store: Store) -> list[Footprint]:
    """Per-array sizes plus a `total` row; per-clip figures count written (ok or failed) clips."""
    done = store.n_clips - store.n_pending
    rows = []
    for name in store.clip_arrays:
        a = store.array(name)
        stored = a.nbytes_stored()
        decoded = a.nbytes * done / store.n_clips
        codec = "+".join(_codec_text(c) for c in (*a.filters, *a.compressors)) or "none"
        rows.append(Footprint(name, a.shape, str(a.dtype), a.chunks, a.shards, codec, stored,
                              stored / done if done else None, decoded / stored if done else None))
    stored = sum(r.stored for r in rows)
    decoded = sum(r.ratio * r.stored for r in rows if r.ratio)
    rows.append(Footprint("total", None, "", None, None, "", stored, stored / done if done else None,
                          decoded / stored if done else None))
    return rows


def _codec_text(codec: Any) -> str:
    d = codec.to_dict()
    name, cfg = d["name"].removeprefix("numcodecs."), d.get("configuration", {})
    if name == "blosc":
        return f"blosc-{cfg['cname']}{cfg['clevel']}-{cfg['shuffle']}"
    if name == "zstd":
        return f"zstd{cfg['level']}"
    if name == "fixedscaleoffset":
        return f"step{1 / cfg['scale']:g}:{np.dtype(cfg['astype']).name}"
    return name


def verify(store: Store) -> tuple[int, list[str]]:
    """(shards checked, problems): every shard committed, its content hash as recorded, status
    counts as recorded, failed rows zero, every value finite, statistics present."""
    layout, problems = store.layout, []
    commits = store.commits()
    names = list(store.clip_arrays)
    for index in range(layout.n_shards):
        start, stop = layout.shard_range(index)
        where = f"{shard_name(index)} (clips {start}-{stop - 1})"
        record = commits.get(index)
        if record is None:
            problems.append(f"{where}: not committed")
            continue
        try:
            data = read_shard(store.group, layout, index, names)
        except Exception as exc:  # noqa: BLE001 - a damaged shard is a finding, not a crash
            problems.append(f"{where}: unreadable: {type(exc).__name__}: {exc}")
            continue
        if record.get("spec_hash") != store.attrs["spec_hash"]:
            problems.append(f"{where}: committed for another feature spec")
        if content_hash(data) != record.get("hash"):
            problems.append(f"{where}: content differs from its commit record (hash mismatch)")
        status = data["status"]
        if (int((status == OK).sum()), int((status == FAILED).sum())) != (record.get("ok"), record.get("failed")):
            problems.append(f"{where}: ok/failed counts differ from its commit record")
        if (status == PENDING).any():
            problems.append(f"{where}: {int((status == PENDING).sum())} clip(s) pending")
        for name, values in data.items():
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                problems.append(f"{where}: non-finite values in {name}")
            if name != "status" and (values[status == FAILED] != 0).any():
                problems.append(f"{where}: failed clips with non-zero {name}")
    if store.build_state != "complete":
        problems.append(f"build state is {store.build_state!r}, not 'complete': re-run the build to finish it")
    else:
        for feature in normalised(store.spec):
            if not all(np.isfinite(s).all() for s in store.stats(feature)):
                problems.append(f"non-finite statistics for {feature}")
    return layout.n_shards, problems


def export_features(store: Store) -> Any:
    """The GTZAN features_3_sec table: one row per segment of each ok clip."""
    import pandas as pd

    names = store.attrs.get("coordinates", {}).get("handcrafted", {}).get("descriptor")
    if "handcrafted" not in store.spec.features or not names:
        raise UserError(f"store {store.url} has no handcrafted features: build it with --preset handcrafted "
                        "or --features handcrafted")
    ok = np.flatnonzero(store.status == OK)
    values = store.array("handcrafted")[:][ok]  # (clips, segments, descriptors)
    manifest = store.manifest.iloc[ok]
    n_seg = values.shape[1]
    files = [posixpath.splitext(posixpath.basename(p)) for p in manifest["path"]]  # blues.00000.wav ->
    table = pd.DataFrame(values.reshape(-1, len(names)), columns=names)
    table.insert(0, "filename", [f"{stem}.{j}{ext}" for stem, ext in files for j in range(n_seg)])  # blues.00000.3.wav
    table.insert(1, "length", store.spec.segment_samples)
    table["label"] = np.repeat([";".join(labels) for labels in manifest["labels"]], n_seg)
    return table
