"""The store's layout, and the read-only view trainers and tools use.

A store is one Zarr v3 group. Every per-clip array has the clip as its first axis (manifest
order), chunks of `chunk_clips` clips for random access and shards of `shard_clips` clips as
the unit of writing: a build task writes whole shards only, because the sharding codec loses
data when two writers share a shard.

Everything in the store is a Zarr node, so that any Zarr v3 reader lists it without tripping
over foreign files: each shard's commit record is the attributes of a memberless group
`commits/shard-NNNNN` (one `zarr.json`, written atomically by the build driver alone), and the
manifest copy (the manifest rows in store order plus `error`) is a Parquet file held as the bytes
of a 1-D uint8 array `manifest/parquet-HASH`, named by its content: a new copy is written beside
the old one and the root attributes then point at it, so a reader never sees half a copy. The
clip, split and labels coordinates mirror that copy for xarray. Only core codecs are used, and
the root group carries consolidated metadata whenever a build has finished.

A store grows. Each array records the settings that made it and their hash (the shared
decoding settings plus its feature's own, and its encoding), so features can be added later
without touching the others; clips can be appended (the shard size is fixed at creation, so
committed shards never move); labels and splits can change without decoding anything. A
shard's commit record therefore binds, per part (`clips` for status and length, then each
feature), the settings hash and content hash of what was written, to the shard's clip ids and
paths (`rows_hash`): a part counts as committed only while all of these still match.
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

from featurestore import codecs
from featurestore.errors import UserError
from featurestore.files import TEMPORARY_GLOB, ZARR_TEMPORARY_GLOB, atomic_path
from featurestore.spec import FeatureSpec

FORMAT_VERSION = 3
CLIPS = "clips"  # the commit-record part for status and length: the decoding of each clip
ATTRS_KEY = "featurestore"
PENDING, OK, FAILED = 0, 1, 2
MANIFEST_DIR = "manifest"
COMMITS_DIR = "commits"
COORDINATES = ("clip", "split", "labels")  # per-clip coordinates, from the manifest copy
STATUS_FLAGS = {"flag_values": [PENDING, OK, FAILED], "flag_meanings": "pending ok failed"}
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


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def array_hash(spec: FeatureSpec, name: str) -> str:
    """What one feature array's values depend on: the shared decoding, its own settings, its encoding."""
    feature = spec.feature(name)
    encoding = codecs.parse(spec.codec).for_array(name, feature.dtype).describe()
    return _digest({"settings": spec.array_settings(name), "encoding": encoding})


def decoding_hash(spec: FeatureSpec) -> str:
    """What status and length depend on: how clips are decoded."""
    from featurestore.spec import DECODING

    return _digest({k: getattr(spec, k) for k in DECODING})


def part_hashes(spec: FeatureSpec) -> dict[str, str]:
    """Settings hash of every commit-record part a store with `spec` holds."""
    return {CLIPS: decoding_hash(spec), **{name: array_hash(spec, name) for name in spec.features}}


def rows_hash(clip_ids: Iterable[str], paths: Iterable[str]) -> str:
    """The identity of a run of rows: their clip ids and paths (not labels or splits, which may change)."""
    h = hashlib.sha256()
    for clip_id, path in zip(clip_ids, paths):
        h.update(f"{clip_id}\0{path}\n".encode())
    return h.hexdigest()[:16]


def split_hash(train: np.ndarray) -> str:
    """Which rows of a shard are train rows: what its statistics' partial sums depend on."""
    return hashlib.sha256(np.packbits(np.asarray(train, dtype=bool)).tobytes() + str(len(train)).encode()).hexdigest()[:16]


def shard_rows_hashes(table: Any, layout: Layout) -> list[str]:
    ids, paths = table["clip_id"].astype(str).tolist(), table["path"].astype(str).tolist()
    return [rows_hash(ids[a:b], paths[a:b]) for a, b in map(layout.shard_range, range(layout.n_shards))]


@dataclass(frozen=True)
class Expected:
    """What a commit record must match to count: this very store (not one it replaced, nor a copy
    of another), the settings of every part, and the shard files as they are on disk."""

    store_id: str | None
    hashes: dict[str, str]
    files: dict[int, dict[str, int]]  # shard -> array -> bytes of its shard object (absent: none)


