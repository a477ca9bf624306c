"""Commit records: what a finished shard task wrote, and when that still counts.

Each shard's record is the attributes of a memberless group `commits/shard-NNNNN` (one
`zarr.json`, written atomically by the build driver alone, while it holds the store's lock).
It binds, per part (`clips` for status and length, then each array), the settings hash and the
content hash of what was written and the sizes of the shard objects it wrote, to the store
(`store_id`) and to the shard's clip ids and paths (`rows_hash`). A part counts as committed
only while all of these still match (`CommitRecord.valid_parts`): a deleted or truncated shard
file, other settings, other clips or another store make it pending again.

Array parts of normalised arrays carry float64 partial sums over the shard's train clips, from
which the statistics are combined without a second pass over the audio (`split_hash` says which
rows were train rows when they were summed).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from featurestore import codecs
from featurestore.errors import StoreFormatError
from featurestore.locations import join, read_bytes, sizes_under, write_bytes
from featurestore.settings import FORBID, Field, dump, parse
from featurestore.spec import FeatureSpec, digest
from featurestore.store.layout import ATTRS_KEY, CLIPS, COMMITS_DIR, Layout, part_arrays, shard_name

Hex16 = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[int, Field(ge=0, le=2**53)]
Bytes = Annotated[int, Field(ge=0)] | None  # a shard object's size; None where zarr wrote none (fill values only)
MAX_REASON = 2000  # characters of a failure reason


# --- what the parts must match ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def part_hashes(spec: FeatureSpec) -> dict[str, str]:
    """The settings hash of every part a store with `spec` holds: what its values depend on
    (computed once per spec; do not modify the dict)."""
    codec = codecs.parse(spec.codec)
    decoding = dump(spec.decoding)
    hashes = {CLIPS: digest({"decoding": decoding})}
    for name in spec.names:
        feature = spec.feature(name)
        hashes[name] = digest({"kind": feature.kind, "settings": dump(feature.settings), "decoding": decoding,
                               "encoding": codec.identity(feature)})
    return hashes


def inputs_hash(spec: FeatureSpec, arrays: Iterable[str]) -> str:
    """The identity of some arrays' values: equal in two stores whose arrays have the same settings
    (whatever their format), so a run trained on one can be evaluated on the other."""
    hashes = part_hashes(spec)
    return digest({a: hashes[a] for a in arrays})


def rows_hash(clip_ids: Iterable[str], paths: Iterable[str]) -> str:
    """The identity of a run of rows: their clip ids and paths (not labels or splits, which may change)."""
    h = hashlib.sha256()
    for clip_id, path in zip(clip_ids, paths):
        h.update(f"{clip_id}\0{path}\n".encode())
    return h.hexdigest()[:16]


def shard_rows_hashes(table: Any, layout: Layout) -> list[str]:
    ids, paths = table["clip_id"].astype(str).tolist(), table["path"].astype(str).tolist()
    return [rows_hash(ids[a:b], paths[a:b]) for a, b in map(layout.shard_range, range(layout.n_shards))]


def split_hash(train: np.ndarray) -> str:
    """Which rows of a shard are train rows: what its statistics' partial sums depend on."""
    train = np.asarray(train, dtype=bool)
    return hashlib.sha256(np.packbits(train).tobytes() + str(len(train)).encode()).hexdigest()[:16]


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a shard's values as readers get them (name, dtype, shape and bytes of each array)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sums:
    """float64 sums over a shard's train clips, per kept index of the statistics' dimension."""

    __pydantic_config__ = FORBID
    sum: tuple[float, ...]
    sumsq: tuple[float, ...]
    count: Count


@dataclass(frozen=True)
class ClipBytes:
    __pydantic_config__ = FORBID
    status: Bytes
    length: Bytes


@dataclass(frozen=True)
class ClipsPart:
    """Status and length of every clip of the shard; the failure reasons by row offset."""

    __pydantic_config__ = FORBID
    settings_hash: Hex16
    hash: Hex64
    ok: Count
    failed: Count
    bytes: ClipBytes
    errors: dict[str, Annotated[str, Field(max_length=MAX_REASON)]] = field(default_factory=dict)

    def written(self, array: str) -> int | None:
        return getattr(self.bytes, array)


@dataclass(frozen=True)
class ArrayPart:
    """One array's values of the shard."""

    __pydantic_config__ = FORBID
    settings_hash: Hex16
    hash: Hex64
    bytes: Bytes
    stats: Sums | None = None  # normalised arrays only
    split_hash: Hex16 | None = None  # the train rows `stats` summed

    def written(self, array: str) -> int | None:  # noqa: ARG002 - one array per part
        return self.bytes


@dataclass(frozen=True)
class Expected:
    """What a commit record must match to count: this very store (not one it replaced, nor a copy
    of another), the settings of every part, and the shard files as they are on disk."""

    store_id: str | None
    hashes: dict[str, str]
    sizes: dict[int, dict[str, int]]  # shard -> array -> bytes of its shard object (absent: none)


