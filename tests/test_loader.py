"""The datasets over a real store: every ok clip exactly once per epoch, whatever the number of
DataLoader workers or ranks; never a failed or pending clip; whole blocks per read; raw float16."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurestore.store import FAILED, OK, PENDING, open_store
from trainers import datasets as data_module
from trainers.datasets import StoreDataset, StreamingStoreDataset
from trainers.inputs import InputConfig, valid_segments
from trainers.prepare import open_data
from trainers.runtime import make_loader

pytest_plugins = ["helpers_store", "helpers_trainers"]
pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def _epoch(dataset, workers: int, batch_size: int = 5) -> list[dict]:
    return list(make_loader(dataset, batch_size=batch_size, workers=workers, device=CPU))


def _indices(batches) -> np.ndarray:
    return torch.cat([b["index"] for b in batches]).numpy()


@pytest.fixture(scope="module")
def genres(trainer_stores):
    inputs = InputConfig("logmel")
    return open_data(trainer_stores.genres, inputs), inputs


def test_streaming_visits_every_ok_clip_once_per_epoch_with_several_workers(genres, trainer_stores):
    data, inputs = genres
    store = open_store(trainer_stores.genres)
    status, manifest = store.status, store.manifest
    train = data.splits["train"]
    in_split = np.flatnonzero(manifest["split"].to_numpy() == "train")
    assert (status[in_split] == FAILED).any(), "the corpus should put a broken file in train"
    dataset = StreamingStoreDataset.over(data.source(train, inputs), block_clips=8, buffer_clips=12, seed=3)
    logmel = store.array("logmel")[:]
    orders = []
    for workers in (0, 2):
        for epoch in (1, 2):
            dataset.set_epoch(epoch)
            batches = _epoch(dataset, workers)
            seen = _indices(batches)
            assert sorted(seen) == sorted(train), f"{workers} workers, epoch {epoch}"
            assert (status[seen] == OK).all()
            orders.append(seen)
            first = batches[0]
            assert first["logmel"].dtype == torch.float16  # float16 from disk to the device
            assert first["logmel"].shape[1] == 1  # one window per clip: here the whole clip
            np.testing.assert_array_equal(first["logmel"][:, 0].numpy(), logmel[first["index"].numpy()])
            np.testing.assert_array_equal(first["y"].numpy(), data.targets[first["index"].numpy()])
    assert not np.array_equal(orders[0], orders[1]), "each epoch reshuffles"
    dataset.set_epoch(1)
    assert np.array_equal(_indices(_epoch(dataset, 2)), orders[2]), "an epoch's order is a function of (seed, epoch)"


def test_ranks_and_workers_take_disjoint_blocks(genres):
    data, inputs = genres
    train = data.splits["train"]
    per_rank = []
    for rank in (0, 1):
        dataset = StreamingStoreDataset.over(data.source(train, inputs), block_clips=8, buffer_clips=8, seed=0,
                                   rank=rank, world_size=2)
        dataset.set_epoch(1)
        per_rank.append(_indices(_epoch(dataset, workers=2)))
    assert len(per_rank[0]) and len(per_rank[1])
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(np.concatenate(per_rank)) == sorted(train)


def test_reads_are_whole_blocks_and_whole_batches_not_clips(genres, monkeypatch):
    data, inputs = genres
    calls = []
    original = data_module._Reader.read
    monkeypatch.setattr(data_module._Reader, "read", lambda self, a, b: calls.append((a, b)) or original(self, a, b))
    train = data.splits["train"]
    stream = StreamingStoreDataset.over(data.source(train, inputs), block_clips=16, buffer_clips=16, seed=0)
    assert len(_indices(_epoch(stream, workers=0))) == len(train)
    assert len(calls) == len(np.unique(train // 16))  # one read per block holding train clips
    assert all(a // 16 == (b - 1) // 16 for a, b in calls)  # never across a block boundary
    calls.clear()
    valid = data.splits["valid"]
    batches = _epoch(StoreDataset.over(data.source(valid, inputs)), workers=0, batch_size=4)
    assert np.array_equal(_indices(batches), valid)  # store order
    assert len(calls) == -(-len(valid) // 4)  # one read per batch
    # and the same with worker processes
    assert np.array_equal(_indices(_epoch(StoreDataset.over(data.source(valid, inputs)), workers=2, batch_size=4)), valid)


def test_handcrafted_segments_are_samples_for_training_and_views_for_evaluation(trainer_stores):
    inputs = InputConfig("handcrafted")
    data = open_data(trainer_stores.genres, inputs)
    store = open_store(trainer_stores.genres)
    train = data.splits["train"]
    valid = valid_segments(store.array("length")[:], data.spec.feature("handcrafted"))
    stream = StreamingStoreDataset.over(data.source(train, inputs), block_clips=8, buffer_clips=32, seed=0,
                              explode_segments=True)
    stream.set_epoch(1)
    batches = _epoch(stream, workers=2, batch_size=7)
    rows = torch.cat([b["handcrafted"] for b in batches])
    assert rows.shape == (int(valid[train].sum()), 57) == (len(stream), 57)
    assert rows.dtype == torch.float32  # descriptors are stored as float32
    counts = np.bincount(_indices(batches), minlength=store.n_clips)
    np.testing.assert_array_equal(counts[train], valid[train].sum(1))
    held = _epoch(StoreDataset.over(data.source(data.splits["test"], inputs)), workers=0)
    assert held[0]["handcrafted"].shape[1:] == (data.spec.feature("handcrafted").n_segments, 57) and "valid" in held[0]


def test_pending_clips_of_an_interrupted_build_are_never_read(interrupted_store):
    store = open_store(interrupted_store)
    assert store.build_state == "building" and store.n_pending > 0
    inputs = InputConfig("logmel")
    data = open_data(interrupted_store, inputs, allow_partial=True)
    train = data.splits["train"]
    assert len(train) and (store.status[train] == OK).all()
    pending_train = np.flatnonzero((store.status == PENDING) & (store.manifest["split"] == "train").to_numpy())
    assert len(pending_train)
    stream = StreamingStoreDataset.over(data.source(train, inputs), block_clips=8, buffer_clips=8, seed=0)
    seen = _indices(_epoch(stream, workers=2))
    assert sorted(seen) == sorted(train) and not set(seen) & set(pending_train)
