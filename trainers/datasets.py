"""PyTorch datasets over a feature store: what a user with their own training loop needs.

    ds = trainers.StoreDataset("s.zarr", split="train", feature="logmel", crop_frames=128)
    x, y = ds[0]          # float32, normalised by the train split's statistics; y over ds.classes
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)

- `StoreDataset` is map-style: any sampler, any batch size. A batch of random clips is read with
  one Zarr call per array (`__getitems__`), which reads only the chunks holding them.
- `StreamingStoreDataset` is iterable, for stores larger than memory: each epoch it reads whole
  runs of consecutive clips (aligned to the store's chunks) in a new order seeded by the epoch,
  shuffles clips through a bounded buffer, and deals the runs to DataLoader workers and
  distributed ranks so that each clip is seen once per epoch across all of them.

Both yield `(x, y)`: `x` the model input (a log-mel or MFCC window `(1, bands, frames)`, a
waveform window `(1, samples)`, a flat descriptor vector, or a tuple for `waveform+mfcc`),
cropped at random for training (`random_crop`, default: the train split) and at the centre
otherwise; `y` a float32 vector over `classes` (one-hot for single-label stores). Only clips
built ok and carrying a label for single-label stores are included. The CLI's trainers use the
same classes, reading raw batches (`batches`, `raw_batch`): the windows are cut in the loader
workers (`trainers.windows`), so only the bytes the model reads are copied, and normalised on
the training device. Each process opens the store itself, so DataLoader workers never share a
handle.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from featurestore.spec import FeatureSpec
from trainers.inputs import InputConfig, InputPipeline, valid_segments
from trainers.prepare import SPLITS, Source, open_data, require
from trainers.windows import Windows

TARGET_BLOCK_CLIPS = 128
BUFFER_BYTES = 128 * 2**20


def block_size(chunk_clips: int, shard_clips: int) -> int:
    """Whole chunks, dividing the shard so no block straddles two shards, about 128 clips per read."""
    for k in range(max(1, TARGET_BLOCK_CLIPS // chunk_clips), 0, -1):
        if shard_clips % (k * chunk_clips) == 0:
            return k * chunk_clips
    return chunk_clips


def buffer_size(spec: FeatureSpec, inputs: InputConfig, block: int) -> int:
    """Clips in a shuffle buffer of about 128 MB (at least two blocks, at most 4096 clips)."""
    per_clip = sum(f.clip_bytes for f in inputs.features(spec))
    return int(np.clip(BUFFER_BYTES // per_clip, 2 * block, 4096))


class _Reader:
    """Opens the store lazily, once per process (after a fork or spawn, the child reopens)."""

    def __init__(self, source: Source):
        self.source, self.segments = source, source.segments
        self._pid, self._arrays = None, None

    def _open(self) -> dict[str, Any]:
        if self._pid != os.getpid():
            from featurestore.store import open_store

            store = open_store(self.source.url)
            names = self.source.arrays + (("length",) if self.segments is not None else ())
            self._arrays, self._pid = {n: store.array(n) for n in names}, os.getpid()
        return self._arrays

    def _finish(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.segments is not None:
            block["valid"] = valid_segments(block.pop("length"), self.segments)
        return block

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Clips start..stop-1 of every array, one Zarr call each; with `valid` segments for descriptors."""
        return self._finish({name: arr[start:stop] for name, arr in self._open().items()})

    def take(self, positions: np.ndarray) -> dict[str, np.ndarray]:
        """The clips at sorted store positions, reading only the chunks that hold them."""
        return self._finish({name: arr.take(positions) for name, arr in self._open().items()})


# A sample: (block read by _Reader, row in the block, segment or None for the whole clip, store position).
Sample = tuple[dict[str, np.ndarray], int, int | None, int]


def _samples(block: dict[str, np.ndarray], start: int, positions: np.ndarray, explode_segments: bool) -> list[Sample]:
    if not explode_segments:
        return [(block, int(p - start), None, int(p)) for p in positions]
    valid = block["valid"]
    return [(block, int(p - start), int(s), int(p)) for p in positions for s in np.flatnonzero(valid[p - start])]


