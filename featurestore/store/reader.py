"""Reading a store: `open_store(url)` and the `Store` it returns.

A store opens with one read of its root document, one of each array's metadata, one listing of
its commit records and one of each array's shard objects (`featurestore.store.state`), all
checked before any value is read. The `Store` then answers from that state: which clips are
committed for which arrays, the manifest copy with each clip's labels, split, group and error,
the statistics, and each array's values (quantized arrays scaled back to floats).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from functools import cached_property
from typing import Any

import numpy as np

from featurestore import codecs
from featurestore.errors import StoreFormatError, UserError
from featurestore.locations import join, size, zarr_store
from featurestore.spec import FeatureSpec
from featurestore.store.attrs import RootAttributes
from featurestore.store.commits import CommitRecord, inputs_hash, shard_rows_hashes
from featurestore.store.layout import CLIPS, PENDING, Layout, clip_arrays, normalised, part_arrays
from featurestore.store.state import StoreState, read_state


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

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The clips at sorted store positions `rows`, reading only the chunks that hold them."""
        return codecs.decode(self.raw.get_orthogonal_selection((rows,)), self._packing)

    def nbytes_stored(self) -> int:
        return self.raw.nbytes_stored()


class Store:
    """A read-only view of a built (or partly built) store."""

    def __init__(self, state: StoreState):
        self.state = state
        self.url = state.url

    # --- what the attributes say ------------------------------------------------------------------

    @property
    def attrs(self) -> RootAttributes:
        return self.state.attrs

    @property
    def spec(self) -> FeatureSpec:
        return self.state.spec

    @property
    def labels(self) -> list[str]:
        return list(self.attrs.labels)

    @property
    def build_state(self) -> str:
        return self.attrs.build_state

    @property
    def n_clips(self) -> int:
        return self.attrs.n_clips

    @property
    def chunk_clips(self) -> int:
        return self.attrs.chunk_clips

    @property
    def shard_clips(self) -> int:
        return self.attrs.shard_clips

    @property
    def layout(self) -> Layout:
        return self.state.layout

    @property
    def records(self) -> dict[int, CommitRecord]:
        return self.state.records

    def inputs_hash(self, arrays: Iterable[str]) -> str:
        """The identity of some arrays' values: equal in two stores built with the same settings."""
        return inputs_hash(self.spec, arrays)

    # --- values -------------------------------------------------------------------------------------

    def array(self, name: str) -> FeatureArray:
        """A per-clip array, its metadata checked when the store opened (statistics: `stats`)."""
        if name in self.state.arrays:
            return FeatureArray(self.state.arrays[name])
        if name in clip_arrays(self.spec):
            raise UserError(f"store {self.url} has no {name} array yet (its build stopped before creating it): "
                            "re-run the build")
        raise UserError(f"store {self.url} has no array {name!r} (arrays: {', '.join(self.spec.names)}): build one "
                        "with that name (--features, or --spec)")

    def stats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per band / coefficient / descriptor over the train split's ok clips."""
        import zarr

        if name not in normalised(self.spec):
            raise UserError(f"store {self.url} keeps no statistics for {name!r}")
        size_ = self.spec.feature(name).stats_size
        out = []
        for kind in ("mean", "std"):
            try:
                array = zarr.open_array(zarr_store(self.url, read_only=True), path=f"{name}_{kind}", mode="r")
            except FileNotFoundError:
                raise UserError(f"store {self.url} is not complete ({self.build_state}): re-run its build to "
                                "finish it") from None
            if array.shape != (size_,) or array.dtype != np.float32:
                raise StoreFormatError(f"{self.url}: array {name}_{kind} is {array.shape} {array.dtype}, not "
                                       f"({size_},) float32")
            out.append(array[:])
        return out[0], out[1]

    @cached_property
    def manifest(self) -> Any:
        """The manifest rows in store order, with `error` (None for ok and pending clips)."""
        table = read_manifest_copy(self.url, self.attrs).table
        error = table["error"]
        table["error"] = error.astype(object).where(error.notna(), None)  # None, not pandas' NaN, where none
        return table

    # --- what is committed -------------------------------------------------------------------------

    @property
    def status(self) -> np.ndarray:
        """Per-clip status as committed for every array of the store (see `status_for`)."""
        return self.status_for(self.spec.names)

    def status_for(self, arrays: Iterable[str]) -> np.ndarray:
        """Per-clip status as committed for `arrays`. A shard whose commit record does not cover
        its status and every one of these arrays, for its current clips and the arrays' recorded
        settings, counts as pending whatever its status array says: after an interrupted build,
        tasks that were still running may have written their shard without the driver ever
        committing it."""
        done = self.committed(arrays)
        status = self.array("status")[:] if "status" in self.state.arrays else np.zeros(self.n_clips, np.uint8)
        for index in range(self.layout.n_shards):
            if index not in done:
                start, stop = self.layout.shard_range(index)
                status[start:stop] = PENDING
        return status

    @cached_property
    def _valid(self) -> dict[int, frozenset[str]]:
        """The committed parts of every shard."""
        try:
            rows = shard_rows_hashes(self.manifest, self.layout)
        except UserError:  # no manifest copy yet (a build killed as it created the store): nothing is committed
            return {}
        return {i: self.state.valid(i, rows[i]) for i in range(self.layout.n_shards)}

    def committed(self, arrays: Iterable[str]) -> set[int]:
        """Shards whose status and `arrays` are committed, their files as written."""
        wanted = {CLIPS, *arrays}
        if any(a not in self.state.arrays for p in wanted for a in part_arrays(p)):
            return set()
        return {i for i, valid in self._valid.items() if wanted <= valid}

    @property
    def n_pending(self) -> int:
        return int(np.count_nonzero(self.status == PENDING))

    def ready(self, arrays: Iterable[str]) -> bool:
        """Whether `arrays` are committed in every shard and their statistics written: what
        training on them needs, while a build may be adding other arrays."""
        arrays = list(arrays)
        if len(self.committed(arrays)) < self.layout.n_shards:
            return False
        return all(a in self.attrs.stats_values for a in arrays if a in normalised(self.spec))


