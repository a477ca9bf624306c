"""Writing a store: create or grow its nodes, write shards whole, the statistics, the manifest
copy, and the root document with consolidated metadata.

Only the build (and `featurestore upgrade`) writes, one writer at a time under the store's lock.
Everything in the store is a Zarr node, so any Zarr v3 reader lists it without tripping over
foreign files. The manifest copy (the manifest rows in store order plus `error`) is a Parquet
file held as the bytes of a 1-D uint8 array `manifest/parquet-HASH`, named by its content: a new
copy is written beside the old one and the root attributes then point at it, so a reader never
sees half a copy. The clip, split and labels coordinates mirror it for xarray. Only Zarr v3
core codecs are used.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any

import numpy as np

from featurestore import codecs
from featurestore.locations import join, read_bytes, remove_object, write_bytes, zarr_store
from featurestore.spec import FeatureSpec
from featurestore.store.attrs import RootAttributes, write_root
from featurestore.store.layout import (ATTRS_KEY, COMMITS_DIR, COORDINATES, MANIFEST_DIR, STATUS_FLAGS, ClipArray,
                                       Layout, clip_arrays, normalised)

GROUPS = {
    COMMITS_DIR: "one memberless group per finished shard, its commit record as attributes",
    MANIFEST_DIR: "parquet-HASH: the manifest rows in store order, with an error column, as the bytes of a "
                  "Parquet file (the root attributes name the current one)",
}
_EMPTY_CONSOLIDATED = {"kind": "inline", "must_understand": False, "metadata": {}}


def create(url: str, attrs: RootAttributes, copy: ManifestCopy) -> None:
    """A fresh store: the root document first (it makes the folder a feature store, which a later
    build may resume or --overwrite), then every node, then the manifest copy it points at."""
    write_root(url, attrs)
    create_missing(url, attrs.spec, attrs.layout, {})
    copy.write(url)


def create_missing(url: str, spec: FeatureSpec, layout: Layout, existing: dict[str, Any]) -> None:
    """Create the nodes a store lacks (all of them when fresh): its groups, the per-clip arrays
    not in `existing`, and the coordinates along the features' dimensions."""
    import zarr

    for folder, what in GROUPS.items():
        if read_bytes(join(url, folder, "zarr.json")) is None:
            write_bytes(join(url, folder, "zarr.json"), json.dumps(
                {"zarr_format": 3, "node_type": "group", "attributes": {ATTRS_KEY: what}}).encode())
    codec = codecs.parse(spec.codec)
    store = zarr_store(url, read_only=False)
    for a in clip_arrays(spec).values():
        if a.name in existing:
            continue
        enc = codec.for_array(spec.feature(a.name) if a.name in spec.arrays else a)
        zarr.create_array(
            store, name=a.name,
            shape=(layout.n_clips, *a.clip_shape),
            dtype=enc.stored,
            chunks=(layout.chunk_clips, *a.clip_shape),
            shards=(layout.shard_clips, *a.clip_shape),
            compressors=enc.compressors,
            fill_value=0,
            dimension_names=a.dims,
            attributes={**_describing(spec, a), "coordinates": " ".join(COORDINATES[1:]), **enc.attributes()},
            overwrite=True,  # a killed build's half-created array
        )
    for name, values in _dimension_coordinates(spec).items():
        if read_bytes(join(url, name, "zarr.json")) is None:
            _write_strings(store, name, values, name)


def resize(arrays: dict[str, Any], url: str, spec: FeatureSpec, n_clips: int) -> None:
    """Grow the clip axis of `arrays` (zarr arrays of the store) to `n_clips`."""
    import zarr

    store = zarr_store(url, read_only=False)
    for name, array in clip_arrays(spec).items():
        if name in arrays and arrays[name].shape[0] != n_clips:
            zarr.open_array(store, path=name, mode="r+").resize((n_clips, *array.clip_shape))


def _describing(spec: FeatureSpec, array: ClipArray) -> dict[str, Any]:
    """CF `long_name` and `units` of a per-clip array (and of its statistics)."""
    if array.name == "status":
        return {"long_name": "build status of the clip", **STATUS_FLAGS}
    if array.name == "length":
        return {"long_name": "samples decoded from the file, before padding or truncation to the clip length",
                "units": "1"}
    feature = spec.feature(array.name)
    return {"long_name": feature.long_name, **({"units": feature.units} if feature.units else {})}


def _dimension_coordinates(spec: FeatureSpec) -> dict[str, list[str]]:
    """Names along the features' dimensions (the handcrafted descriptors), as coordinate arrays."""
    return {dim: values for name in spec.names for dim, values in spec.feature(name).coordinates().items()}


def _replaced(store: Any, name: str, shape: tuple[int, ...], dtype: Any, **create: Any) -> Any:
    """The array `name` to be written whole: the existing one where its shape and dtype fit (its
    metadata is kept), else a new one. Creating an array makes zarr read every parent group's
    metadata (the root document among them), which a store that only changes values skips."""
    import zarr

    try:
        existing = zarr.open_array(store, path=name, mode="r+")
        same = existing.dtype.kind in "TUO" if dtype is str else existing.dtype == np.dtype(dtype)  # any string type
        if existing.shape == shape and same:
            return existing
    except (FileNotFoundError, zarr.errors.BaseZarrError):
        pass
    return zarr.create_array(store, name=name, shape=shape, dtype=dtype, overwrite=True, **create)


def _write_strings(store: Any, name: str, values: list[str], dim: str, long_name: str | None = None) -> None:
    """A 1-D UTF-8 string array (a coordinate), replaced whole."""
    n = len(values)
    array = _replaced(store, name, (n,), str, chunks=(max(1, min(n, 2**16)),), fill_value="",
                      dimension_names=(dim,), attributes={"long_name": long_name or f"{dim} names"})
    array[:] = np.asarray(values, dtype=object)