def part_arrays(part: str) -> tuple[str, ...]:
    return ("status", "length") if part == CLIPS else (part,)


def valid_parts(record: dict[str, Any] | None, start: int, stop: int, rows: str, expected: Expected) -> set[str]:
    """The parts of a shard's commit record that still describe rows start..stop-1 as they are
    now: same store, clips and settings, and every shard object it wrote still there, of the size
    it wrote (a deleted or truncated file makes its part pending again)."""
    if (not record or record.get("store_id") != expected.store_id
            or (record.get("start"), record.get("stop")) != (start, stop) or record.get("rows_hash") != rows):
        return set()
    files = expected.files.get(record.get("shard"), {})
    valid = set()
    for part, entry in (record.get("parts") or {}).items():
        if expected.hashes.get(part) != entry.get("settings_hash") or not isinstance(entry.get("hash"), str):
            continue
        if part == CLIPS and entry.get("ok", 0) + entry.get("failed", 0) != stop - start:
            continue
        written = entry.get("bytes")
        if not isinstance(written, dict) or any(files.get(a) != written.get(a) for a in part_arrays(part)):
            continue
        valid.add(part)
    return valid


def shard_object(url: str, name: str, index: int, ndim: int) -> str:
    """The object holding shard `index` of an array (shards span every other dimension whole)."""
    return join(url, name, "c", str(index), *["0"] * (ndim - 1))


def written_sizes(url: str, names: Iterable[tuple[str, int]], index: int) -> dict[str, int | None]:
    """Bytes of each (array, ndim)'s shard object right after a task wrote it; None where zarr
    wrote nothing (a shard of fill values only)."""
    fs, path = _fs(url)
    sizes: dict[str, int | None] = {}
    for name, ndim in names:
        try:
            sizes[name] = int(fs.size(shard_object(path, name, index, ndim)))
        except FileNotFoundError:
            sizes[name] = None
    return sizes


def expected_now(url: str, store_id: str | None, hashes: dict[str, str], parts: Iterable[str]) -> Expected:
    """What the commit records of `parts` must match, their shard files listed now."""
    return Expected(store_id, hashes, stored_sizes(url, [a for p in parts for a in part_arrays(p)]))


def stored_sizes(url: str, names: Iterable[str]) -> dict[int, dict[str, int]]:
    """Bytes of every shard object of `names` now, by shard: one listing per array."""
    fs, path = _fs(url)
    sizes: dict[int, dict[str, int]] = {}
    for name in names:
        prefix = f"{path.rstrip('/')}/{name}/c/"
        fs.invalidate_cache(prefix.rstrip("/"))
        try:
            found = fs.find(prefix.rstrip("/"), detail=True)
        except FileNotFoundError:
            continue
        for key, info in found.items():
            parts = key[len(prefix):].split("/") if key.startswith(prefix) else []
            if parts and all(p.isdigit() for p in parts):  # not a writer's temporary
                sizes.setdefault(int(parts[0]), {})[name] = int(info["size"])
    return sizes


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
    except (FileNotFoundError, NotADirectoryError):
        return None


def list_names(url: str) -> list[str]:
    """Names directly under a folder (empty when it does not exist)."""
    fs, path = _fs(url)
    try:
        # refresh: object-store listings are cached per process, and another process may have written
        return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False, refresh=True))
    except FileNotFoundError:
        return []


def stored_attrs(url: str) -> dict[str, Any] | None:
    """This package's attributes of the store at `url`, whatever its format; None if there is none."""
    try:
        value = (json.loads(read_bytes(join(url, "zarr.json")) or b"null") or {}).get("attributes", {})[ATTRS_KEY]
        return json.loads(value) if isinstance(value, str) else dict(value)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def is_store(url: str) -> bool:
    """Whether `url` holds a feature store's root group (whole or half-built): what --overwrite may replace."""
    try:
        meta = json.loads(read_bytes(join(url, "zarr.json")) or b"")
    except ValueError:
        return False
    return isinstance(meta, dict) and ATTRS_KEY in (meta.get("attributes") or {})


def remove_object(url: str) -> None:
    fs, path = _fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


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


# --- commit records ----------------------------------------------------------------------------


def commit_url(url: str, index: int) -> str:
    """The `zarr.json` of the memberless group whose attributes are the shard's record."""
    return join(url, COMMITS_DIR, shard_name(index), "zarr.json")


