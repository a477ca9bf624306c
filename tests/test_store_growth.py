"""A store that grows: features added, clips appended, labels changed, each bit-identical to a
fresh build of the result, with real Dask workers and real audio files; one writer at a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.register_assert_rewrite("helpers_store")

import manifests
from helpers_store import build_store
from featurestore.cli import main
from featurestore.errors import UserError
from featurestore.store import OK, open_store
from featurestore.store.inspect import verify
from helpers_store import SPEC, assert_same_arrays, read_arrays

pytest_plugins = ["helpers_store"]

FAULTPOINTS = Path(__file__).with_name("faultpoints.py")
SHARD = 8


def _build(corpus, manifest, out, spec=SPEC, cluster=None, audio=None, **kw):
    return build_store(manifest, audio or corpus.audio, out, spec, shard_clips=kw.pop("shard_clips", SHARD),
                       scheduler=cluster.scheduler_address, progress=False, **kw)


def _rows(manifest_path: Path, out: Path, keep: slice | None = None, change=None) -> Path:
    """A manifest made from another: some of its rows, or all of them with `change` applied."""
    m = manifests.load(manifest_path)
    table = m.table.iloc[keep].reset_index(drop=True) if keep is not None else m.table.copy()
    if change is not None:
        table = change(table)
    manifests.save(manifests.Manifest(table, m.meta), out)
    return out


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _shard_files(store: Path, array: str) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (store / array).rglob("*") if p.is_file() and p.name != "zarr.json"}


def test_adding_a_feature_computes_only_it_and_equals_a_fresh_build(store_corpus, dask_cluster, tmp_path):
    grown = tmp_path / "grown.zarr"
    first = _build(store_corpus, store_corpus.manifest, grown, SPEC.select(["logmel", "mfcc"]), dask_cluster)
    assert first.pending == 0
    before = {a: _shard_files(grown, a) for a in ("logmel", "mfcc", "status", "length")}
    added = _build(store_corpus, store_corpus.manifest, grown, SPEC.select(["handcrafted"]), dask_cluster,
                   shard_clips=None)
    assert added.changes == ("added handcrafted",) and added.pending == 0
    assert added.decoded == first.ok  # only the ok clips were decoded again, for the new feature only
    assert {a: _shard_files(grown, a) for a in before} == before, "the other arrays were not written"

    fresh = tmp_path / "fresh.zarr"
    _build(store_corpus, store_corpus.manifest, fresh, SPEC.select(["logmel", "mfcc", "handcrafted"]),
           dask_cluster)
    assert open_store(grown).spec == open_store(fresh).spec
    assert_same_arrays(read_arrays(grown), read_arrays(fresh))
    assert open_store(grown).manifest.equals(open_store(fresh).manifest)
    assert ([r.content_hash() for r in open_store(grown).records.values()]
            == [r.content_hash() for r in open_store(fresh).records.values()])
    assert verify(open_store(grown))[1] == []
    arrays = open_store(grown).attrs.arrays
    assert arrays["logmel"].added <= arrays["handcrafted"].added

    # a feature the store holds with other settings is refused, naming them; nothing is written
    files = _files(grown)
    with pytest.raises(UserError, match=r"holds mfcc built with n_mfcc 20 \(this build: 13\)"):
        _build(store_corpus, store_corpus.manifest, grown, SPEC.select(["mfcc"]).replace(n_mfcc=13), dask_cluster,
               shard_clips=None)
    with pytest.raises(UserError, match=r"built with sample_rate 16000 \(this build: 22050\)"):
        _build(store_corpus, store_corpus.manifest, grown, SPEC.replace(sample_rate=22_050), dask_cluster,
               shard_clips=None)
    assert _files(grown) == files


def test_appending_clips_twice_builds_only_them_and_equals_a_fresh_build(store_corpus, dask_cluster, tmp_path):
    full = store_corpus.manifest
    parts = [_rows(full, tmp_path / f"m{n}.parquet", slice(0, n)) for n in (13, 21)]
    grown = tmp_path / "grown.zarr"
    assert _build(store_corpus, parts[0], grown, cluster=dask_cluster).pending == 0
    shard0 = {k: v for k, v in _shard_files(grown, "logmel").items() if "/c/0/" in k}
    assert shard0, "the first shard's file is on disk"
    seen = 13
    for manifest in (parts[1], full):
        n = len(manifests.load(manifest).table)
        report = _build(store_corpus, manifest, grown, cluster=dask_cluster, shard_clips=None)
        assert report.changes == (f"appended {n - seen} clips to {seen}",) and report.pending == 0
        missing = seen <= store_corpus.broken_rows["missing"] < n  # a file no process finds is not decoded
        assert report.decoded == n - seen - missing, "stored clips are kept, not decoded again"
        seen = n
    assert open_store(grown).n_clips == store_corpus.n_rows
    assert {k: v for k, v in _shard_files(grown, "logmel").items() if k in shard0} == shard0, \
        "the first, full shard was never rewritten"

    fresh = tmp_path / "fresh.zarr"
    _build(store_corpus, full, fresh, cluster=dask_cluster)
    assert_same_arrays(read_arrays(grown), read_arrays(fresh))
    assert open_store(grown).manifest.equals(open_store(fresh).manifest)
    assert verify(open_store(grown))[1] == []

    store = open_store(grown)
    train = np.flatnonzero((store.status == OK) & (store.manifest["split"] == "train").to_numpy())
    for feature, axes in (("logmel", (0, 2)), ("mfcc", (0, 2))):
        values = store.array(feature)[:][train].astype(np.float64)
        mean, std = store.stats(feature)
        np.testing.assert_allclose(mean, values.mean(axis=axes), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(std, values.std(axis=axes), rtol=1e-4, atol=1e-4)


def test_new_labels_and_splits_update_the_store_without_decoding(store_corpus, dask_cluster, tmp_path, capsys):
    out = tmp_path / "store.zarr"
    _build(store_corpus, store_corpus.manifest, out, cluster=dask_cluster)
    flip = {"train": "valid", "valid": "train", "test": "test"}
    relabelled = _rows(store_corpus.manifest, tmp_path / "relabelled.parquet",
                       change=lambda t: t.assign(split=t["split"].map(flip),
                                                 labels=[["jazz"] if i % 5 == 0 else list(v)
                                                         for i, v in enumerate(t["labels"])]))
    empty = tmp_path / "no-audio"
    empty.mkdir()  # any decoding would fail: there is no audio here at all
    arrays_before = {k: v for k, v in read_arrays(out).items() if not k.endswith(("_mean", "_std"))}
    assert main(["build", str(relabelled), "--audio-root", str(empty), "--out", str(out), "--duration", "1",
                 "--crop-samples", "4096", "--quiet", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "0 clips decoded" in printed and "labels or splits changed" in printed
    store = open_store(out)
    new = manifests.load(relabelled).table
    assert store.manifest["split"].tolist() == new["split"].tolist()
    assert store.manifest["labels"].map(list).tolist() == new["labels"].map(list).tolist()
    assert {k: v for k, v in read_arrays(out).items() if not k.endswith(("_mean", "_std"))}.keys() == arrays_before.keys()
    for k, v in arrays_before.items():
        assert read_arrays(out)[k].tobytes() == v.tobytes(), k
    train = np.flatnonzero((store.status == OK) & (new["split"] == "train").to_numpy())
    values = store.array("logmel")[:][train].astype(np.float64)
    np.testing.assert_allclose(store.stats("logmel")[0], values.mean(axis=(0, 2)), rtol=1e-5, atol=1e-4)
    fresh = tmp_path / "fresh.zarr"
    _build(store_corpus, relabelled, fresh, cluster=dask_cluster)
    assert_same_arrays(read_arrays(out), read_arrays(fresh))
    assert verify(store)[1] == []


@pytest.mark.parametrize("change", ["drop", "reorder", "repoint"])
def test_a_manifest_that_drops_or_reorders_rows_is_refused_with_nothing_written(change, store_corpus, dask_cluster,
                                                                                 tmp_path, capsys):
    out = tmp_path / "store.zarr"
    _build(store_corpus, store_corpus.manifest, out, cluster=dask_cluster)
    edits = {
        "drop": lambda t: t.drop(index=5).reset_index(drop=True),
        "reorder": lambda t: pd.concat([t.iloc[:3], t.iloc[[4, 3]], t.iloc[5:]]).reset_index(drop=True),
        "repoint": lambda t: t.assign(path=[p if i != 7 else "blues/blues.00099.wav" for i, p in enumerate(t["path"])]),
    }
    bad = _rows(store_corpus.manifest, tmp_path / "bad.parquet", change=edits[change])
    files = _files(out)
    assert main(["build", str(bad), "--audio-root", str(store_corpus.audio), "--out", str(out), "--duration", "1",
                 "--crop-samples", "4096", "--quiet"]) == 2
    err = capsys.readouterr().err
    first = {"drop": 5, "reorder": 3, "repoint": 7}[change]
    clip = manifests.load(bad).table["clip_id"].iat[first]
    assert err.startswith(f"featurestore build: error: {out}: row {first} of the manifest is clip {clip!r}")
    assert "a store only grows by rows appended to its manifest" in err and err.count("\n") == 1
    assert _files(out) == files


def _start(corpus, out: Path, *extra: str, point: str | None = None, marker: Path | None = None) -> subprocess.Popen:
    args = [str(corpus.manifest), "--audio-root", str(corpus.audio), "--out", str(out), "--duration", "1",
            "--crop-samples", "4096", "--shard-size", str(SHARD), "--workers", "1", "--quiet", *extra]
    cmd = ([sys.executable, str(FAULTPOINTS), point, str(marker), "--", *args] if point else
           [sys.executable, "-m", "featurestore", "build", *args])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(marker: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the build never reached its fault point"
        time.sleep(0.02)


@pytest.mark.reliability
def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(store_corpus, dask_cluster, tmp_path):
    out, marker = tmp_path / "store.zarr", tmp_path / "reached"
    (tmp_path / "elsewhere").mkdir()
    alias = tmp_path / "elsewhere" / "alias.zarr"
    alias.symlink_to(out)
    # every name of the one store shares its lock: a symlink, `..`, `./`, a trailing slash, a relative path
    names = [str(out), str(alias), f"{tmp_path}/elsewhere/../store.zarr", f"{tmp_path}/./store.zarr/",
             os.path.relpath(out)]
    first = _start(store_corpus, out, point="commit:2", marker=marker)
    try:
        _wait(marker, first)
        for name, extra in [(name, ()) for name in names] + [(str(alias), ("--overwrite",))]:
            second = _start(store_corpus, name, *extra)
            code, err = second.wait(timeout=120), second.stderr.read()
            assert code == 2, (name, err)
            named = os.path.abspath(name)  # as the build locates it; the lock is the store's, wherever that is
            assert err.startswith(f"featurestore build: error: {named} is being written by another build (host ")
            assert f", pid {first.pid}, started " in err and err.count("\n") == 1
        os.kill(first.pid, signal.SIGKILL)  # the lock dies with its holder
        first.wait(timeout=30)
    finally:
        first.kill()
    resumed = _start(store_corpus, out)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    reference = tmp_path / "reference.zarr"
    _build(store_corpus, store_corpus.manifest, reference, cluster=dask_cluster)
    assert_same_arrays(read_arrays(out), read_arrays(reference))
    assert verify(open_store(out))[1] == []
    assert not Path(f"{out}.lock").exists(), "a finished build removes its lock file"


@pytest.mark.reliability
def test_the_object_store_lock_refuses_a_second_writer_and_expires_with_a_killed_one(tmp_path, monkeypatch):
    """Real processes against an S3 API server: the lock is a conditional PUT with a heartbeat."""
    from benchmarks.s3 import moto_s3
    from featurestore.builder.lock import lock_url, writer_lock

    url = "s3://locks/store.zarr"
    holder = ("import sys, time\nfrom featurestore.builder.lock import writer_lock\n"
              f"with writer_lock({url!r}):\n    print('held', flush=True)\n    time.sleep(600)\n")
    with moto_s3("locks") as fs:
        proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "held\n"
            with pytest.raises(UserError, match=rf"is being written by another build \(host .*, pid {proc.pid}, "):
                with writer_lock(url):
                    pass
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
        assert fs.exists(lock_url(url).removeprefix("s3://")), "a killed holder leaves its lock object behind"
        with pytest.raises(UserError, match="being written by another build"):
            with writer_lock(url):  # within the stale time, the dead holder still counts
                pass
        monkeypatch.setenv("FEATURESTORE_LOCK_STALE_SECONDS", "1")
        time.sleep(1.5)
        with writer_lock(url) as mine:  # its heartbeat stopped: taken over, as the next generation
            assert mine.holder["generation"] == 2
            assert mine._latest()[1]["token"] == mine.holder["token"]
        assert mine._latest()[1]["released"] is True  # released: the next build takes generation 3 at once
        with writer_lock(url) as next_one:
            assert next_one.holder["generation"] == 3


@pytest.mark.reliability
def test_adding_a_feature_survives_a_kill_and_resumes_per_array(store_corpus, dask_cluster, tmp_path, capsys):
    out, marker = tmp_path / "store.zarr", tmp_path / "reached"
    _build(store_corpus, store_corpus.manifest, out, SPEC.select(["logmel", "mfcc"]), dask_cluster)
    proc = _start(store_corpus, out, "--features", "waveform", point="commit:3", marker=marker)
    try:
        _wait(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = open_store(out)
    assert len(store.committed(["waveform"])) == 2 and len(store.committed(["logmel", "mfcc"])) == store.layout.n_shards
    assert (store.status_for(["logmel"]) != 0).all(), "the stored features stay readable while one is added"
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    state = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("state"))
    pending = store.n_clips - sum(b - a for a, b in map(store.layout.shard_range, store.committed(["waveform"])))
    assert f"{pending} of {store.n_clips} clips pending in waveform (logmel, mfcc complete)" in state, state
    resumed = _build(store_corpus, store_corpus.manifest, out, SPEC.select(["waveform"]), dask_cluster,
                     shard_clips=None)
    assert resumed.shards_built == store.layout.n_shards - 2 and resumed.pending == 0
    fresh = tmp_path / "fresh.zarr"
    _build(store_corpus, store_corpus.manifest, fresh, SPEC.select(["logmel", "mfcc", "waveform"]),
           dask_cluster)
    assert_same_arrays(read_arrays(out), read_arrays(fresh))
    assert verify(open_store(out))[1] == []
