"""The store's root attributes: one typed document, read once, checked, written whole.

The root group's `zarr.json` carries CF global attributes (`Conventions`, `title`, `source`) and
this package's attributes as one JSON string under `featurestore` (netCDF and
`xarray.Dataset.to_netcdf` accept no nested attribute values): the format version, the store's
id, its audio root, the spec, the manifest's hash and labels, the layout, the build state, the
library versions, each array's settings hash and when it was added, the current manifest copy
and how many values the statistics cover. A finished build adds consolidated metadata beside
them. This module alone reads and writes that document.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator

from featurestore.errors import StoreFormatError, UserError
from featurestore.locations import join, read_bytes, write_bytes
from featurestore.settings import FORBID, Field, dump, parse
from featurestore.spec import FeatureSpec
from featurestore.store.commits import Count, Hex16, Hex32, Hex64, part_hashes
from featurestore.store.layout import ATTRS_KEY, MANIFEST_DIR, MAX_CLIPS, Layout, normalised

FORMAT_VERSION = 4
MANIFEST_COPY = rf"^{MANIFEST_DIR}/parquet-[0-9a-f]{{16}}$"


def _spec(document: Any) -> FeatureSpec:
    if isinstance(document, FeatureSpec):
        return document
    try:
        return FeatureSpec.from_dict(document, "spec")
    except UserError as exc:
        raise ValueError(str(exc)) from None


Spec = Annotated[FeatureSpec, PlainValidator(_spec), PlainSerializer(lambda spec: spec.to_dict())]


@dataclass(frozen=True)
class ArrayRecord:
    """What the root attributes say of one array: its settings hash and when it was added."""

    __pydantic_config__ = FORBID
    hash: Hex16
    added: Annotated[str, Field(max_length=64)]


@dataclass(frozen=True)
class RootAttributes:
    __pydantic_config__ = FORBID
    format_version: Literal[4]
    store_id: Hex32  # commit records name the store they belong to
    audio_root: Annotated[str, Field(max_length=4096)]
    spec: Spec
    manifest_hash: Hex64
    dataset: Annotated[str, Field(max_length=1000)]
    labels: Annotated[tuple[str, ...], Field(max_length=100_000)]
    n_clips: Annotated[int, Field(ge=1, le=MAX_CLIPS)]
    chunk_clips: Annotated[int, Field(ge=1, le=4096)]
    shard_clips: Annotated[int, Field(ge=1, le=2**16)]
    build_state: Literal["building", "complete"]
    arrays: dict[str, ArrayRecord]
    versions: dict[str, str] = field(default_factory=dict)
    manifest_copy: Annotated[str, Field(pattern=MANIFEST_COPY)] | None = None
    stats_values: dict[str, Count] = field(default_factory=dict)  # values each array's statistics cover

    @property
    def layout(self) -> Layout:
        return Layout(self.n_clips, self.chunk_clips, self.shard_clips)

    def check(self, where: str) -> None:
        """Refuse what no build writes: fields that disagree with each other."""
        if self.shard_clips % self.chunk_clips:
            raise StoreFormatError(f"{where}: shard_clips {self.shard_clips} is not a multiple of chunk_clips "
                                   f"{self.chunk_clips}")
        names = set(self.spec.names)
        if set(self.arrays) != names:
            raise StoreFormatError(f"{where}: arrays lists {', '.join(sorted(self.arrays))} where the spec has "
                                   f"{', '.join(self.spec.names)}")
        hashes = part_hashes(self.spec)
        stale = [n for n in self.spec.names if self.arrays[n].hash != hashes[n]]
        if stale:
            raise StoreFormatError(f"{where}: arrays.{stale[0]}.hash is not the hash of its settings in the spec")
        if not set(self.stats_values) <= set(normalised(self.spec)):
            raise StoreFormatError(f"{where}: stats_values names arrays without statistics")
        if len(set(self.labels)) != len(self.labels):
            raise StoreFormatError(f"{where}: labels repeats a label")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def root_url(url: str) -> str:
    return join(url, "zarr.json")


def root_document(attrs: RootAttributes, consolidated: dict[str, Any] | None = None) -> bytes:
    """The root group's `zarr.json`: CF global attributes, this package's as one JSON string."""
    from featurestore import __version__

    document = {"zarr_format": 3, "node_type": "group", "attributes": {
        "Conventions": "CF-1.11", "title": f"featurestore features of {attrs.dataset}",
        "source": f"featurestore {__version__}", ATTRS_KEY: json.dumps(dump(attrs))}}
    if consolidated is not None:
        document["consolidated_metadata"] = consolidated
    return json.dumps(document, indent=1).encode()


def write_root(url: str, attrs: RootAttributes, consolidated: dict[str, Any] | None = None) -> None:
    write_bytes(root_url(url), root_document(attrs, consolidated))


def read_root(url: str) -> dict[str, Any] | None:
    """The root `zarr.json` as JSON; None when there is none, or it is not a Zarr group's document
    (what `--overwrite` may not replace is decided by the caller)."""
    data = read_bytes(root_url(url))
    if data is None:
        return None
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) and document.get("node_type") == "group" else None


def package_attributes(document: dict[str, Any], where: str) -> dict[str, Any] | None:
    """This package's attributes in a root document, as JSON (None: the group is no feature store)."""
    value = (document.get("attributes") or {}).get(ATTRS_KEY) if isinstance(document.get("attributes"), dict) else None
    if value is None:
        return None
    try:
        value = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise StoreFormatError(f"{where}: the {ATTRS_KEY!r} attribute is not JSON") from None
    if not isinstance(value, dict):
        raise StoreFormatError(f"{where}: the {ATTRS_KEY!r} attribute is not a JSON object")
    return value


def parse_attributes(value: dict[str, Any], where: str) -> RootAttributes:
    attrs = parse(RootAttributes, value, where, StoreFormatError)
    attrs.check(where)
    return attrs