def open_store(url: str | os.PathLike[str]) -> Store:
    """Open a store read-only. A UserError if there is none at `url`; a StoreFormatError (one line
    naming the store and the field) if its metadata is damaged or was edited."""
    url = os.fspath(url)
    state = read_state(url)
    if state is None:
        raise UserError(f"{url}: not a feature store (no Zarr group there): build one with `featurestore build`")
    manifest_copy_array(url, state.attrs)  # its metadata checked now; its rows when first read
    return Store(state)


def manifest_copy_array(url: str, attrs: RootAttributes) -> Any:
    """The manifest copy's array, its metadata checked against the bytes stored; None when the
    store has none yet (a build killed as it created the store)."""
    import zarr

    name = attrs.manifest_copy
    if name is None:
        return None
    where = f"{url}: manifest copy {name}"
    try:
        array = zarr.open_array(zarr_store(url, read_only=True), path=name, mode="r")
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - crafted metadata, one line
        raise StoreFormatError(f"{where}: unreadable metadata ({type(exc).__name__})") from None
    held = size(join(url, name, "c", "0"))  # one chunk holds the whole Parquet file
    if (array.ndim != 1 or array.dtype != np.uint8 or array.compressors or held != array.shape[0]
            or array.chunks != array.shape):
        raise StoreFormatError(f"{where}: its metadata (shape {array.shape}, chunks {array.chunks}, {array.dtype}) "
                               f"does not describe the {held} bytes stored in one chunk")
    return array


def read_manifest_copy(url: str, attrs: RootAttributes) -> Any:
    """The manifest copy as a `manifests.Manifest`, checked against the store; a UserError when
    there is none yet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from manifests.io import from_arrow

    array = manifest_copy_array(url, attrs)
    if array is None:
        raise UserError(f"{url} has no manifest copy yet (its build stopped as it started): re-run the build")
    where = f"{url}: manifest copy {attrs.manifest_copy}"
    try:
        table = pq.read_table(io.BytesIO(array[:].tobytes()))
    except (pa.ArrowException, OSError) as exc:
        raise StoreFormatError(f"{where}: not a Parquet file ({' '.join(str(exc).split())[:200]})") from None
    if table.num_rows != attrs.n_clips:
        raise StoreFormatError(f"{where} has {table.num_rows} rows where the root attributes say n_clips "
                               f"{attrs.n_clips}")
    return from_arrow(table, where)


def read_rows(url: str, names: Iterable[str], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows start..stop-1 of arrays `names`, as readers get them, for a writer that already checked
    the store (a build task carrying stored rows over, the statistics of a finished build)."""
    import zarr

    store = zarr_store(url, read_only=True)
    return {name: FeatureArray(zarr.open_array(store, path=name, mode="r"))[start:stop] for name in names}