def write_commit(url: str, record: dict[str, Any]) -> None:
    meta = {"zarr_format": 3, "node_type": "group", "attributes": {ATTRS_KEY: record}}
    write_bytes(commit_url(url, record["shard"]), json.dumps(meta, sort_keys=True).encode())


def record_hash(parts: dict[str, dict[str, Any]]) -> str:
    """One hash over a shard's parts (what two stores compare)."""
    return _digest({p: e["hash"] for p, e in parts.items()})


def read_commits(url: str) -> dict[int, dict[str, Any]]:
    """Every readable commit record by shard index (an unreadable one counts as absent)."""
    records = {}
    for name in list_names(join(url, COMMITS_DIR)):
        if not name.startswith("shard-"):
            continue
        data = read_bytes(join(url, COMMITS_DIR, name, "zarr.json"))
        try:
            record = json.loads(data or b"")["attributes"][ATTRS_KEY]
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
    """A shard's values, as readers get them (quantized arrays scaled back)."""
    start, stop = layout.shard_range(index)
    return {name: FeatureArray(node(group, name))[start:stop] for name in names}


class FeatureArray:
    """A stored array as this package reads it: CF-packed integers turned back into floats by
    their own attributes (`codecs.decode`), anything else as stored."""

    def __init__(self, raw: Any):
        self.raw = raw
        self._packing = {k: v for k, v in raw.attrs.items() if k in ("scale_factor", "add_offset")}
        self.shape: tuple[int, ...] = raw.shape
        self.dtype = np.dtype("float32") if self._packing else raw.dtype

    def __getitem__(self, selection: Any) -> np.ndarray:
        return codecs.decode(self.raw[selection], self._packing)

    def nbytes_stored(self) -> int:
        return self.raw.nbytes_stored()


# --- creating a store ---------------------------------------------------------------------------


def root_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """The root group's attributes: CF global attributes, and this package's own as one JSON
    string (netCDF and `xarray.Dataset.to_netcdf` accept no nested attribute values)."""
    from featurestore import __version__

    return {"Conventions": "CF-1.11", "title": f"featurestore features of {attrs.get('dataset', 'a manifest')}",
            "source": f"featurestore {__version__}", ATTRS_KEY: json.dumps(attrs)}


def write_attrs(group: Any, attrs: dict[str, Any]) -> None:
    group.update_attributes(root_attributes(attrs))


def read_attrs(group: Any) -> dict[str, Any]:
    value = group.attrs[ATTRS_KEY]
    return json.loads(value) if isinstance(value, str) else dict(value)


def create(url: str, attrs: dict[str, Any], spec: FeatureSpec, layout: Layout) -> Any:
    """A fresh group holding `attrs` (written first), then its arrays."""
    import zarr

    group = zarr.create_group(zarr_store(url, read_only=False), attributes=root_attributes(attrs), overwrite=True)
    create_missing_nodes(group, spec, layout)
    return group


def create_missing_nodes(group: Any, spec: FeatureSpec, layout: Layout) -> None:
    """Create the nodes a killed build had not created yet (all of them when fresh)."""
    for folder, what in ((COMMITS_DIR, "one memberless group per finished shard, its commit record as attributes"),
                         (MANIFEST_DIR, "parquet-HASH: the manifest rows in store order, with an error column, "
                                        "as the bytes of a Parquet file (the root attributes name the current one)")):
        if node(group, folder) is None:
            group.create_group(folder, attributes={ATTRS_KEY: what})

    codec = codecs.parse(spec.codec)
    for a in clip_arrays(spec).values():
        if node(group, a.name) is not None:
            continue
        enc = codec.for_array(a.name, a.dtype)
        group.create_array(
            a.name,
            shape=(layout.n_clips, *a.clip_shape),
            dtype=enc.stored,
            chunks=(layout.chunk_clips, *a.clip_shape),
            shards=(layout.shard_clips, *a.clip_shape),
            compressors=enc.compressors,
            fill_value=0,
            dimension_names=a.dims,
            attributes={**_describing(spec, a.name), "coordinates": " ".join(COORDINATES[1:]), **enc.attributes()},
        )
    for name, values in _dimension_coordinates(spec).items():
        if node(group, name) is None:
            _write_strings(group, name, values, name)


