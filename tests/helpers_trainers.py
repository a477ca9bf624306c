"""Session fixtures of the trainers' tests: small real stores, built once.

Labelled synthetic music from `featurestore.synth`, written as real audio files (a few of them
broken), turned into manifests by the real folder and CSV adapters and built by the real
`build_store` on the session's Dask cluster (`dask_cluster` of helpers_store). Loaded as a
plugin (`pytest_plugins = ["helpers_store", "helpers_trainers"]`) so each store exists once per
session however many modules use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import featurestore
import manifests
from featurestore.builder.events import Committing
from featurestore.presets import preset
from featurestore.synth import CorpusConfig, generate_corpus

STYLES = ("ambient", "classical", "electronic", "rock")
# 1.5 s at 8 kHz: 47 frames of 24 mel bands, two 4000-sample waveform crops, three 0.5-s segments.
SPEC = preset("mtat-seed").select(["logmel", "mfcc", "waveform", "handcrafted"]).replace(
    sample_rate=8000, duration=1.5, n_fft=256, hop=256, n_mels=24, n_mfcc=13, crop_samples=8000, crops=2,
    segment_seconds=0.5, min_samples=256,
)
FORMATS = ("WAV", "FLAC")  # encoding MP3/OGG costs more than these tests need


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and stay fast on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Stores:
    genres: str  # single-label, every feature, 56 good clips + 3 broken files
    genre_audio: Path  # its audio root
    tags: str  # multi-label (two styles in two of every three clips), log-mel and MFCC
    tags_manifest: Path
    tags_audio: Path


@pytest.fixture(scope="session")
def trainer_stores(tmp_path_factory, dask_cluster) -> Stores:
    base = tmp_path_factory.mktemp("trainer-stores")
    genres = generate_corpus(CorpusConfig(root=base / "genre-corpus", clips_per_style=20, seconds=SPEC.decoding.duration,
                                          styles=STYLES, n_broken=3, formats=FORMATS))
    manifests.save(manifests.adapters.folder(genres.root / "genres", split="60/20/20", seed=0), base / "genres.parquet")
    tags = generate_corpus(CorpusConfig(root=base / "tag-corpus", clips_per_style=12, seconds=SPEC.decoding.duration,
                                        styles=STYLES, multilabel=True, n_broken=0, formats=FORMATS))
    manifests.save(manifests.adapters.csv(tags.labels_csv, split="60/20/20", seed=0), base / "tags.parquet")
    stores = Stores(str(base / "genres.zarr"), genres.root / "genres", str(base / "tags.zarr"),
                    base / "tags.parquet", tags.root)
    featurestore.build(base / "genres.parquet", audio_root=stores.genre_audio, out=stores.genres, spec=SPEC,
                       scheduler=dask_cluster.scheduler_address)
    featurestore.build(stores.tags_manifest, audio_root=tags.root, out=stores.tags, spec=SPEC.select(["logmel", "mfcc"]),
                       scheduler=dask_cluster.scheduler_address)
    return stores


@pytest.fixture(scope="session")
def interrupted_store(tmp_path_factory, trainer_stores, dask_cluster) -> str:
    """A build stopped by Ctrl-C as it was about to commit its fourth shard: `building`, 3 of its
    6 shards committed (so every split has ok clips), the others pending."""
    out = tmp_path_factory.mktemp("interrupted") / "store.zarr"
    calls = []

    def ctrl_c_at_the_fourth(event):
        if isinstance(event, Committing):
            calls.append(event.shard)
            if len(calls) == 4:
                raise KeyboardInterrupt  # what Ctrl-C does at that moment

    with pytest.raises(KeyboardInterrupt):
        featurestore.build(trainer_stores.tags_manifest, audio_root=trainer_stores.tags_audio, out=out,
                           spec=SPEC.select(["logmel"]), shard_clips=8, scheduler=dask_cluster.scheduler_address,
                           listeners=[ctrl_c_at_the_fourth])
    return str(out)
