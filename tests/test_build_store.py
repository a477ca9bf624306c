"""The Dask build: failures, statistics, read-back, determinism, resume, refusals, codecs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import warnings

import numpy as np
import pytest

import manifests

pytest.register_assert_rewrite("helpers_store")

from featurestore.builder.cluster import dask_client
from helpers_store import build_store
from featurestore.errors import UserError
from featurestore.store import FAILED, OK, PENDING, open_store
from featurestore.store.layout import clip_arrays
from featurestore.store.commits import read_documents
from helpers_store import BROKEN, SPEC, assert_same_arrays, read_arrays

pytest_plugins = ["helpers_store"]


def test_broken_files_fail_with_their_reason_and_never_stop_the_build(built_store, store_corpus):
    url, report = built_store
    store = open_store(url)
    assert store.build_state == "complete"
    assert (report.ok, report.failed, report.pending) == (store_corpus.n_rows - len(BROKEN), len(BROKEN), 0)
    status = store.status
    assert status.shape == (store_corpus.n_rows,) and not (status == PENDING).any()
    assert np.count_nonzero(status == OK) + np.count_nonzero(status == FAILED) == store_corpus.n_rows

    manifest = store.manifest
    source = manifests.load(store_corpus.manifest).table
    assert manifest.drop(columns="error").equals(source)  # the manifest's rows, in its order
    for kind, row in store_corpus.broken_rows.items():
        assert status[row] == FAILED, kind
        reason = manifest["error"].iat[row]
        assert reason and "\n" not in reason and BROKEN[kind][1] in reason, (kind, reason)
    assert manifest["error"].isna().sum() == store_corpus.n_rows - len(BROKEN)
    assert all(any(kind in r for kind in BROKEN) for r in report.first_reasons)

    failed = status == FAILED
    for name in clip_arrays(store.spec):
        values = store.array(name)[:]
        if name != "status":
            assert not values[failed].any(), f"{name} rows of failed clips must stay zero"
        if name in store.spec.arrays:
            assert np.isfinite(values).all()
            assert values[~failed].any(axis=tuple(range(1, values.ndim))).all(), f"{name} of ok clips is empty"
    assert (store.array("length")[:][~failed] == SPEC.n_samples).all()  # 1.2-s clips, cut to 1 s


def test_the_report_says_where_each_tasks_time_went(built_store):
    _, report = built_store
    profile = report.profile
    assert sorted(t["shard"] for t in profile.tasks) == list(range(report.shards))
    assert sum(t["clips"] for t in profile.tasks) == report.ok + report.failed
    for task in profile.tasks:
        busy = task["ended"] - task["began"]
        assert profile.submitted <= task["began"] <= task["ended"] <= profile.collected
        assert sum(task["stages"].values()) == pytest.approx(busy, rel=0.05, abs=0.005)  # laps cover the task
        if task["decoded"] > task["clips"] // 2:
            assert {"open and peek", "decode", "STFT", "mel filterbank", "compress and write",
                    "content hash"} <= set(task["stages"])
    assert set(profile.phases) == {"manifest", "store state", "plan", "cluster start-up", "store set-up", "tasks",
                                   "cluster shut-down", "finish"}
    assert sum(profile.phases.values()) <= report.elapsed


def test_statistics_equal_numpy_over_the_stored_train_clips(built_store):
    store = open_store(built_store[0])
    train_ok = (store.manifest["split"].to_numpy() == "train") & (store.status == OK)
    assert 0 < train_ok.sum() < len(train_ok)
    for feature in ("logmel", "mfcc"):
        x = store.array(feature)[:][train_ok].astype(np.float64)  # (clips, band, frame)
        mean, std = store.stats(feature)
        assert mean.dtype == std.dtype == np.float32 and mean.shape == (x.shape[1],)
        np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(std, x.std(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="waveform"):
        store.stats("waveform")


def test_store_reads_back_with_plain_zarr_and_xarray(built_store):
    import xarray as xr
    import zarr

    url = built_store[0]
    group = zarr.open_group(str(url), mode="r")
    attrs = json.loads(group.attrs["featurestore"])  # one JSON string: netCDF takes no nested attributes
    assert attrs["spec"] == SPEC.to_dict() and attrs["build_state"] == "complete"
    assert attrs["labels"] == ["blues", "classical", "country", "disco", "hiphop", "jazz"]
    assert group["logmel"].metadata.dimension_names == ("clip", "mel", "frame")
    assert group["logmel"].dtype == np.float16 and group["length"].dtype == np.int64
    n = attrs["n_clips"]
    assert group["logmel"].shape == (n, *SPEC.feature("logmel").clip_shape())
    assert group["logmel"].chunks[0] == attrs["chunk_clips"] and group["logmel"].shards[0] == attrs["shard_clips"]
    assert n / attrs["shard_clips"] > 2, "small builds still get several shards"

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every object in the store is part of the Zarr hierarchy
        ds = xr.open_zarr(str(url), consolidated=False)
    assert set(ds.data_vars) >= {"logmel", "mfcc", "waveform", "status", "length", "logmel_mean", "mfcc_std"}
    assert ds["logmel"].dims == ("clip", "mel", "frame")
    assert ds["waveform"].dims == ("clip", "crop", "sample")
    assert ds["mfcc"].dims == ("clip", "coefficient", "frame")
    assert ds["status"].dims == ("clip",) and ds["logmel_mean"].dims == ("mel",)
    assert ds["status"].dtype == np.uint8  # zarr's fill value does not turn into a NaN mask
    np.testing.assert_array_equal(ds["logmel"].values, group["logmel"][:])
    np.testing.assert_array_equal(ds["mfcc_std"].values, open_store(url).stats("mfcc")[1])


def test_a_complete_store_is_not_rebuilt(built_store, store_corpus):
    url, first = built_store
    before = read_arrays(url)
    again = build_store(store_corpus.manifest, store_corpus.audio, url, SPEC, workers=1, progress=False)
    assert (again.shards_built, again.shards_skipped) == (0, first.shards)
    assert (again.ok, again.failed, again.pending) == (first.ok, first.failed, 0)
    assert_same_arrays(read_arrays(url), before)


def test_resume_after_sigkill_is_bit_identical_to_an_uninterrupted_build(store_corpus, dask_cluster, tmp_path):
    killed = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "featurestore", "build", str(store_corpus.big_manifest),
           "--audio-root", str(store_corpus.audio), "--out", str(killed), "--duration", "1",
           "--crop-samples", "4096", "--workers", "1", "--shard-size", "8", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list((killed / "commits").glob("shard-*/zarr.json")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was committed in time"
            time.sleep(0.005)
    finally:
        _kill_with_workers(proc)

    interrupted = open_store(killed)
    n_shards = interrupted.layout.n_shards
    committed = len(read_documents(str(killed)))
    assert interrupted.build_state == "building" and 1 <= committed < n_shards, (committed, n_shards)

    resumed = build_store(store_corpus.big_manifest, store_corpus.audio, killed, SPEC,
                          scheduler=dask_cluster.scheduler_address, progress=False)
    assert resumed.shards_skipped == committed and resumed.shards_built == n_shards - committed
    whole = tmp_path / "whole.zarr"
    build_store(store_corpus.big_manifest, store_corpus.audio, whole, SPEC, shard_clips=8,
                scheduler=dask_cluster.scheduler_address, progress=False)
    assert_same_arrays(read_arrays(killed), read_arrays(whole))
    assert open_store(killed).manifest.equals(open_store(whole).manifest)


def _kill_with_workers(proc: subprocess.Popen) -> None:
    """SIGKILL the build and its Dask worker processes, as a crash of the machine would."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    proc.stderr.close()
    psutil.wait_procs(family, timeout=10)