def _describing(spec: FeatureSpec, name: str) -> dict[str, Any]:
    """CF `long_name` and `units` of a per-clip array (and of its statistics)."""
    if name == "status":
        return {"long_name": "build status of the clip", **STATUS_FLAGS}
    if name == "length":
        return {"long_name": "samples decoded from the file, before padding or truncation to the clip length",
                "units": "1"}
    feature = spec.feature(name)
    return {"long_name": feature.long_name, **({"units": feature.units} if feature.units else {})}


def _dimension_coordinates(spec: FeatureSpec) -> dict[str, list[str]]:
    """Names along the features' dimensions (the handcrafted descriptors), as coordinate arrays."""
    return {dim: values for name in spec.features for dim, values in spec.feature(name).coordinates().items()}


def _write_strings(group: Any, name: str, values: list[str], dim: str, long_name: str | None = None) -> None:
    """A 1-D UTF-8 string array (a coordinate), replaced whole."""
    n = len(values)
    array = group.create_array(name, shape=(n,), dtype=str, chunks=(max(1, min(n, 2**16)),), fill_value="",
                               dimension_names=(dim,), overwrite=True,
                               attributes={"long_name": long_name or f"{dim} names"})
    array[:] = np.asarray(values, dtype=object)


def node(group: Any, name: str) -> Any:
    """`group[name]`, or None."""
    try:
        return group[name]
    except KeyError:
        return None


