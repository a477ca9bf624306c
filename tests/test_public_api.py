"""The public Python API as the README shows it: its code runs as written, and what it promises holds."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import featurestore
import manifests
import trainers
from featurestore.builder.events import Committed, Committing, PhaseFinished, StatisticsWritten, StoreCreated
from featurestore.synth import CorpusConfig, generate_corpus

README = Path(__file__).resolve().parents[1] / "README.md"
STYLES = ("ambient", "classical", "electronic", "rock")


def readme_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """`m.parquet` and `audio/` as the README's code expects them, in a folder of their own."""
    root = tmp_path_factory.mktemp("api")
    made = generate_corpus(CorpusConfig(root=root / "corpus", clips_per_style=6, seconds=2.0, styles=STYLES,
                                        n_broken=1, formats=("WAV",)))
    os.symlink(made.root / "genres", root / "audio")
    manifests.save(manifests.adapters.folder(root / "audio", split="50/25/25", seed=0), root / "m.parquet")
    return root


@pytest.fixture(scope="module")
def readme_run(corpus) -> dict:
    """Every block of the README's Python API section, run as written, in the corpus's folder."""
    blocks = readme_blocks()
    assert len(blocks) >= 4, "the README's Python API section lost a code block"
    code = "\n".join(blocks)
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(corpus)
    try:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    finally:
        os.chdir(here)
    return namespace


def test_the_readme_code_builds_reads_and_trains(readme_run, corpus):
    ns = readme_run
    report, store, ds = ns["report"], ns["store"], ns["ds"]
    assert report.complete and report.failed == 1 and report.ok == 24
    assert store.spec == featurestore.preset("mtat-seed") and store.build_state == "complete"
    x, y = ns["x"], ns["y"]
    assert x.shape == (1, 80, 128) and x.dtype == torch.float32 and y.shape == (len(STYLES),)
    assert ds.classes == tuple(STYLES) and y.sum() == 1
    assert 0.0 <= ns["accuracy"] <= 1.0 and len(ns["test"]) > 0
    xs, ys = ns["xs"], ns["ys"]
    assert xs.shape[1:] == (1, 20, 313) and ys.shape[1] == len(STYLES)
    assert ns["trainer"].current_epoch == 2  # Lightning trained both epochs over the streaming split


def test_store_dataset_normalises_with_the_train_statistics_and_crops_as_told(readme_run, corpus):
    url = corpus / "s.zarr"
    store = featurestore.open_store(url)
    mean, std = store.stats("logmel")
    whole = trainers.StoreDataset(url, split="valid", feature="logmel")
    first = int(whole.indices[0])
    raw = store.array("logmel")[first].astype(np.float32)
    x, y = whole[0]
    np.testing.assert_allclose(x[0].numpy(), (raw - mean[:, None]) / std[:, None], rtol=1e-5, atol=1e-5)
    assert y.numpy().tolist() == [float(label in store.manifest["labels"].iloc[first]) for label in whole.classes]
    centred = trainers.StoreDataset(url, split="valid", feature="logmel", crop_frames=100)
    np.testing.assert_array_equal(centred[0][0].numpy(), x[:, :, 106:206].numpy())  # (313 - 100) // 2 = 106
    randomly = trainers.StoreDataset(url, split="valid", feature="logmel", crop_frames=100, random_crop=True)
    torch.manual_seed(0)
    starts = {int(torch.nonzero((randomly[0][0][0, 0, 0] == x[0, 0]))[0]) for _ in range(10)}
    assert len(starts) > 1
    assert all(whole.classes == s.classes for s in (centred, randomly))
    with pytest.raises(featurestore.UserError, match="has no chroma array to read"):
        trainers.StoreDataset(url, feature="chroma")


def test_streaming_sees_every_clip_once_per_epoch_across_workers_in_an_epoch_seeded_order(readme_run, corpus):
    url = corpus / "s.zarr"
    stream = trainers.StreamingStoreDataset(url, split="train", feature="mfcc", block_clips=8, shuffle_buffer=4)
    reference = trainers.StoreDataset(url, split="train", feature="mfcc")
    targets = {tuple(y.numpy()) for _, y in reference}

    def epoch(n: int, workers: int) -> list[float]:
        stream.set_epoch(n)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
        return [float(x.sum()) for x, _ in loader]

    first, again, second = epoch(1, 2), epoch(1, 2), epoch(2, 0)
    assert len(first) == len(stream) == len(reference) and sorted(first) == sorted(second)
    assert first == again and first != second  # the order is the epoch's, the clips the same
    assert {tuple(y.numpy()) for _, y in stream} <= targets
    ranks = [trainers.StreamingStoreDataset(url, split="train", feature="mfcc", rank=r, world_size=2) for r in (0, 1)]
    halves = [[float(x.sum()) for x, _ in r] for r in ranks]
    assert sorted(halves[0] + halves[1]) == sorted(first) and halves[0] and halves[1]


def test_listeners_hear_the_build_step_by_step(corpus, tmp_path):
    heard = []
    spec = featurestore.preset("mtat-seed").select(["logmel"], duration=2.0)
    report = featurestore.build(corpus / "m.parquet", audio_root=corpus / "audio", out=tmp_path / "s.zarr",
                                spec=spec, workers=1, shard_clips=8, listeners=[heard.append])
    kinds = [type(e) for e in heard if not isinstance(e, PhaseFinished)]
    shards = report.shards
    assert kinds == [StoreCreated, *[Committing, Committed] * shards, StatisticsWritten]
    assert sorted(e.shard for e in heard if isinstance(e, Committed)) == list(range(shards))
    phases = [e.name for e in heard if isinstance(e, PhaseFinished)]
    assert phases == ["manifest", "store state", "plan", "cluster start-up", "store set-up", "tasks",
                      "cluster shut-down", "finish"]
    assert set(report.profile.phases) == set(phases)
