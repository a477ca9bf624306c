"""A store written by featurestore before arrays had settings of their own (store format 3, commit
23b2951; `tests/reference/stores/make_format3.py` made it) keeps its features: it opens and
trains as it is, `featurestore upgrade` rewrites its attributes and records only, and it grows
(appended clips, a new array) without one stored value being computed again."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import zarr

import featurestore
from featurestore.cli import main
from featurestore.store.inspect import verify
from test_spec import ISSUE_TOML

pytest_plugins = ["helpers_store"]

ARRAYS = ("logmel", "mfcc", "waveform", "status", "length")
SPEC_TOML = ISSUE_TOML.replace("duration = 20.0", "duration = 1.0")  # the issue's two resolutions, this store's clips


@pytest.fixture(scope="module")
def fixture_dir(reference, tmp_path_factory) -> Path:
    """The format-3 store and its manifests, unpacked, with its audio rendered again (checked)."""
    import sys

    folder = reference / "stores"
    sys.path.insert(0, str(folder))
    try:
        import make_format3
    finally:
        sys.path.remove(str(folder))
    out = tmp_path_factory.mktemp("format3")
    with tarfile.open(folder / "format3-23b2951.tar") as tar:
        tar.extractall(out, filter="data")
    recorded = json.loads((folder / "format3-audio.json").read_text())
    sums = make_format3.audio_files(out / "audio", recorded["clips"] + recorded["grown"])
    assert sums == recorded["sha256"], "the synth renders other audio than the store was built from"
    return out


@pytest.fixture
def old(fixture_dir, tmp_path) -> Path:
    store = tmp_path / "store.zarr"
    shutil.copytree(fixture_dir / "store.zarr", store)
    return store


def _files(store: Path, arrays=ARRAYS) -> dict[str, str]:
    """SHA-256 of every file of the arrays' chunks and metadata."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for a in arrays for p in sorted((store / a).rglob("*")) if p.is_file()}


def _format(store: Path) -> int:
    return json.loads(json.loads((store / "zarr.json").read_text())["attributes"]["featurestore"])["format_version"]


def test_a_format_3_store_reads_as_it_is_and_trains(old, tmp_path, capsys):
    before = _files(old)
    store = featurestore.open_store(old)
    assert store.state.upgraded_from == 3 and _format(old) == 3
    assert store.spec.names == ("logmel", "mfcc", "waveform") and store.spec.decoding.min_samples == 2048
    assert (store.n_clips, store.n_pending, store.build_state) == (12, 0, "complete")
    assert store.manifest["error"].iloc[5] == "empty file (0 bytes)"
    assert verify(store) == (2, [])
    assert main(["info", str(old)]) == 0 and "store format 3, read as today's" in capsys.readouterr().out
    assert main(["train", str(old), "--model", "cnn3", "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--crop-frames", "8", "--num-workers", "0"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert _files(old) == before and _format(old) == 3, "reading wrote nothing"
    # a run whose config.json records the flat spec of its day evaluates on the upgraded store
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    flat = json.loads(json.loads((old / "zarr.json").read_text())["attributes"]["featurestore"])["spec"]
    config["resolved"] |= {"spec": flat, "spec_hash": "written-by-an-older-version"}
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main(["upgrade", str(old)]) == 0
    assert main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "eval")]) == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_upgrade_rewrites_the_attributes_and_records_only(old, capsys):
    arrays = _files(old, (*ARRAYS, "logmel_mean", "logmel_std", "mfcc_mean", "mfcc_std", "clip", "split", "labels"))
    assert main(["upgrade", str(old)]) == 0
    assert "upgraded from store format 3: 2 commit record(s)" in capsys.readouterr().out
    assert _format(old) == 4 and featurestore.open_store(old).state.upgraded_from is None
    assert _files(old, (*ARRAYS, "logmel_mean", "logmel_std", "mfcc_mean", "mfcc_std", "clip", "split",
                        "labels")) == arrays
    assert verify(featurestore.open_store(old)) == (2, [])
    assert main(["upgrade", str(old)]) == 0 and "already in today's format" in capsys.readouterr().out


def test_a_format_3_store_grows_without_computing_a_stored_value_again(old, fixture_dir, store_corpus, tmp_path):
    shard0 = _files(old, ARRAYS)
    shard0 = {k: v for k, v in shard0.items() if "/c/0" in k}  # the first shard: full, and not touched by growth
    grown = featurestore.build(fixture_dir / "grown.parquet", audio_root=fixture_dir / "audio", out=old, workers=1,
                               moved_audio=True)  # built from the same files, elsewhere
    assert grown.decoded == 4 and grown.changes == ("appended 4 clips to 12",) and grown.complete
    assert {k: v for k, v in _files(old, ARRAYS).items() if k in shard0} == shard0
    assert _format(old) == 4
    # a new array from the issue's TOML, with the store's own decoding: only it is computed
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC_TOML)
    before = _files(old, ARRAYS)
    assert main(["build", str(fixture_dir / "grown.parquet"), "--audio-root", str(fixture_dir / "audio"),
                 "--out", str(old), "--spec", str(spec_file), "--workers", "1", "--quiet"]) == 0
    assert _files(old, ARRAYS) == before
    store = featurestore.open_store(old)
    assert store.spec.names == ("logmel", "mfcc", "waveform", "logmel128")
    assert store.array("logmel128").shape == (16, 128, 32) and verify(store)[1] == []
    # bit for bit what a fresh build of the same settings stores, old clips and new
    fresh = featurestore.build(fixture_dir / "grown.parquet", audio_root=fixture_dir / "audio",
                               out=tmp_path / "fresh.zarr", spec=store.spec, workers=1, shard_clips=8)
    assert fresh.complete
    old_arrays, new_arrays = zarr.open_group(str(old), mode="r"), zarr.open_group(str(tmp_path / "fresh.zarr"), mode="r")
    for name in (*ARRAYS, "logmel128", "logmel_mean", "mfcc_std"):
        assert np.array_equal(old_arrays[name][:], new_arrays[name][:]), name