def test_refuses_another_spec_another_manifest_and_foreign_folders(built_store, store_corpus, dask_cluster, tmp_path):
    url = built_store[0]
    with pytest.raises(UserError, match=r"holds logmel built with n_mels 80 \(this build: 64\): give the new array another name.*--overwrite"):
        build_store(store_corpus.manifest, store_corpus.audio, url, SPEC.replace(n_mels=64), progress=False)
    with pytest.raises(UserError, match="row 0 of the manifest is clip .* a store only grows.*--overwrite"):
        build_store(store_corpus.big_manifest, store_corpus.audio, url, SPEC, progress=False)
    with pytest.raises(UserError, match="--shard-size 8"):
        build_store(store_corpus.manifest, store_corpus.audio, url, SPEC, shard_clips=16, progress=False)
    assert open_store(url).build_state == "complete"

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a feature store.*--overwrite"):
        build_store(store_corpus.manifest, store_corpus.audio, foreign, SPEC, progress=False)
    assert (foreign / "todo.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="multiple of 8"):
        build_store(store_corpus.manifest, store_corpus.audio, tmp_path / "new.zarr", SPEC, shard_clips=12)

    with pytest.raises(UserError, match="not a feature store.*nothing here was deleted"):
        build_store(store_corpus.manifest, store_corpus.audio, foreign, SPEC, overwrite=True,
                    scheduler=dask_cluster.scheduler_address, progress=False)
    assert (foreign / "todo.txt").read_text() == "keep me"


def test_quantized_codec_bounds_the_error_and_is_smaller_than_float16(built_store, store_corpus, dask_cluster, tmp_path):
    from featurestore.audio import decode
    from featurestore.features.extract import FeatureExtractor

    spec = SPEC.replace(codec="quantized:0.0625")
    out = tmp_path / "q.zarr"
    build_store(store_corpus.manifest, store_corpus.audio, out, spec,
                scheduler=dask_cluster.scheduler_address, progress=False)
    q, f16 = open_store(out), open_store(built_store[0])
    assert q.array("logmel").dtype == np.float32 and q.array("mfcc").dtype == np.float16
    assert q.array("logmel").raw.attrs["scale_factor"] == 1 / 16  # CF packing: the error is at most 1/32 dB

    extractor = FeatureExtractor(SPEC)
    ok = np.flatnonzero(q.status == OK)
    exact = np.stack([extractor(decode(store_corpus.audio / p, SPEC.decoding).samples)["logmel"]
                      for p in q.manifest["path"].iloc[ok]])
    assert exact.min() >= -100.001 and exact.max() <= 40  # the range the bound is promised over
    q_err = np.abs(q.array("logmel")[:][ok] - exact).max()
    f16_err = np.abs(f16.array("logmel")[:][ok].astype(np.float32) - exact).max()
    assert q_err <= 1 / 32 and f16_err <= 1 / 32
    assert q.array("logmel").nbytes_stored() < f16.array("logmel").nbytes_stored()
    np.testing.assert_array_equal(q.array("mfcc")[:], f16.array("mfcc")[:])


def test_audio_and_store_behind_fsspec_urls(built_store, store_corpus):
    """memory:// lives in one process, so the cluster's workers are threads of this one."""
    import fsspec
    from dask.distributed import LocalCluster

    fs = fsspec.filesystem("memory")
    for path in store_corpus.audio.rglob("*"):
        if path.is_file():
            fs.pipe_file(f"/audio/{path.relative_to(store_corpus.audio).as_posix()}", path.read_bytes())
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
            report = build_store(store_corpus.manifest, "memory://audio", "memory://store.zarr", SPEC,
                                 scheduler=cluster.scheduler_address, progress=False)
        assert (report.ok, report.failed) == (built_store[1].ok, built_store[1].failed)
        store, local = open_store("memory://store.zarr"), open_store(built_store[0])
        for name in clip_arrays(SPEC):
            np.testing.assert_array_equal(store.array(name)[:], local.array(name)[:])
        assert list(store.manifest["error"].notna()) == list(local.manifest["error"].notna())
    finally:
        fs.rm("/audio", recursive=True)
        fs.rm("/store.zarr", recursive=True)


def test_local_workers_get_their_environment_before_they_start():
    before = dict(os.environ)
    with dask_client(workers=1, worker_env={"FEATURESTORE_TEST": "1"}) as client:
        env = next(iter(client.run(lambda: dict(os.environ)).values()))
    # Dask's MALLOC_TRIM_THRESHOLD_=65536 slowed build tasks: fixed glibc thresholds instead
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(256 * 2**20) and env["MALLOC_MMAP_THRESHOLD_"] == str(64 * 2**20)
    assert env["FEATURESTORE_TEST"] == "1" and env["OMP_NUM_THREADS"] == "1"
    assert dict(os.environ) == before, "the driver's own environment is left as it was"
    with dask_client(workers=1, worker_env={"MALLOC_TRIM_THRESHOLD_": None}) as client:
        env = next(iter(client.run(lambda: dict(os.environ)).values()))
    assert "MALLOC_TRIM_THRESHOLD_" not in env and "FEATURESTORE_TEST" not in env, "no settings leak between clusters"


def test_bad_requests_are_one_line_user_errors(store_corpus, tmp_path):
    with pytest.raises(UserError, match="not both"):
        build_store(store_corpus.manifest, store_corpus.audio, tmp_path / "x", SPEC, workers=2, scheduler="tcp://x:1")
    with pytest.raises(UserError, match="unknown codec"):
        build_store(store_corpus.manifest, store_corpus.audio, tmp_path / "x", SPEC.replace(codec="gzip"))
    with pytest.raises(UserError, match="not found"):
        build_store(tmp_path / "none.parquet", store_corpus.audio, tmp_path / "x", SPEC)
    assert not (tmp_path / "x").exists()


def test_a_shard_without_its_commit_record_reads_as_pending_and_is_rebuilt(built_store, store_corpus, tmp_path,
                                                                           dask_cluster):
    """After an interrupted build, tasks still running may have written a shard the driver never
    committed: readers must not take its clips as ok, and a re-run must rebuild it."""
    import shutil

    url, _ = built_store
    copy = tmp_path / "store.zarr"
    shutil.copytree(url, copy)
    store = open_store(copy)
    start, stop = store.layout.shard_range(1)
    assert (store.array("status")[start:stop] != PENDING).all()
    shutil.rmtree(copy / "commits" / "shard-00001")

    status = open_store(copy).status
    assert (status[start:stop] == PENDING).all() and open_store(copy).n_pending == stop - start
    assert (np.delete(status, np.s_[start:stop]) != PENDING).all()

    again = build_store(store_corpus.manifest, store_corpus.audio, copy, SPEC,
                        scheduler=dask_cluster.scheduler_address, progress=False)
    assert again.shards_built == 1 and again.pending == 0
    assert_same_arrays(read_arrays(copy), read_arrays(url))
