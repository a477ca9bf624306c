"""Datasets over a feature store: a streaming one for training and a map-style one for evaluation.

Both read whole runs of consecutive clips with one Zarr call per array (Zarr costs about a
millisecond per call, a clip costs microseconds), and hand the raw stored dtype (float16
spectrograms and waveforms) to the device, where `trainers.inputs` normalises and augments.
Each process opens the store itself, so DataLoader workers never share a handle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from featurestore.spec import FeatureSpec
from trainers.inputs import valid_segments


def label_matrix(labels_column, vocabulary: list[str]) -> np.ndarray:
    """Multi-hot (clips, classes) float32 targets from the manifest's `labels` lists."""
    position = {label: i for i, label in enumerate(vocabulary)}
    y = np.zeros((len(labels_column), len(vocabulary)), dtype=np.float32)
    for row, labels in enumerate(labels_column):
        for label in labels:
            y[row, position[label]] = 1.0
    return y


def split_indices(manifest, usable: np.ndarray, splits: tuple[str, ...]) -> np.ndarray:
    """Store positions of the `usable` clips in `splits`, in store order."""
    return np.flatnonzero(manifest["split"].isin(splits).to_numpy() & usable)


@dataclass(frozen=True)
class Source:
    """What to read: a store, the arrays, the clips (sorted store positions) and every clip's targets."""

    url: str
    arrays: tuple[str, ...]
    indices: np.ndarray
    targets: np.ndarray  # (all clips in the store, classes)
    spec: FeatureSpec


class _Reader:
    """Opens the store lazily, once per process (after a fork or spawn, the child reopens)."""

    def __init__(self, source: Source, with_length: bool):
        self.source, self.with_length = source, with_length
        self._pid, self._arrays = None, None

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Clips start..stop-1 of every array: one Zarr call each."""
        if self._pid != os.getpid():
            from featurestore.store import open_store

            store = open_store(self.source.url)
            names = self.source.arrays + (("length",) if self.with_length else ())
            self._arrays, self._pid = {n: store.array(n) for n in names}, os.getpid()
        return {name: arr[start:stop] for name, arr in self._arrays.items()}


def _items(source: Source, block: dict[str, np.ndarray], start: int, positions: np.ndarray,
           explode_segments: bool) -> list[dict]:
    """Per-sample dicts (views into the block) for clips at store `positions` of a block read from `start`."""
    items = []
    valid = valid_segments(block["length"], source.spec) if "length" in block else None
    for pos in positions:
        j = pos - start
        base = {"index": int(pos), "y": source.targets[pos]}
        if explode_segments:
            items += [{**base, "handcrafted": block["handcrafted"][j, s]} for s in np.flatnonzero(valid[j])]
            continue
        item = {**base, **{name: block[name][j] for name in source.arrays}}
        if valid is not None:
            item["valid"] = valid[j]
        items.append(item)
    return items


def _partition(rank: int | None, world: int | None) -> tuple[int, int]:
    """(this reader's slot, number of readers) over distributed ranks × DataLoader workers."""
    if rank is None:
        initialized = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if initialized else (0, 1)
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


class StreamingDataset(IterableDataset):
    """Each epoch: the blocks holding the split's clips in a new random order, dealt round-robin to
    workers and ranks, read whole, and their clips shuffled through a buffer.

    A block is `block_clips` consecutive store positions, aligned to the store's chunks so a read
    never splits a chunk; each clip of `source.indices` lies in exactly one block, so each is
    seen exactly once per epoch across all readers. Call `set_epoch` before iterating. `rank` and
    `world_size` default to torch.distributed's when it is initialised.
    """

    def __init__(self, source: Source, *, block_clips: int, buffer_clips: int, seed: int,
                 explode_segments: bool = False, rank: int | None = None, world_size: int | None = None):
        self.source, self.block_clips, self.buffer_clips = source, block_clips, buffer_clips
        self.rank, self.world_size = rank, (world_size or 1) if rank is not None else None
        self.seed, self.explode_segments, self.epoch = seed, explode_segments, 0
        self.reader = _Reader(source, with_length=explode_segments or "handcrafted" in source.arrays)
        self.blocks = np.unique(source.indices // block_clips)
        if explode_segments:
            from featurestore.store import open_store

            length = open_store(source.url).array("length")[:]
            self.n_samples = int(valid_segments(length[source.indices], source.spec).sum())
        else:
            self.n_samples = len(source.indices)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_samples

    def __iter__(self):
        slot, slots = _partition(self.rank, self.world_size)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.blocks)
        rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
        indices, buffer = self.source.indices, []
        for block in order[slot::slots]:
            lo, hi = np.searchsorted(indices, [block * self.block_clips, (block + 1) * self.block_clips])
            positions = indices[lo:hi]
            start = int(positions[0])
            data = self.reader.read(start, int(positions[-1]) + 1)
            buffer += _items(self.source, data, start, positions, self.explode_segments)
            while len(buffer) > self.buffer_clips:
                k = rng.integers(len(buffer))
                buffer[k], buffer[-1] = buffer[-1], buffer[k]
                yield buffer.pop()
        for k in rng.permutation(len(buffer)):
            yield buffer[k]


class EvalDataset(Dataset):
    """Map-style, in store order; `__getitems__` lets the DataLoader fetch a whole batch in one read."""

    def __init__(self, source: Source):
        self.source = source
        self.reader = _Reader(source, with_length="handcrafted" in source.arrays)

    def __len__(self) -> int:
        return len(self.source.indices)

    def __getitems__(self, positions: list[int]) -> list[dict]:
        clips = self.source.indices[np.asarray(positions)]
        start = int(clips.min())
        data = self.reader.read(start, int(clips.max()) + 1)
        return _items(self.source, data, start, clips, explode_segments=False)

    def __getitem__(self, position: int) -> dict:
        return self.__getitems__([position])[0]