# --- shards --------------------------------------------------------------------------------------


def write_shards(url: str, start: int, stop: int, values: dict[str, np.ndarray]) -> None:
    """Rows start..stop-1 (one whole shard) of every array in `values`, written concurrently on
    zarr's event loop: one array at a time, each write's waits on storage and on the codec thread
    queue behind the others' (a 32-clip mtat-seed shard, one thread: 86 → 70 ms). Empty chunks are
    written too: a whole shard's chunks are rarely all zero, and asking each one costs a
    comparison of all its bytes (a 32-clip mtat-seed shard: 52 → 44 ms with Blosc, 22 → 12 ms
    uncompressed); readers get the same values either way.

    zarr reads an existing shard's index before replacing the shard: when that object is
    damaged (truncated, flipped bytes), it is removed and the shard written afresh. Otherwise the
    replacement stays atomic, which readers during a build rely on. An OSError names the shard
    object it could not write."""
    import zarr
    from zarr.core.sync import sync

    from featurestore.store.layout import shard_object

    store = zarr_store(url, read_only=False)
    arrays = {name: zarr.open_array(store, path=name, mode="r+").with_config({"write_empty_chunks": True})
              for name in values}
    index = start // arrays[next(iter(arrays))].shards[0] if arrays else 0

    async def write_all() -> list[Any]:
        return await asyncio.gather(*(arrays[name].async_array.setitem(slice(start, stop), data)
                                      for name, data in values.items()), return_exceptions=True)

    for name, outcome in zip(values, sync(write_all())):
        target = shard_object(url, name, index, arrays[name].ndim)
        try:
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception) or isinstance(outcome, OSError):
                    raise outcome
                remove_object(target)  # a bad checksum or a short index, in whichever codec noticed
                arrays[name][start:stop] = values[name]
        except OSError as exc:
            exc.filename = exc.filename or target  # zarr's writes often lose it
            raise


def write_stats(url: str, spec: FeatureSpec, name: str, mean: np.ndarray, std: np.ndarray) -> None:
    """`NAME_mean` and `NAME_std` of array `name`, replaced whole."""
    store = zarr_store(url, read_only=False)
    described = _describing(spec, clip_arrays(spec)[name])
    for kind, values in (("mean", mean), ("std", std)):
        array = _replaced(
            store, f"{name}_{kind}", values.shape, "float32", fill_value=0,
            dimension_names=(spec.feature(name).stats_dim,),
            attributes={**described, "long_name": f"{kind} of {described['long_name']} over the train split's ok clips"},
        )
        array[:] = values


# --- the manifest copy and the coordinates that mirror it ---------------------------------------


class ManifestCopy:
    """The manifest rows in store order with their `error`, as Parquet bytes named by their hash."""

    def __init__(self, manifest: Any, errors: list[str | None]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from manifests.io import to_arrow

        table = to_arrow(manifest)
        self.table = table.append_column("error", pa.array([e or None for e in errors], type=pa.string()))
        buf = io.BytesIO()
        pq.write_table(self.table, buf, compression="zstd")
        self.data = np.frombuffer(buf.getvalue(), dtype=np.uint8)
        self.name = f"{MANIFEST_DIR}/parquet-{hashlib.sha256(self.data).hexdigest()[:16]}"

    def write(self, url: str) -> None:
        """The copy beside any other (the root attributes, written next, say which is current), and
        the coordinates."""
        import zarr

        store = zarr_store(url, read_only=False)
        array = zarr.create_array(store, name=self.name, shape=self.data.shape, dtype="uint8",
                                  chunks=self.data.shape, compressors=None, fill_value=0, dimension_names=("byte",),
                                  overwrite=True, attributes={"media_type": "application/vnd.apache.parquet"})
        array[:] = self.data
        frame = self.table.select(["clip_id", "split", "labels"]).to_pandas()
        _write_strings(store, "clip", frame["clip_id"].tolist(), "clip", "clip_id of the manifest")
        _write_strings(store, "split", frame["split"].tolist(), "clip", "split of the clip")
        _write_strings(store, "labels", [";".join(labels) for labels in frame["labels"]], "clip",
                       "labels of the clip, joined by ';'")


def remove_other_copies(url: str, keep: str) -> None:
    """Every manifest copy but `keep` (once the root attributes point at it)."""
    from featurestore.locations import list_names, remove_tree

    for name in list_names(join(url, MANIFEST_DIR)):
        if name.startswith("parquet-") and f"{MANIFEST_DIR}/{name}" != keep:
            remove_tree(join(url, MANIFEST_DIR, name))


# --- the root document ---------------------------------------------------------------------------


def consolidated(url: str, attrs: RootAttributes) -> dict[str, Any]:
    """Consolidated metadata of every node but the commit records: one read of the root gives a
    reader every array. The records are this package's bookkeeping, read from their own
    `zarr.json` files, and would make up nearly all of the root document (about 10 KB per shard,
    20 MB for a million clips) that every reader downloads."""
    spec = attrs.spec
    names = [*clip_arrays(spec), *(f"{a}_{k}" for a in normalised(spec) for k in ("mean", "std")),
             *COORDINATES, *_dimension_coordinates(spec), *GROUPS, *([attrs.manifest_copy] if attrs.manifest_copy else [])]
    nodes = {}
    for name in names:
        data = read_bytes(join(url, name, "zarr.json"))
        if data is not None:
            node = json.loads(data)
            if node.get("node_type") == "group":
                node["consolidated_metadata"] = _EMPTY_CONSOLIDATED
            nodes[name] = node
    return {**_EMPTY_CONSOLIDATED, "metadata": nodes}
