"""Crop before the copy: a batch carries the bytes the model reads, not whole clips.

Every recipe's options on its own preset's clip shapes (30 s of log-mel, MFCC or waveform), cut by
the function the loader workers run (`trainers.datasets._collate`); then the real loader on a real
store, through DataLoader worker processes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featurestore.presets import preset
from trainers.datasets import StoreDataset, StreamingStoreDataset, _collate
from trainers.inputs import InputConfig, valid_segments
from trainers.options import resolve, to_config
from trainers.prepare import Source, open_data
from trainers.recipes import RECIPES
from trainers.runtime import make_loader
from trainers.windows import Windows

pytest_plugins = ["helpers_store", "helpers_trainers"]
LIMIT = 1.2  # bytes copied per sample, over the bytes the model and its loss read
CLASSES = 10


def batch_bytes(batch: dict[str, torch.Tensor]) -> int:
    """Everything the batch carries from the worker to the device: windows, targets, positions, masks."""
    return sum(t.nbytes for t in batch.values())


def read_bytes(spec, inputs: InputConfig, views: int, train: bool, classes: int = CLASSES) -> int:
    """Bytes the model and its loss read for one sample: the stored values its input is made from
    (its windows in the store's dtype, an image being made from one; a segment's descriptors for a
    training sample, a clip's evaluated per clip) and the float32 target vector."""
    total = classes * 4
    for feature in inputs.features(spec):
        rows, length = feature.clip_shape()
        if feature.layout == "segments":
            values = length if train and inputs.explode_segments(spec) else rows * length
            total += values * np.dtype(feature.dtype).itemsize
            continue
        window = {"spectrogram": inputs.crop_frames, "waveform": inputs.crop_samples}[feature.layout] or length
        per_row = rows if feature.layout == "spectrogram" else 1
        total += views * per_row * window * np.dtype(feature.dtype).itemsize
    return total


def recipe_batch(name: str, train: bool) -> tuple[dict[str, torch.Tensor], int, int]:
    """(batch, samples in it, bytes the model reads per sample) for one recipe on its preset."""
    recipe = RECIPES[name]
    config = to_config("store.zarr", "run", resolve(recipe=name, flags={"init_from": ["a", "b"]}
                                                     if recipe.options.get("freeze_encoders") else {}))
    spec, inputs = preset(recipe.preset), config.input
    features = inputs.features(spec)
    block = {f.name: np.zeros((1, *f.clip_shape()), dtype=f.dtype) for f in features}
    segments = next((f for f in features if f.layout == "segments"), None)
    if segments is not None:
        block["valid"] = valid_segments(np.array([spec.decoding.n_samples]), segments)
    n = config.batch_size
    explode = train and inputs.explode_segments(spec)
    samples = [(block, 0, (i % segments.n_segments) if explode else None, i) for i in range(n)]
    source = Source("store.zarr", inputs, np.arange(n), np.zeros((n, CLASSES), np.float32), spec)
    batch = _collate(source, Windows(spec, inputs), samples, train=train, rng=np.random.default_rng(0))
    windowed = [batch[f.name].shape[1] for f in features if f.layout != "segments"]
    return batch, n, read_bytes(spec, inputs, max(windowed, default=1), train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "evaluate"])
@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_copies_about_what_its_model_reads(name, train):
    batch, n, needed = recipe_batch(name, train)
    per_sample = batch_bytes(batch) / n
    assert per_sample <= LIMIT * needed, f"{name}: {per_sample:,.0f} bytes per sample for {needed:,} read"
    assert per_sample >= needed, "the windows themselves are all there"


def test_gtzan_cnn3_windows_are_a_tenth_of_its_clips():
    """The case the issue measured: 130-frame windows of 1,292-frame clips."""
    batch, n, _ = recipe_batch("gtzan-cnn3", train=True)
    clip = preset("gtzan").feature("logmel")
    assert batch["logmel"].shape == (n, 1, 128, 130)
    assert batch_bytes(batch) / n < 0.12 * math.prod(clip.clip_shape()) * 2


def test_the_loader_workers_send_windows(trainer_stores):
    """Through real DataLoader worker processes: training batches hold random windows of the crop's
    length, evaluation batches the evenly spaced views, and every tensor (targets, positions) is
    one the DataLoader can pin."""
    inputs = InputConfig("logmel", crop_frames=12, eval_crops=3)
    data = open_data(trainer_stores.genres, inputs)
    spec = data.spec
    stream = StreamingStoreDataset.over(data.source(data.splits["train"], inputs), block_clips=8, buffer_clips=8, seed=0)
    stream.set_epoch(1)
    train = list(make_loader(stream, batch_size=8, workers=2, device=torch.device("cpu")))
    valid = list(make_loader(StoreDataset.over(data.source(data.splits["valid"], inputs)), batch_size=8, workers=2,
                             device=torch.device("cpu")))
    bands = spec.feature("logmel").clip_shape()[0]
    for batches, views in ((train, 1), (valid, 3)):
        for batch in batches:
            assert all(isinstance(t, torch.Tensor) for t in batch.values())
            assert batch["logmel"].shape[1:] == (views, bands, 12)
            n = len(batch["y"])
            assert batch_bytes(batch) / n <= LIMIT * read_bytes(spec, inputs, views, views == 1, len(data.labels))
    stored = open_data(trainer_stores.genres, inputs).store.array("logmel")
    first = valid[0]
    rows = stored.take(first["index"].numpy())
    frames = rows.shape[-1]
    starts = np.round(np.linspace(0, frames - 12, 3)).astype(int)
    for v, s in enumerate(starts):
        np.testing.assert_array_equal(first["logmel"][:, v].numpy(), rows[:, :, s:s + 12])
