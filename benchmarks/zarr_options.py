"""Write and read one feature array under a given codec and chunk/shard shape, and time it.

The arrays are laid out like the store's (clip axis first, chunks of a few clips inside shards
of many), written shard by shard as the build does, so bytes and speeds transfer to the store.
Reads hit a warm page cache: they measure Zarr plus decompression, not the disk.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurestore.codecs import ArrayCodec


@dataclass(frozen=True)
class Layout:
    label: str
    encoding: Callable[[], ArrayCodec]  # fresh codec objects per array
    chunk: int  # clips per chunk
    shard: int  # clips per shard


@dataclass(frozen=True)
class Timing:
    stored_bytes: int
    write_s: float
    seq_read_s: float
    random_read_s: float


def stored_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def write_array(path: Path, data: np.ndarray, layout: Layout):
    import zarr
    from zarr.storage import LocalStore

    encoding = layout.encoding()
    arr = zarr.create_array(
        LocalStore(path), name="x", shape=data.shape, dtype=encoding.stored,
        chunks=(layout.chunk, *data.shape[1:]), shards=(layout.shard, *data.shape[1:]),
        compressors=list(encoding.compressors), attributes=encoding.attributes(), overwrite=True,
    )
    for i in range(0, len(data), layout.shard):
        arr[i : i + layout.shard] = encoding.encode(data[i : i + layout.shard])
    return arr


def measure(path: Path, data: np.ndarray, layout: Layout, random_clips: np.ndarray) -> tuple[Timing, np.ndarray]:
    """Write `data`, read it back in shard order and clip by clip at random; return what was read."""
    import zarr
    from zarr.storage import LocalStore

    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    write_array(path, data, layout)
    t1 = time.perf_counter()
    from featurestore.codecs import decode

    arr = zarr.open_array(LocalStore(path, read_only=True), path="x")
    packing = dict(arr.attrs)
    back = np.concatenate([decode(arr[i : i + layout.shard], packing) for i in range(0, len(data), layout.shard)])
    t2 = time.perf_counter()
    for i in random_clips:
        arr[int(i)]
    t3 = time.perf_counter()
    return Timing(stored_bytes(path), t1 - t0, t2 - t1, t3 - t2), back