@dataclass(frozen=True)
class CommitRecord:
    __pydantic_config__ = FORBID
    shard: Annotated[int, Field(ge=0)]
    store_id: Hex32
    start: Annotated[int, Field(ge=0)]
    stop: Annotated[int, Field(ge=1)]
    rows_hash: Hex16
    clips: ClipsPart | None = None
    arrays: dict[str, ArrayPart] = field(default_factory=dict)

    def parts(self) -> dict[str, ClipsPart | ArrayPart]:
        return {**({CLIPS: self.clips} if self.clips is not None else {}), **self.arrays}

    def content_hash(self) -> str:
        """One hash over the parts' content hashes (what two stores compare, shard by shard)."""
        return digest({p: entry.hash for p, entry in self.parts().items()})

    def valid_parts(self, expected: Expected, start: int, stop: int, rows: str) -> frozenset[str]:
        """The parts that still describe rows start..stop-1 as they are now: same store, clips and
        settings, and every shard object the part wrote still there, of the size it wrote."""
        if self.store_id != expected.store_id or (self.start, self.stop) != (start, stop) or self.rows_hash != rows:
            return frozenset()
        files = expected.sizes.get(self.shard, {})
        return frozenset(part for part, entry in self.parts().items()
                         if expected.hashes.get(part) == entry.settings_hash
                         and all(files.get(a) == entry.written(a) for a in part_arrays(part)))

    def check(self, where: str, layout: Layout, stats_sizes: dict[str, int]) -> None:
        """Refuse a record no build writes: rows outside its shard, counts or reasons for other
        rows, statistics of another length."""
        start, stop = layout.shard_range(self.shard) if self.shard < layout.n_shards else (None, None)
        if start is None or self.start != start or not start < self.stop <= start + layout.shard_clips:
            raise StoreFormatError(f"{where}: rows {self.start}-{self.stop - 1} are not in {shard_name(self.shard)} "
                                   f"of {layout.n_clips} clips in shards of {layout.shard_clips}")
        n = self.stop - self.start
        if self.clips is not None:
            if self.clips.ok + self.clips.failed != n:
                raise StoreFormatError(f"{where}: clips.ok + clips.failed is {self.clips.ok + self.clips.failed}, "
                                       f"the record covers {n} clips")
            bad = [k for k in self.clips.errors if not (k.isdigit() and int(k) < n)]
            if bad or len(self.clips.errors) > self.clips.failed:
                raise StoreFormatError(f"{where}: clips.errors names rows the record does not hold ({bad[:1] or '...'})")
        for name, part in self.arrays.items():
            if part.stats is None:
                continue
            size = stats_sizes.get(name)
            if size is None or len(part.stats.sum) != size or len(part.stats.sumsq) != size:
                raise StoreFormatError(f"{where}: arrays.{name}.stats has {len(part.stats.sum)} sums where the "
                                       f"array keeps {size}")


def record_url(url: str, index: int) -> str:
    """The `zarr.json` of the memberless group whose attributes are the shard's record."""
    return join(url, COMMITS_DIR, shard_name(index), "zarr.json")


def write_record(url: str, record: CommitRecord) -> None:
    meta = {"zarr_format": 3, "node_type": "group", "attributes": {ATTRS_KEY: dump(record)}}
    write_bytes(record_url(url, record.shard), json.dumps(meta, sort_keys=True).encode())


def read_documents(url: str, files: Iterable[str] | None = None) -> dict[int, Any]:
    """Every commit record's attributes by shard index, as JSON values: one read each of the
    records among `files` (the store's files, relative to it; default: a listing of `commits/`).
    A document that is not a record group is refused, naming it."""
    if files is None:
        files = [f"{COMMITS_DIR}/{key}" for key in sizes_under(join(url, COMMITS_DIR))]
    documents = {}
    for key in files:
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != COMMITS_DIR or parts[2] != "zarr.json":
            continue  # the group's own zarr.json, a writer's temporary
        name = parts[1]
        where = f"{url}: commit record {COMMITS_DIR}/{name}"
        if not (name.startswith("shard-") and name[6:].isdigit() and len(name) == 11):
            raise StoreFormatError(f"{where}: not a shard's record name; delete it")
        data = read_bytes(join(url, key))
        if data is None:  # removed since the listing
            continue
        try:
            documents[int(name[6:])] = json.loads(data or b"")["attributes"][ATTRS_KEY]
        except (ValueError, KeyError, TypeError):
            raise StoreFormatError(f"{where}: not a commit record (unreadable JSON or no {ATTRS_KEY!r} attributes); "
                                   "delete that folder to have the next build redo the shard") from None
    return documents


def parse_record(document: Any, index: int, where: str) -> CommitRecord:
    record = parse(CommitRecord, document, where, StoreFormatError)
    if record.shard != index:
        raise StoreFormatError(f"{where}: shard: the record says {record.shard}, its folder {index}")
    return record
