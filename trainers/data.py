"""Datasets over a feature store: a streaming one for training and a map-style one for evaluation.

Both read whole runs of consecutive clips with one Zarr call per array (Zarr costs about a
millisecond per call, a clip costs microseconds), and hand the raw stored dtype (float16
spectrograms and waveforms) to the device, where `trainers.inputs` normalises and augments.
Each process opens the store itself, so DataLoader workers never share a handle.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, default_collate, get_worker_info

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

    def __init__(self, source: Source, with_segments: bool):
        self.source, self.with_segments = source, with_segments
        self._pid, self._arrays = None, None

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Clips start..stop-1 of every array, one Zarr call each; with `valid` segments for descriptors."""
        if self._pid != os.getpid():
            from featurestore.store import open_store

            store = open_store(self.source.url)
            names = self.source.arrays + (("length",) if self.with_segments else ())
            self._arrays, self._pid = {n: store.array(n) for n in names}, os.getpid()
        block = {name: arr[start:stop] for name, arr in self._arrays.items()}
        if self.with_segments:
            block["valid"] = valid_segments(block.pop("length"), self.source.spec)
        return block


def _has_segments(source: Source) -> bool:
    """Whether a feature of the source is one row per segment (its decoded segments are then marked)."""
    return any(source.spec.feature(name).layout == "segments" for name in source.arrays)


# A sample: (block read by _Reader, row in the block, segment or None for the whole clip, store position).
Sample = tuple[dict[str, np.ndarray], int, int | None, int]


def _samples(block: dict[str, np.ndarray], start: int, positions: np.ndarray, explode_segments: bool) -> list[Sample]:
    if not explode_segments:
        return [(block, int(p - start), None, int(p)) for p in positions]
    valid = block["valid"]
    return [(block, int(p - start), int(s), int(p)) for p in positions for s in np.flatnonzero(valid[p - start])]


def _collate(source: Source, samples: list[Sample]) -> dict[str, Any]:
    """One batch. Features are stacked by `default_collate`, which inside a DataLoader worker writes
    them straight into shared memory; targets, positions and segment masks stay NumPy arrays,
    pickled inline, which costs less than a shared-memory segment each (`Loader` makes them tensors)."""
    batch: dict[str, Any] = {}
    for name in source.arrays:
        rows = [block[name][j] if s is None else block[name][j, s] for block, j, s, _ in samples]
        batch[name] = default_collate([torch.from_numpy(r) for r in rows])
    index = np.array([p for *_, p in samples], dtype=np.int64)
    batch["index"], batch["y"] = index, source.targets[index]
    if "valid" in samples[0][0] and samples[0][2] is None:
        batch["valid"] = np.stack([block["valid"][j] for block, j, _, _ in samples])
    return batch


def _partition(rank: int | None, world: int) -> tuple[int, int]:
    """(this reader's slot, number of readers) over distributed ranks × DataLoader workers."""
    if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank = rank or 0
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


class StreamingDataset(IterableDataset):
    """Each epoch: the blocks holding the split's clips in a new random order, dealt round-robin to
    workers and ranks, read whole, and their clips shuffled through a buffer, in batches.

    A block is `block_clips` consecutive store positions, aligned to the store's chunks so a read
    never splits a chunk; each clip of `source.indices` lies in exactly one block, so each is
    seen exactly once per epoch across all readers. Call `set_epoch` before iterating: the epoch
    lives in shared memory, so persistent DataLoader workers see it too. `rank` and `world_size`
    default to torch.distributed's when it is initialised. Batches are made in the reader
    (`batch_size`, set by `batched`), so a worker hands over one message per batch.
    """

    batch_size = 1

    def __init__(self, source: Source, *, block_clips: int, buffer_clips: int, seed: int,
                 explode_segments: bool = False, rank: int | None = None, world_size: int | None = None):
        self.source, self.block_clips, self.buffer_clips = source, block_clips, buffer_clips
        self.rank, self.world_size = rank, world_size or 1
        self.seed, self.explode_segments = seed, explode_segments
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.reader = _Reader(source, with_segments=_has_segments(source))
        self.blocks = np.unique(source.indices // block_clips)
        if explode_segments:
            from featurestore.store import open_store

            length = open_store(source.url).array("length")[:]
            self.n_samples = int(valid_segments(length[source.indices], source.spec).sum())
        else:
            self.n_samples = len(source.indices)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def batched(self, batch_size: int) -> StreamingDataset:
        clone = copy.copy(self)
        clone.batch_size = batch_size
        return clone

    def __len__(self) -> int:
        """Samples per epoch, over all readers (clips, or their decoded segments)."""
        return self.n_samples

    def _shuffled(self) -> Iterator[Sample]:
        slot, slots, epoch = *_partition(self.rank, self.world_size), int(self._epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.blocks)
        rng = np.random.default_rng([self.seed, epoch, slot, 1])
        indices, buffer = self.source.indices, []
        for block in order[slot::slots]:
            lo, hi = np.searchsorted(indices, [block * self.block_clips, (block + 1) * self.block_clips])
            positions = indices[lo:hi]
            start = int(positions[0])
            buffer += _samples(self.reader.read(start, int(positions[-1]) + 1), start, positions,
                               self.explode_segments)
            while len(buffer) > self.buffer_clips:
                k = rng.integers(len(buffer))
                buffer[k], buffer[-1] = buffer[-1], buffer[k]
                yield buffer.pop()
        for k in rng.permutation(len(buffer)):
            yield buffer[k]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        batch = []
        for sample in self._shuffled():
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield _collate(self.source, batch)
                batch = []
        if batch:
            yield _collate(self.source, batch)


class EvalDataset(Dataset):
    """Map-style, in store order; indexed by a list of positions (a BatchSampler's batch), it reads
    the whole batch with one call per array."""

    def __init__(self, source: Source):
        self.source = source
        self.reader = _Reader(source, with_segments=_has_segments(source))

    def __len__(self) -> int:
        return len(self.source.indices)

    def __getitem__(self, positions: list[int]) -> dict[str, Any]:
        clips = self.source.indices[np.asarray(positions)]
        start = int(clips.min())
        block = self.reader.read(start, int(clips.max()) + 1)
        return _collate(self.source, _samples(block, start, clips, explode_segments=False))