def _collate(source: Source, windows: Windows, samples: list[Sample], train: bool,
             rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
    """One raw batch: the windows the model reads (`trainers.windows`; `rng` draws training
    windows), the targets, the store positions (`index`) and, for descriptors evaluated per
    clip, the mask of decoded segments (`valid`). All tensors, so the DataLoader pins every one."""
    rows = {name: [block[name][j] if s is None else block[name][j, s] for block, j, s, _ in samples]
            for name in source.arrays}
    batch = windows(rows, train, rng)
    index = np.array([p for *_, p in samples], dtype=np.int64)
    batch["index"], batch["y"] = torch.from_numpy(index), torch.from_numpy(source.targets[index])
    if "valid" in samples[0][0] and samples[0][2] is None:
        batch["valid"] = torch.from_numpy(np.stack([block["valid"][j] for block, j, _, _ in samples]))
    return batch


def _partition(rank: int | None, world: int) -> tuple[int, int]:
    """(this reader's slot, number of readers) over distributed ranks × DataLoader workers."""
    if rank is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank = rank or 0
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


class _Transform:
    """One clip's raw rows -> the model input: the CLI's windows and input pipeline (crop,
    normalise) on a batch of one, on the CPU. Random windows come from torch's generator, which
    `torch.manual_seed` and the DataLoader's per-worker seeding control."""

    def __init__(self, spec: FeatureSpec, inputs: InputConfig, stats: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.windows = Windows(spec, inputs)
        self.pipeline = InputPipeline(spec, inputs)
        self.pipeline.set_stats(stats)
        self.arrays = inputs.arrays

    def __call__(self, rows: dict[str, np.ndarray], random: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()))) if random else None
        batch = self.windows({name: [rows[name]] for name in self.arrays}, random, rng)
        with torch.no_grad():
            x, _ = self.pipeline(batch, train=random)
        return tuple(t[0] for t in x) if isinstance(x, tuple) else x[0]


def _open(store: Any, split: str, feature: str, crop_frames: int | None, crop_samples: int | None,
          allow_partial: bool) -> tuple[Any, InputConfig]:
    """The store's training data for one input, checked (`trainers.prepare.open_data`)."""
    if split not in SPLITS:
        from featurestore.errors import UserError

        raise UserError(f"split {split!r}: choose from {', '.join(SPLITS)}")
    inputs = InputConfig(feature, crop_frames=crop_frames, crop_samples=crop_samples, segments=False)
    data = open_data(os.fspath(getattr(store, "url", store)), inputs, allow_partial=allow_partial)
    require(data.splits[split], split, data.url)
    return data, inputs


class StoreDataset(Dataset):
    """Map-style: `ds[i]` is `(x, y)` for the i-th usable clip of `split`, in store order.

    `store` is a path, URL or `featurestore.Store`; `feature` the array the model reads (or two
    joined by `+`); `crop_frames` / `crop_samples` the window length (None: whole clips);
    `random_crop` draws windows at random (default: for the train split), else takes the centre
    one. `classes` names the target vector's entries; `indices` are the clips' store positions.
    A store still being built is refused unless `allow_partial` (then its ok clips are read, with
    statistics over its ok train clips).
    """

    def __init__(self, store: Any, split: str = "train", feature: str = "logmel", *, crop_frames: int | None = None,
                 crop_samples: int | None = None, random_crop: bool | None = None, allow_partial: bool = False):
        data, inputs = _open(store, split, feature, crop_frames, crop_samples, allow_partial)
        self._setup(data.source(data.splits[split], inputs))
        self.classes = tuple(data.labels)
        self.random_crop = split == "train" if random_crop is None else random_crop
        self.transform = _Transform(data.spec, inputs, data.stats)

    @classmethod
    def over(cls, source: Source) -> StoreDataset:
        """A dataset of raw batches (`raw_batch`, evaluation views) over `source`: the CLI's evaluation."""
        dataset = cls.__new__(cls)
        dataset._setup(source)
        return dataset

    def _setup(self, source: Source) -> None:
        self.source = source
        self.indices = source.indices
        self.reader = _Reader(source)
        self.windows = Windows(source.spec, source.inputs)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, items: list[int]) -> list[tuple[Any, torch.Tensor]]:
        """Several samples with one read per array (DataLoader calls this for a batch)."""
        positions = self.indices[np.asarray(items, dtype=np.int64)]
        order = np.unique(positions)
        block = self.reader.take(order)
        rows = {int(p): k for k, p in enumerate(order)}
        out = []
        for p in positions:
            k = rows[int(p)]
            x = self.transform({name: block[name][k] for name in self.source.arrays}, self.random_crop)
            out.append((x, torch.from_numpy(self.source.targets[p])))
        return out

    def raw_batch(self, items: list[int]) -> dict[str, Any]:
        """Items (positions in this dataset) as one raw batch, read with one call per array."""
        clips = self.indices[np.asarray(items)]
        start = int(clips.min())
        block = self.reader.read(start, int(clips.max()) + 1)
        return _collate(self.source, self.windows, _samples(block, start, clips, explode_segments=False), train=False)