def write_stats(group: Any, spec: FeatureSpec, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for feature, (mean, std) in stats.items():
        described = _describing(spec, feature)
        for kind, values in (("mean", mean), ("std", std)):
            arr = group.create_array(
                f"{feature}_{kind}", shape=values.shape, dtype="float32", fill_value=0,
                dimension_names=(spec.feature(feature).stats_dim,), overwrite=True,
                attributes={**described, "long_name": f"{kind} of {described['long_name']} over the train split's "
                                                      "ok clips"},
            )
            arr[:] = values


# --- the manifest copy and the coordinates that mirror it ---------------------------------------


def manifest_arrow(manifest: Any, errors: list[str | None], source_metadata: dict[bytes, bytes]) -> Any:
    """The manifest copy: the manifest's own Arrow table (its schema and metadata) plus `error`,
    null where a clip has no error."""
    import pyarrow as pa
    from manifests.io import to_arrow

    table = to_arrow(manifest)
    table = table.append_column("error", pa.array([e or None for e in errors], type=pa.string()))
    return table.replace_schema_metadata({**source_metadata, **(table.schema.metadata or {})})


def write_manifest_copy(group: Any, table: Any) -> None:
    """Write the copy beside the current one, point the root attributes at it, then remove the
    old one: a reader sees either copy whole, never a mixture. The coordinates follow."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    name = f"{MANIFEST_DIR}/parquet-{hashlib.sha256(data).hexdigest()[:16]}"
    attrs = read_attrs(group)
    if attrs.get("manifest_copy") != name:
        array = group.create_array(name, shape=data.shape, dtype="uint8", chunks=data.shape, compressors=None,
                                   fill_value=0, dimension_names=("byte",), overwrite=True,
                                   attributes={"media_type": "application/vnd.apache.parquet"})
        array[:] = data
        write_attrs(group, {**attrs, "manifest_copy": name})
    folder = node(group, MANIFEST_DIR)
    for stale in [n for n, _ in folder.arrays() if f"{MANIFEST_DIR}/{n}" != name]:
        del folder[stale]
    frame = table.select(["clip_id", "split", "labels"]).to_pandas()
    _write_strings(group, "clip", frame["clip_id"].tolist(), "clip", "clip_id of the manifest")
    _write_strings(group, "split", frame["split"].tolist(), "clip", "split of the clip")
    _write_strings(group, "labels", [";".join(labels) for labels in frame["labels"]], "clip",
                   "labels of the clip, joined by ';'")


def read_manifest_copy(url: str, group: Any, attrs: dict[str, Any]) -> Any:
    """The manifest copy as a `manifests.Manifest`; a UserError when there is none yet."""
    import pyarrow.parquet as pq
    from manifests.io import from_arrow

    name = attrs.get("manifest_copy")
    array = node(group, name) if name else None
    if array is None:
        raise UserError(f"{url} has no manifest copy yet (its build stopped as it started): re-run the build")
    return from_arrow(pq.read_table(io.BytesIO(array[:].tobytes())), f"{url} ({name})")


def consolidate(url: str) -> None:
    """Consolidated metadata in the root `zarr.json`: one read gives a reader every array.

    The commit records are left out (their group stays listed): they are this package's
    bookkeeping, read from their own `zarr.json` files, and would make up nearly all of the root
    document (about 10 KB per shard, 20 MB for a million clips) that every reader downloads."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not part of the Zarr format 3 specification" (yet)
        zarr.consolidate_metadata(zarr_store(url, read_only=False))
    key = join(url, "zarr.json")
    meta = json.loads(read_bytes(key) or b"{}")
    nodes = meta["consolidated_metadata"]["metadata"]
    meta["consolidated_metadata"]["metadata"] = {k: v for k, v in nodes.items() if not k.startswith(f"{COMMITS_DIR}/")}
    write_bytes(key, json.dumps(meta).encode())


def unconsolidate(url: str) -> None:
    """Drop the consolidated metadata before a build changes the store, so that no reader trusts
    a snapshot of nodes that are about to change; `consolidate` writes it again at the end."""
    key = join(url, "zarr.json")
    meta = json.loads(read_bytes(key) or b"{}")
    if meta.pop("consolidated_metadata", None) is not None:
        write_bytes(key, json.dumps(meta).encode())


# --- the reader --------------------------------------------------------------------------------


class Store:
    """A read-only view of a built (or partly built) store."""

    def __init__(self, url: str, group: Any):
        self.url = url
        self.group = group
        self.attrs: dict[str, Any] = read_attrs(group)

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

    def array(self, name: str) -> FeatureArray:
        array = node(self.group, name)
        if array is None:
            raise UserError(
                f"store {self.url} has no array {name!r} (features: {', '.join(self.spec.features)}): "
                "rebuild with that feature in --features"
            )
        return FeatureArray(array)

    @property
    def status(self) -> np.ndarray:
        """Per-clip status as committed for every array of the store (see `status_for`)."""
        return self.status_for(self.spec.features)

    def status_for(self, arrays: Iterable[str]) -> np.ndarray:
        """Per-clip status as committed for `arrays`. A shard whose commit record does not cover
        its status and every one of these arrays, for its current clips and the arrays' recorded
        settings, counts as pending whatever its status array says: after an interrupted build,
        tasks that were still running may have written their shard without the driver ever
        committing it."""
        status = self.array("status")[:]
        done = self.committed(arrays)
        for index in range(self.layout.n_shards):
            if index not in done:
                start, stop = self.layout.shard_range(index)
                status[start:stop] = PENDING
        return status

    def committed(self, arrays: Iterable[str]) -> set[int]:
        """Shards whose status and `arrays` are committed, their files as written."""
        wanted = {CLIPS, *arrays}
        records = self.commits()
        try:
            rows = shard_rows_hashes(self.manifest, self.layout)
        except UserError:  # no manifest copy yet (a build killed as it created the store): nothing is committed
            return set()
        if self.mis_sized(wanted):  # the attributes describe other arrays than these: nothing counts
            return set()
        expected = self.expected(wanted)
        return {i for i in range(self.layout.n_shards)
                if wanted <= valid_parts(records.get(i), *self.layout.shard_range(i), rows[i], expected)}

    def mis_sized(self, parts: Iterable[str]) -> list[str]:
        """Arrays of `parts` whose clip axis is not the attributes' clip count."""
        return [a for p in parts for a in part_arrays(p)
                if (n := node(self.group, a)) is not None and n.shape[0] != self.n_clips]

    def expected(self, parts: Iterable[str] | None = None) -> Expected:
        """What commit records must match (listing the shard files of `parts`, default all)."""
        parts = [CLIPS, *self.spec.features] if parts is None else parts
        return expected_now(self.url, self.attrs.get("store_id"), self.part_hashes, parts)

    @property
    def part_hashes(self) -> dict[str, str]:
        return {CLIPS: self.attrs["decoding_hash"], **{a: info["hash"] for a, info in self.attrs["arrays"].items()}}

    def inputs_hash(self, arrays: Iterable[str]) -> str:
        """The identity of some arrays' values: equal in two stores built with the same settings."""
        hashes = self.part_hashes
        return _digest({a: hashes[a] for a in arrays})

    @property
    def n_pending(self) -> int:
        return int(np.count_nonzero(self.status == PENDING))

    @cached_property
    def manifest(self) -> Any:
        """The manifest rows in store order, with `error` (None for ok and pending clips)."""
        table = read_manifest_copy(self.url, self.group, self.attrs).table
        error = table["error"]
        table["error"] = error.astype(object).where(error.notna(), None)  # None, not pandas' NaN, where none
        return table

    def ready(self, arrays: Iterable[str]) -> bool:
        """Whether `arrays` are committed in every shard and their statistics written: what
        training on them needs, while a build may be adding other arrays."""
        arrays = list(arrays)
        if len(self.committed(arrays)) < self.layout.n_shards:
            return False
        return all(node(self.group, f"{a}_mean") is not None for a in arrays if a in normalised(self.spec))

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
        # Live metadata, not the consolidated snapshot: this reader checks the store against its
        # commit records, which a snapshot taken before someone changed an array would hide.
        group = zarr.open_group(zarr_store(url, read_only=True), mode="r", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.BaseZarrError):
        raise UserError(f"{url}: not a feature store (no Zarr group there): build one with `featurestore build`") from None
    if ATTRS_KEY not in group.attrs:
        raise UserError(f"{url}: a Zarr group, but not a feature store (no {ATTRS_KEY!r} attributes)")
    store = Store(url, group)
    if store.attrs.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{url} has store format {store.attrs.get('format_version')}, this version reads "
                        f"{FORMAT_VERSION}: rebuild it with `featurestore build ... --overwrite` (the features are "
                        "computed again; the manifest is unchanged)")
    return store


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
        view = store.array(name)
        a, stored = view.raw, view.nbytes_stored()
        decoded = math.prod(a.shape) * view.dtype.itemsize * done / store.n_clips
        step = view.raw.attrs.get("scale_factor")
        codec = "+".join([*([f"step{step:g}:{a.dtype}"] if step else []), *map(_codec_text, a.compressors)]) or "none"
        rows.append(Footprint(name, a.shape, str(view.dtype), a.chunks, a.shards, codec, stored,
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
    return name


def verify(store: Store) -> tuple[int, list[str]]:
    """(shards checked, problems): every shard committed for its status and every array, each
    part's content hash as recorded, status counts as recorded, failed rows zero, every value
    finite, statistics present."""
    layout, problems = store.layout, []
    for name in store.mis_sized([CLIPS, *store.spec.features]):
        problems.append(f"array {name} holds {store.array(name).shape[0]} clips where the attributes say "
                        f"{store.n_clips}: the store was changed behind its build")
    if problems:
        return layout.n_shards, problems
    commits = store.commits()
    expected = store.expected()
    rows = shard_rows_hashes(store.manifest, layout)
    for index in range(layout.n_shards):
        start, stop = layout.shard_range(index)
        where = f"{shard_name(index)} (clips {start}-{stop - 1})"
        record = commits.get(index)
        if record is None:
            problems.append(f"{where}: not committed")
            continue
        valid = valid_parts(record, start, stop, rows[index], expected)
        missing = [p for p in (CLIPS, *store.spec.features) if p not in valid]
        if missing:
            problems.append(f"{where}: not committed for {', '.join(missing)} (committed for another store, other "
                            "clips or settings, or its shard files were changed or deleted since)")
        try:
            data = read_shard(store.group, layout, index, list(store.clip_arrays))
        except Exception as exc:  # noqa: BLE001 - a damaged shard is a finding, not a crash
            problems.append(f"{where}: unreadable: {type(exc).__name__}: {exc}")
            continue
        for part in valid:
            names = ("status", "length") if part == CLIPS else (part,)
            if content_hash({n: data[n] for n in names}) != record["parts"][part]["hash"]:
                problems.append(f"{where}: content differs from its commit record (hash mismatch in {part})")
        status = data["status"]
        clips = record.get("parts", {}).get(CLIPS, {})
        if CLIPS in valid and (int((status == OK).sum()), int((status == FAILED).sum())) != (clips.get("ok"),
                                                                                           clips.get("failed")):
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
