"""Where things sit in a store: its arrays, how the clip axis is cut, and the nodes' names.

Every per-clip array has the clip as its first axis (manifest order), chunks of `chunk_clips`
clips for random access and shards of `shard_clips` clips as the unit of writing: a build task
writes whole shards only, because the sharding codec loses data when two writers share a shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from featurestore.locations import join
from featurestore.spec import FeatureSpec

PENDING, OK, FAILED = 0, 1, 2
STATUS_FLAGS = {"flag_values": [PENDING, OK, FAILED], "flag_meanings": "pending ok failed"}
ATTRS_KEY = "featurestore"  # this package's attributes in a node's zarr.json
CLIPS = "clips"  # the commit-record part for status and length: the decoding of each clip
CLIP_ARRAYS = ("status", "length")  # the arrays of that part
MANIFEST_DIR = "manifest"
COMMITS_DIR = "commits"
COORDINATES = ("clip", "split", "labels")  # per-clip coordinates, from the manifest copy
CHUNK_CLIPS = 8
MAX_SHARD_CLIPS = 512
MAX_SHARD_BYTES = 64 * 2**20  # of the largest array, before compression
MAX_CLIPS = 2**31 - 1


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
    """The per-clip arrays a spec implies: its arrays (as each feature kind declares), then
    `status` and `length`."""
    arrays = {}
    for name in spec.names:
        feature = spec.feature(name)
        arrays[name] = ClipArray(name, ("clip", *feature.dims), feature.clip_shape(), feature.dtype)
    arrays["status"] = ClipArray("status", ("clip",), (), "uint8")
    arrays["length"] = ClipArray("length", ("clip",), (), "int64")
    return arrays


def normalised(spec: FeatureSpec) -> dict[str, int]:
    """The arrays the store keeps normalisation statistics for, each with the axis of its
    (clip, ...) array that the statistics keep."""
    return {name: f.stats_axis for name in spec.names if (f := spec.feature(name)).normalised}


def part_arrays(part: str) -> tuple[str, ...]:
    """The arrays a commit-record part covers."""
    return CLIP_ARRAYS if part == CLIPS else (part,)


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

    def describe(self, index: int) -> str:
        start, stop = self.shard_range(index)
        return f"{shard_name(index)} (clips {start}-{stop - 1})"


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


def shard_object(url: str, name: str, index: int, ndim: int) -> str:
    """The object holding shard `index` of an array (shards span every other dimension whole)."""
    return join(url, name, "c", str(index), *["0"] * (ndim - 1))