class StreamingStoreDataset(IterableDataset):
    """Iterable over the usable clips of `split`, epoch by epoch, for stores larger than memory.

    Each epoch reads the blocks holding the split's clips (`block_clips` consecutive store
    positions, aligned to the store's chunks; default: whole chunks, about 128 clips) in a new
    random order seeded by (`seed`, epoch), deals them round-robin to DataLoader workers and
    distributed ranks (`rank`, `world_size`, default: torch.distributed's when initialised), and
    shuffles their clips through a buffer of `shuffle_buffer` clips (default: about 128 MB). Each
    clip is seen exactly once per epoch across all readers. Call `set_epoch(epoch)` before each
    epoch, as with a DistributedSampler (the epoch lives in shared memory, so persistent workers
    see it). Arguments as `StoreDataset`'s.
    """

    batch_size: int | None = None  # set by `batches`: raw batches made in the reader

    def __init__(self, store: Any, split: str = "train", feature: str = "logmel", *, crop_frames: int | None = None,
                 crop_samples: int | None = None, random_crop: bool | None = None, seed: int = 0,
                 block_clips: int | None = None, shuffle_buffer: int | None = None, rank: int | None = None,
                 world_size: int | None = None, allow_partial: bool = False):
        data, inputs = _open(store, split, feature, crop_frames, crop_samples, allow_partial)
        block = block_clips or block_size(data.chunk_clips, data.shard_clips)
        self._setup(data.source(data.splits[split], inputs), block_clips=block, seed=seed, rank=rank,
                    world_size=world_size, buffer_clips=shuffle_buffer or buffer_size(data.spec, inputs, block))
        self.classes = tuple(data.labels)
        self.random_crop = split == "train" if random_crop is None else random_crop
        self.transform = _Transform(data.spec, inputs, data.stats)

    @classmethod
    def over(cls, source: Source, *, block_clips: int, buffer_clips: int, seed: int, explode_segments: bool = False,
             rank: int | None = None, world_size: int | None = None) -> StreamingStoreDataset:
        """A stream of raw batches (`batches`, random training windows) over `source`: the CLI's training."""
        dataset = cls.__new__(cls)
        dataset._setup(source, block_clips=block_clips, buffer_clips=buffer_clips, seed=seed,
                       explode_segments=explode_segments, rank=rank, world_size=world_size)
        return dataset

    def _setup(self, source: Source, *, block_clips: int, buffer_clips: int, seed: int,
               explode_segments: bool = False, rank: int | None = None, world_size: int | None = None) -> None:
        self.source, self.block_clips, self.buffer_clips = source, block_clips, buffer_clips
        self.rank, self.world_size = rank, world_size or 1
        self.seed, self.explode_segments = seed, explode_segments
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.reader = _Reader(source)
        self.windows = Windows(source.spec, source.inputs)
        self.blocks = np.unique(source.indices // block_clips)
        if explode_segments:
            from featurestore.store import open_store

            length = open_store(source.url).array("length").take(source.indices)
            self.n_samples = int(valid_segments(length, source.segments).sum())
        else:
            self.n_samples = len(source.indices)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def batches(self, batch_size: int) -> StreamingStoreDataset:
        """The same stream as raw batches of `batch_size` samples, made in the reader (one message per
        batch from a DataLoader worker); for the CLI's device-side input pipeline."""
        clone = copy.copy(self)
        clone.batch_size = batch_size
        return clone

    def __len__(self) -> int:
        """Samples per epoch, over all readers (clips, or their decoded segments)."""
        return self.n_samples

    def _shuffled(self, slot: int, slots: int, epoch: int) -> Iterator[Sample]:
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

    def __iter__(self) -> Iterator[Any]:
        slot, slots, epoch = *_partition(self.rank, self.world_size), int(self._epoch)
        samples = self._shuffled(slot, slots, epoch)
        if self.batch_size is None:
            for block, row, _, position in samples:
                x = self.transform({name: block[name][row] for name in self.source.arrays}, self.random_crop)
                yield x, torch.from_numpy(self.source.targets[position])
            return
        # the training windows of epoch e come from (seed, e, reader slot): a resumed run draws the same
        windows = np.random.default_rng([self.seed, epoch, slot, 2])
        batch = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield _collate(self.source, self.windows, batch, train=True, rng=windows)
                batch = []
        if batch:
            yield _collate(self.source, self.windows, batch, train=True, rng=windows)
