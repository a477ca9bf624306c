"""Fixtures of the store tests: a small GTZAN-named corpus with broken files, one Dask cluster.

Loaded as a plugin (`pytest_plugins = ["helpers_store"]` in the store test modules) so that its
session fixtures exist once however many modules use them: starting a cluster of worker
processes, each importing torch, costs seconds.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import manifests
from featurestore.presets import preset
from featurestore.synth import STYLES, render_clip

# Tiny clips: 1 s at 16 kHz gives 16 frames of 80 mel bands.
SPEC = preset("mtat-seed").replace(duration=1.0, crop_samples=4096)
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz")
# Real broken files, and the words their failure reason must contain.
BROKEN = {
    "zero-byte": ("wav", "empty file"),
    "truncated-mp3": ("mp3", "truncated"),
    "random-bytes": ("mp3", ""),
    "text-as-wav": ("wav", "not audio"),
    "missing": ("wav", "not found"),
}


@dataclass(frozen=True)
class Corpus:
    audio: Path
    manifest: Path  # 24 good clips and the 5 broken ones, interleaved
    big_manifest: Path  # the good clips three times over (under other clip ids): many shards
    few_manifest: Path  # the first 8 rows of `manifest`, one of them broken
    broken_rows: dict[str, int]  # kind -> row in `manifest`
    n_rows: int


def _split_lists(reference: Path) -> dict[str, list[str]]:
    folder = reference / "gtzan" / "coreyker__dnn-mgr" / "gtzan"
    return {s: (folder / f"{s}_stratified.txt").read_text().split() for s in ("train", "valid", "test")}


def _mp3(samples: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="MP3")
    return buf.getvalue()


def _save(rows: list[dict], path: Path) -> Path:
    import pandas as pd

    meta = manifests.ManifestMeta(dataset="gtzan-test", labels=list(GENRES))
    manifests.save(manifests.Manifest(pd.DataFrame(rows), meta), path)
    return path


def make_corpus(root: Path, reference: Path) -> Corpus:
    """GTZAN file names and splits from the reference lists (two train, one valid, one test clip
    per genre), audio rendered by the synth, every third clip an MP3 at 22,050 Hz stereo."""
    audio = root / "audio"
    rows = []
    for split, names in _split_lists(reference).items():
        for genre in GENRES:
            picked = [n for n in names if n.startswith(f"{genre}/")][: 2 if split == "train" else 1]
            rows += [{"clip_id": n.split("/")[1][: -len(".wav")], "path": n, "labels": [genre], "split": split,
                      "group": n} for n in picked]
    rows.sort(key=lambda r: r["path"])
    for i, row in enumerate(rows):
        y = render_clip(STYLES[i % len(STYLES)], i, 1.2, 22_050 if i % 3 == 0 else 16_000, channels=2 if i % 3 == 0 else 1)
        target = audio / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:
            row["path"] = row["path"][: -len("wav")] + "mp3"
            (audio / row["path"]).write_bytes(_mp3(y, 22_050))
        else:
            sf.write(target, y, 16_000)
    good = list(rows)

    broken_dir = audio / "broken"
    broken_dir.mkdir()
    valid_mp3 = _mp3(render_clip("rock", 99, 1.2, 16_000), 16_000)
    contents = {
        "zero-byte": b"",
        "truncated-mp3": valid_mp3[: len(valid_mp3) // 2],
        "random-bytes": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text-as-wav": b"clip_id,label\n1,blues\n",
    }
    for j, (kind, (ext, _)) in enumerate(BROKEN.items()):
        path = f"broken/{kind}.{ext}"
        if kind in contents:
            (audio / path).write_bytes(contents[kind])
        at = 3 + 6 * j  # spread over several shards
        rows.insert(at, {"clip_id": kind, "path": path, "labels": ["blues"], "split": "train", "group": kind})
    broken_rows = {r["clip_id"]: i for i, r in enumerate(rows) if r["clip_id"] in BROKEN}

    big = [dict(r, clip_id=f"{r['clip_id']}#{k}") for k in range(3) for r in good]
    return Corpus(audio, _save(rows, root / "manifest.parquet"), _save(big, root / "big.parquet"),
                  _save(rows[:8], root / "few.parquet"), broken_rows, len(rows))


def read_arrays(url: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of a store, read with plain zarr."""
    import zarr

    from featurestore.store import open_store
    from featurestore.store.layout import clip_arrays, normalised

    store = open_store(url)
    names = [*clip_arrays(store.spec), *(f"{f}_{k}" for f in normalised(store.spec) for k in ("mean", "std"))]
    group = zarr.open_group(os.fspath(url), mode="r")
    return {name: group[name][:] for name in names}


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), f"{name} differs"


@pytest.fixture(scope="session")
def store_corpus(tmp_path_factory, reference) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("store-corpus"), reference)


@pytest.fixture(scope="session")
def dask_cluster():
    """Two worker processes on 127.0.0.1, used through its address like any external cluster."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def built_store(tmp_path_factory, store_corpus, dask_cluster):
    """The corpus built once on the external cluster: (url, BuildReport)."""
    import featurestore

    out = tmp_path_factory.mktemp("built") / "store.zarr"
    report = featurestore.build(store_corpus.manifest, audio_root=store_corpus.audio, out=out, spec=SPEC,
                                scheduler=dask_cluster.scheduler_address)
    return out, report


def build_store(manifest, audio_root, out, spec=None, **options):
    """`featurestore.build`, with the manifest, audio root, output and spec in that order."""
    import featurestore

    return featurestore.build(manifest, audio_root=audio_root, out=out, spec=spec, **options)
