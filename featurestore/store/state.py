"""What a store holds now, read once and checked: the root attributes, each array's metadata,
the commit records and the sizes of the shard objects.

A build reads this once, under the store's lock, and plans from it; a reader (`open_store`)
reads the same once and answers every question from it. Whatever was edited behind the
package's back is refused here, in one line naming the store and the field: attributes of the
wrong type or out of range, arrays whose metadata disagree with the attributes, commit records
for rows their shard does not hold, consolidated metadata describing other arrays. Nothing is
read from an array before its metadata has been checked, so no read allocates more than the
store's own attributes and files justify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurestore import codecs
from featurestore.errors import StoreFormatError, UserError
from featurestore.locations import is_temporary, sizes_under, zarr_store
from featurestore.spec import FeatureSpec
from featurestore.store import legacy
from featurestore.store.attrs import (FORMAT_VERSION, RootAttributes, package_attributes, parse_attributes,
                                      read_root)
from featurestore.store.commits import CommitRecord, Expected, parse_record, part_hashes, read_documents
from featurestore.store.layout import ATTRS_KEY, ClipArray, Layout, clip_arrays, normalised


class NotAStore(UserError):
    """A folder that holds something, but no feature store."""


@dataclass
class StoreState:
    url: str
    attrs: RootAttributes
    records: dict[int, CommitRecord]
    sizes: dict[int, dict[str, int]]  # shard -> array -> bytes of its shard object
    arrays: dict[str, Any]  # per-clip array -> its zarr array (read-only), checked; absent: not created yet
    consolidated: bool = False  # the root document carries consolidated metadata
    upgraded_from: int | None = None  # the format the attributes and records were converted from
    temporaries: tuple[str, ...] = ()  # what killed writers left behind (keys relative to the store)

    @property
    def spec(self) -> FeatureSpec:
        return self.attrs.spec

    @property
    def layout(self) -> Layout:
        return self.attrs.layout

    @property
    def hashes(self) -> dict[str, str]:
        return part_hashes(self.spec)

    def expected(self) -> Expected:
        return Expected(self.attrs.store_id, self.hashes, self.sizes)

    def valid(self, index: int, rows: str) -> frozenset[str]:
        """The committed parts of shard `index`, whose rows now hash to `rows`."""
        record = self.records.get(index)
        if record is None:
            return frozenset()
        return record.valid_parts(self.expected(), *self.layout.shard_range(index), rows)


def has_store(url: str) -> bool:
    """Whether `url` holds a feature store's root group (whole, half-built or damaged): what
    --overwrite may replace."""
    document = read_root(url)
    return document is not None and ATTRS_KEY in (document.get("attributes") or {})


def read_state(url: str, *, growing: bool = False) -> StoreState | None:
    """The store at `url`; None when nothing is there (no root document). `growing`: a build may
    find arrays shorter than the attributes say (it resizes them)."""
    document = read_root(url)
    if document is None:
        return None
    where = f"{url}"
    value = package_attributes(document, where)
    if value is None:
        raise NotAStore(f"{url}: a Zarr group, but not a feature store (no {ATTRS_KEY!r} attributes)")
    version = value.get("format_version")
    files = sizes_under(url)  # the store's one listing: records, shard objects, temporaries
    documents = read_documents(url, files)
    upgraded = None
    if version == legacy.FORMAT:
        attrs, records = legacy.convert(value, documents, where)
        upgraded = legacy.FORMAT
    elif version == FORMAT_VERSION:
        attrs = parse_attributes(value, f"{where}: root attributes")
        records = {i: parse_record(d, i, f"{url}: commit record {i}") for i, d in documents.items()}
    elif isinstance(version, int) and version > FORMAT_VERSION:
        raise StoreFormatError(f"{url} has store format {version}, written by a newer featurestore: upgrade this "
                               "one to read it")
    else:
        raise StoreFormatError(f"{url} has store format {version!r}, from before the formats this version reads "
                               f"({legacy.FORMAT}, {FORMAT_VERSION}): rebuild it with `featurestore build ... "
                               "--overwrite`")
    spec = attrs.spec
    stats_sizes = {name: spec.feature(name).stats_size for name in normalised(spec)}
    for index, record in records.items():
        record.check(f"{url}: commit record {index}", attrs.layout, stats_sizes)
    arrays = _open_arrays(url, attrs, growing)
    sizes = _shard_sizes(files, clip_arrays(spec))
    consolidated = _check_consolidated(document, arrays, url)
    return StoreState(url, attrs, records, sizes, arrays, consolidated, upgraded,
                      tuple(key for key in files if is_temporary(key)))


def _open_arrays(url: str, attrs: RootAttributes, growing: bool) -> dict[str, Any]:
    """Each per-clip array that exists, its metadata checked against the attributes."""
    import zarr

    codec = codecs.parse(attrs.spec.codec)
    store = zarr_store(url, read_only=True)
    found = {}
    for name, expected in clip_arrays(attrs.spec).items():
        where = f"{url}: array {name}"
        try:
            array = zarr.open_array(store, path=name, mode="r")
        except FileNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - whatever zarr makes of crafted metadata, one line
            raise StoreFormatError(f"{where}: unreadable metadata ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:200]})") from None
        stored = codec.for_array(attrs.spec.feature(name) if name in attrs.spec.arrays else expected).stored
        rows = tuple(array.shape[1:]) if array.ndim else ()
        wanted = {"dims": (expected.clip_shape, rows), "dtype": (stored, str(array.dtype)),
                  "chunks": ((attrs.chunk_clips, *expected.clip_shape), tuple(array.chunks)),
                  "shards": ((attrs.shard_clips, *expected.clip_shape), tuple(array.shards or ()))}
        for what, (want, got) in wanted.items():
            if want != got:
                raise StoreFormatError(f"{where}: its metadata says {what} {got}, the attributes imply {want}")
        if array.shape[0] != attrs.n_clips and not (growing and array.shape[0] < attrs.n_clips):
            raise StoreFormatError(f"{where} holds {array.shape[0]} clips where the root attributes say n_clips "
                                   f"{attrs.n_clips}: re-run the store's build to finish it")
        found[name] = array
    return found


def _shard_sizes(files: dict[str, int], arrays: dict[str, ClipArray]) -> dict[int, dict[str, int]]:
    """Bytes of every shard object by shard and array, from the store's listing."""
    sizes: dict[int, dict[str, int]] = {}
    for key, size in files.items():
        name, _, rest = key.partition("/c/")
        parts = rest.split("/")
        if name in arrays and rest and all(p.isdigit() for p in parts):  # not a writer's temporary
            sizes.setdefault(int(parts[0]), {})[name] = size
    return sizes


def _check_consolidated(document: dict[str, Any], arrays: dict[str, Any], url: str) -> bool:
    """Consolidated metadata, where present, must describe the arrays as they are."""
    snapshot = document.get("consolidated_metadata")
    if snapshot is None:
        return False
    where = f"{url}: consolidated metadata"
    nodes = snapshot.get("metadata") if isinstance(snapshot, dict) else None
    if not isinstance(nodes, dict) or not all(isinstance(n, dict) for n in nodes.values()):
        raise StoreFormatError(f"{where}: not a mapping of node documents; remove the consolidated_metadata key "
                               f"from {url}/zarr.json, or rebuild with --overwrite")
    for name, array in arrays.items():
        node = nodes.get(name)
        if node is not None and (node.get("shape") != list(array.shape)
                                 or node.get("data_type") != str(array.dtype)):
            raise StoreFormatError(f"{where}: describes array {name} as {node.get('shape')} "
                                   f"{node.get('data_type')}, the array is {list(array.shape)} {array.dtype}; "
                                   f"remove the consolidated_metadata key from {url}/zarr.json")
    return True
