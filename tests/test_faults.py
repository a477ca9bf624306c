"""What a hostile user (or a bad day on a cluster) does to a store and a build, with real
processes: damaged stores are never trained on, one bad file costs only itself, nothing hangs
without a word, and every user error is one line."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import manifests
from featurestore.audio import AudioError, decode
from helpers_store import build_store
from featurestore.cli import main
from featurestore.errors import StoreFormatError, UserError
from featurestore.features import rediscover
from featurestore.store import FAILED, OK, open_store
from featurestore.store.inspect import verify
from helpers_plugins import install_plugin
from helpers_store import SPEC, assert_same_arrays, read_arrays
from trainers.prepare import check_complete

pytest_plugins = ["helpers_store"]

FEATURESTORE = Path(sys.executable).with_name("featurestore")
DASK = Path(sys.executable).with_name("dask")
SPEC_ARGS = ["--duration", "1", "--crop-samples", "4096", "--shard-size", "8", "--quiet"]
SPEC_SHAPE = SPEC.feature("logmel").clip_shape()


def store_corpus_rows(built_store) -> int:
    return open_store(built_store[0]).n_clips


def _copy(built_store, tmp_path: Path) -> Path:
    copy = tmp_path / "store.zarr"
    shutil.copytree(built_store[0], copy)
    return copy


def _train(store: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", str(store), "--model", "cnn3", "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--crop-frames", "16", "--num-workers", "0", *extra])
    return code, capsys.readouterr().err


# --- damaged stores ------------------------------------------------------------------------------


def test_a_deleted_or_truncated_shard_file_stops_training_until_the_build_rebuilds_it(
        built_store, store_corpus, dask_cluster, tmp_path, capsys):
    store = _copy(built_store, tmp_path)
    (store / "logmel" / "c" / "1" / "0" / "0").unlink()  # what `rm` of one shard file does
    waveform = store / "waveform" / "c" / "2" / "0" / "0"
    waveform.write_bytes(waveform.read_bytes()[:-100])  # a truncated copy

    code, err = _train(store, tmp_path, capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "is damaged: 1 shard(s) (shard-00001) no longer match their commit records for logmel" in err
    assert f"featurestore verify {store}" in err and not (tmp_path / "run" / "best.pt").exists()
    assert main(["info", str(store)]) == 0
    assert "DAMAGED: marked complete, but 16 clips" in capsys.readouterr().out
    shards, problems = verify(open_store(store))
    assert any(p.startswith("shard-00001") and "logmel" in p for p in problems), problems
    assert any(p.startswith("shard-00002") and "waveform" in p for p in problems), problems

    report = build_store(store_corpus.manifest, store_corpus.audio, store, SPEC, scheduler=dask_cluster.scheduler_address,
                         progress=False)
    assert report.shards_built == 2 and report.pending == 0  # only the two damaged shards, one array each
    print(f"\ndamaged shards: rebuilt {report.shards_built} shard(s), decoding {report.decoded} clips, "
          f"in {report.elapsed:.1f} s")
    assert verify(open_store(store))[1] == []
    assert_same_arrays(read_arrays(store), read_arrays(built_store[0]))


def test_a_lost_commit_record_or_one_of_another_store_stops_training(built_store, tmp_path, capsys):
    store = _copy(built_store, tmp_path)
    shutil.rmtree(store / "commits" / "shard-00002")
    meta_path = store / "commits" / "shard-00000" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["featurestore"]["store_id"] = "0" * 32  # a record copied from another store
    meta_path.write_text(json.dumps(meta))
    code, err = _train(store, tmp_path, capsys)
    assert code == 2 and "is damaged: 2 shard(s) (shard-00000, shard-00002)" in err, err
    assert not (tmp_path / "run" / "best.pt").exists()


def test_flipped_bytes_pass_the_cheap_check_but_not_the_full_one(built_store, tmp_path):
    store = _copy(built_store, tmp_path)
    shard = store / "logmel" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF  # same size: only a re-hash sees it
    shard.write_bytes(bytes(data))
    opened = open_store(store)
    check_complete(opened, ("logmel",), allow_partial=False)  # existence and sizes are as recorded
    with pytest.raises(UserError, match=r"fails verification \(\d+ problem\(s\); first: shard-00000"):
        check_complete(opened, ("logmel",), allow_partial=False, full_check=True)


# --- hostile audio: bounded decode memory ---------------------------------------------------------


def _sparse_wav(path: Path, channels: int, rate: int, seconds: float) -> Path:
    """A 16-bit PCM WAV whose data is a hole: tiny on disk, channels x rate x seconds declared."""
    size = channels * 2 * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
                + b"data" + struct.pack("<I", size))
        f.truncate(44 + size)
    return path


def test_huge_channel_counts_and_rates_are_refused_from_the_header_and_slow_rates_fail(tmp_path):
    huge = _sparse_wav(tmp_path / "sparse.wav", 64, 512_000, 20)
    assert huge.stat().st_blocks * 512 < 1 << 20 and huge.stat().st_size > 1 << 30
    spec = SPEC.replace(duration=20.0)
    started = time.perf_counter()
    with pytest.raises(AudioError, match=r"refused: 64 channels at 512000 Hz would take 2\.6\d GB to decode "
                                         r"\(limits 16 channels, 384000 Hz: --max-channels, --max-input-rate\)"):
        decode(huge, spec.decoding)
    assert time.perf_counter() - started < 1, "refused from the header, before reading"
    assert decode(_sparse_wav(tmp_path / "ok.wav", 16, 48_000, 1), SPEC.decoding).length == SPEC.n_samples
    for rate in (1, 8, 999):
        path = tmp_path / f"slow-{rate}.wav"
        sf.write(path, np.zeros(4 * rate + 8, dtype=np.float32), rate)
        with pytest.raises(AudioError, match=rf"sample rate {rate} Hz is below 1000 Hz"):
            decode(path, SPEC.decoding)


# --- a clip that kills its worker ------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_plugin(tmp_path_factory):
    """An installed distribution whose feature segfaults on silence (tests/plugin_crash.py)."""
    site = install_plugin(tmp_path_factory.mktemp("site"), "plugin_crash.py", "featurestore_crashy", "crashy", "Crashy")
    return {**os.environ, "PYTHONPATH": str(site)}


@pytest.mark.reliability
def test_a_clip_that_kills_its_worker_fails_alone_named_with_the_signal(crash_plugin, store_corpus, tmp_path):
    m = manifests.load(store_corpus.few_manifest)  # 8 rows, one of them a broken file
    audio = tmp_path / "audio"  # its own audio root: the shared corpus stays as it is
    for path in m.table["path"]:
        if (store_corpus.audio / path).exists():
            (audio / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(store_corpus.audio / path, audio / path)
    table = m.table.copy()
    sf.write(audio / "silent.wav", np.zeros(24_000, dtype=np.float32), 16_000)
    table.loc[5, ["clip_id", "path"]] = ["silent", "silent.wav"]
    _sparse_wav(audio / "sparse.wav", 64, 512_000, 20)  # 16 KB on disk, 2.6 GB to decode
    table.loc[6, ["clip_id", "path"]] = ["sparse", "sparse.wav"]
    manifest = manifests.save(manifests.Manifest(table, m.meta), tmp_path / "manifest.parquet")
    out = tmp_path / "store.zarr"
    started = time.monotonic()
    done = subprocess.run([str(FEATURESTORE), "build", str(manifest), "--audio-root", str(audio),
                           "--out", str(out), "--features", "logmel,crashy", "--workers", "2", *SPEC_ARGS],
                          capture_output=True, text=True, env=crash_plugin, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "the task of shard-00000 died with its worker on every try (worker process " in done.stderr
    assert "was killed by signal 11 (SIGSEGV)); trying its 8 clip(s) one by one" in done.stderr
    assert "ok 5, failed 3, pending 0 of 8 clips" in done.stdout, done.stdout
    sys.path.insert(0, crash_plugin["PYTHONPATH"])
    rediscover()
    try:
        store = open_store(out)
        status, errors = store.status, store.manifest["error"]
    finally:
        sys.path.remove(crash_plugin["PYTHONPATH"])
        rediscover()
    assert status[5] == FAILED and status[6] == FAILED and (status == OK).sum() == 5
    assert errors[5].startswith("the worker decoding this file died on every try (worker process ")
    assert "was killed by signal 11 (SIGSEGV)" in errors[5]
    assert errors[6].startswith("refused: 64 channels at 512000 Hz would take 0.13 GB to decode")
    print(f"\nclip that kills its worker: isolated and built in {time.monotonic() - started:.1f} s")


# --- no silent hang ------------------------------------------------------------------------------


class _CliCluster:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1 (they stop by themselves if this
    process dies: the scheduler after 10 idle minutes, the workers 20 s after losing it)."""

    def __init__(self, folder: Path, workers: int):
        from dask.distributed import Client

        file = folder / "scheduler.json"
        log = (folder / "cluster.log").open("wb")
        self.processes = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                            "--no-dashboard", "--scheduler-file", file, "--idle-timeout", "600"],
                                           stdout=log, stderr=log)]
        self.processes += [subprocess.Popen([DASK, "worker", "--scheduler-file", file, "--host", "127.0.0.1",
                                             "--nthreads", "1", "--no-dashboard", "--death-timeout", "20"],
                                            stdout=log, stderr=log) for _ in range(workers)]
        deadline = time.monotonic() + 60
        while not file.exists():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.05)
        self.address = json.loads(file.read_text())["address"]
        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    def close(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _build(store_corpus, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(FEATURESTORE), "build", str(store_corpus.big_manifest), "--audio-root",
                             str(store_corpus.audio), "--out", str(out), *SPEC_ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_a_commit(out: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list((out / "commits").glob("shard-*/zarr.json")):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no shard was committed"
        time.sleep(0.02)


def _freeze_a_worker_holding_an_unfetched_result(address: str, proc: subprocess.Popen) -> int:
    """SIGSTOP a worker once a shard task it ran has finished but before the driver (stopped
    meanwhile) fetched its result; the worker's pid. The driver must then neither hang on that
    result nor miss the stall."""
    from dask.distributed import Client

    def state(dask_scheduler, key: str) -> str | None:
        task = dask_scheduler.tasks.get(key)
        return None if task is None else task.state

    with Client(address, timeout="30s") as client:
        pids = client.run(os.getpid)
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the build ended before a shard task was seen running"
            assert time.monotonic() < deadline, "no shard task was seen running"
            executing = client.run(lambda dask_worker: [str(t.key) for t in dask_worker.state.executing])
            running = next(((worker, key) for worker, keys in executing.items() if worker in pids
                            for key in keys if key.startswith("build-shard-")), None)
            if running is None:
                time.sleep(0.01)
                continue
            worker, key = running
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                while (now := client.run_on_scheduler(state, key=key)) not in ("memory", None):
                    assert time.monotonic() < deadline, f"{key} did not finish"
                    time.sleep(0.01)
                if now == "memory":  # finished, its result not fetched: the driver is stopped
                    os.kill(pids[worker], signal.SIGSTOP)
                    return pids[worker]
                # the driver fetched it in the instant before it was stopped: try the next task
            finally:
                os.kill(proc.pid, signal.SIGCONT)


@pytest.mark.reliability
def test_a_stopped_scheduler_stops_the_build_with_one_line(store_corpus, tmp_path):
    cluster = _CliCluster(tmp_path, workers=1)
    out = tmp_path / "store.zarr"
    try:
        proc = _build(store_corpus, out, "--scheduler", cluster.address, "--scheduler-timeout", "3")
        try:
            _wait_for_a_commit(out, proc)
            os.kill(cluster.processes[0].pid, signal.SIGSTOP)
            stopped = time.monotonic()
            _, err = proc.communicate(timeout=120)
            took = time.monotonic() - stopped
        finally:
            proc.kill()
    finally:
        cluster.close()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"featurestore build: error: the Dask scheduler at {cluster.address} "
                                                   "has not answered for 3 s (stopped, overloaded or unreachable)")
    assert took < 60, f"stopped {took:.0f} s after the scheduler"
    print(f"\nstopped scheduler: the build gave up {took:.1f} s after SIGSTOP")


@pytest.mark.reliability
def test_a_frozen_worker_and_the_stall_it_causes_are_reported_and_the_build_then_finishes(store_corpus, tmp_path):
    cluster = _CliCluster(tmp_path, workers=2)
    out = tmp_path / "store.zarr"
    lines: list[str] = []
    try:
        proc = _build(store_corpus, out, "--scheduler", cluster.address,
                      env={**os.environ, "FEATURESTORE_STALL_SECONDS": "3"})
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        try:
            _wait_for_a_commit(out, proc)
            frozen = _freeze_a_worker_holding_an_unfetched_result(cluster.address, proc)
            deadline = time.monotonic() + 180
            while not (any("has not been heard from" in line for line in lines)
                       and any("no shard has finished for" in line for line in lines)):
                assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.1)
            reported = time.monotonic()
            os.kill(frozen, signal.SIGCONT)
            proc.wait(timeout=120)
            reader.join(timeout=10)
        finally:
            proc.kill()
    finally:
        cluster.close()
    assert proc.returncode == 0 and "Traceback" not in "".join(lines), "".join(lines)
    warned = next(line for line in lines if "has not been heard from" in line)
    assert warned.startswith("featurestore build: warning: Dask worker tcp://127.0.0.1:")
    assert "ok 72, failed 0, pending 0" in proc.stdout.read()
    print(f"\nfrozen worker: reported, then the build finished {time.monotonic() - reported:.1f} s after SIGCONT")


@pytest.mark.reliability
def test_a_local_cluster_left_without_workers_gets_new_ones_and_the_build_finishes(store_corpus, tmp_path,
                                                                                   monkeypatch, capsys):
    """Workers whose nannies will not restart them (here: told to close; in the wild, a
    worker that died while its nanny was still starting it) must not leave the build waiting."""
    from dask.distributed import Client, default_client

    def own_client():
        try:
            return default_client()  # the build's, once it has started its cluster
        except ValueError:
            return None

    monkeypatch.setenv("FEATURESTORE_STALL_SECONDS", "3")
    out, outcome = tmp_path / "store.zarr", {}
    build = threading.Thread(target=lambda: outcome.update(report=build_store(
        store_corpus.big_manifest, store_corpus.audio, out, SPEC, workers=2, shard_clips=8, progress=False)),
        daemon=True)
    build.start()
    deadline = time.monotonic() + 120
    while (own := own_client()) is None or not list((out / "commits").glob("shard-*/zarr.json")):
        assert build.is_alive() and time.monotonic() < deadline, "the build ended or committed nothing"
        time.sleep(0.05)
    with Client(own.scheduler.address, timeout="30s", set_as_default=False) as admin:
        workers = list(admin.scheduler_info()["workers"])
        admin.run_on_scheduler(lambda dask_scheduler: [dask_scheduler.close_worker(w) for w in workers])
    build.join(timeout=300)
    assert not build.is_alive(), "the build waited for workers that never came"
    report = outcome["report"]
    assert (report.ok, report.failed, report.pending) == (72, 0, 0)
    assert "2 of the local cluster's 2 worker(s) died and were not restarted for " in capsys.readouterr().err
    assert verify(open_store(out))[1] == []


# --- the numba cache ---------------------------------------------------------------------------


@pytest.mark.reliability
def test_two_workers_compiling_librosa_into_one_empty_cache_leave_it_usable(store_corpus, tmp_path):
    cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    done = subprocess.run([str(FEATURESTORE), "build", str(store_corpus.few_manifest), "--audio-root",
                           str(store_corpus.audio), "--out", str(tmp_path / "store.zarr"), "--features", "handcrafted",
                           "--segment-seconds", "0.5", "--workers", "2", *SPEC_ARGS],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0 and "ok 7, failed 1, pending 0 of 8 clips" in done.stdout, done.stdout + done.stderr
    assert (cache / ".featurestore-compile.lock").exists() and list(cache.rglob("*.nbi"))
    again = subprocess.run([sys.executable, "-c", "import numpy as np, librosa; librosa.feature.chroma_stft("
                            "y=np.random.default_rng(0).uniform(-1, 1, 22050).astype('float32'), sr=22050); "
                            "librosa.feature.spectral_contrast(y=np.ones(22050, 'float32'), sr=22050)"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr  # a corrupted cache segfaults here (-11)


def test_one_process_at_a_time_holds_the_compile_lock(tmp_path, monkeypatch):
    from featurestore.environment import compiling

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    script = ("import sys; from featurestore.environment import compiling; print('waiting', flush=True)\n"
              "with compiling(): print('compiling', flush=True)")
    with compiling():
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert other.stdout.readline() == "waiting\n"
        time.sleep(1.0)
        assert other.poll() is None  # still waiting for the lock this process holds
    assert other.stdout.readline() == "compiling\n" and other.wait(timeout=60) == 0


def test_an_extractor_compiles_under_the_lock_once_and_only_when_its_features_use_librosa(monkeypatch):
    from featurestore.features import extract
    from featurestore.presets import preset

    entered = []

    @contextlib.contextmanager
    def recording():
        entered.append(True)
        yield

    monkeypatch.setattr(extract, "compiling", recording)
    spec = preset("gtzan").select(["logmel", "mfcc", "handcrafted"]).replace(duration=1.0, segment_seconds=0.5)
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, spec.n_samples).astype(np.float32)
    plain = extract.FeatureExtractor(spec, ["logmel", "mfcc"])
    plain(samples), plain(samples)
    assert entered == []
    handcrafted = extract.FeatureExtractor(spec, ["logmel", "handcrafted"])
    first, second = handcrafted(samples), handcrafted(samples)
    assert entered == [True] and np.array_equal(first["handcrafted"], second["handcrafted"])


# --- one-line errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["file:///x", "garbage", "tcp://[::1", "tcp://host:notaport"])
def test_malformed_scheduler_addresses_are_refused_before_anything_is_written(address, store_corpus, tmp_path,
                                                                             capsys):
    out = tmp_path / "store.zarr"
    assert main(["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
                 "--scheduler", address, *SPEC_ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"featurestore build: error: --scheduler {address!r} is not a Dask scheduler address")
    assert err.count("\n") == 1 and not out.exists()


def test_resuming_from_another_audio_root_is_refused_unless_the_audio_moved(built_store, store_corpus, tmp_path,
                                                                           dask_cluster, capsys):
    store = _copy(built_store, tmp_path)
    shutil.rmtree(store / "commits" / "shard-00001")  # something to decode again (an unfinished build)
    moved = tmp_path / "moved"
    shutil.copytree(store_corpus.audio, moved)
    args = ["build", str(store_corpus.manifest), "--out", str(store), "--scheduler", dask_cluster.scheduler_address,
            *SPEC_ARGS]
    assert main([*args, "--audio-root", str(moved)]) == 2
    err = capsys.readouterr().err
    assert f"was built from the audio under {store_corpus.audio}, this build gives --audio-root {moved}" in err
    assert main([*args, "--audio-root", str(moved), "--moved-audio"]) == 0
    assert open_store(store).attrs.audio_root == str(moved)
    assert_same_arrays(read_arrays(store), read_arrays(built_store[0]))


def test_info_into_a_closed_pipe_ends_quietly(built_store):
    proc = subprocess.Popen([str(FEATURESTORE), "info", str(built_store[0])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head` that has already exited
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


def _file_size_limit(limit: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.reliability
def test_a_full_disk_is_one_line_naming_the_file_in_build_and_in_train(built_store, store_corpus, tmp_path):
    """RLIMIT_FSIZE makes every write past 32 KB fail (EFBIG), as a full disk fails it (ENOSPC)."""
    out = tmp_path / "store.zarr"
    done = subprocess.run([str(FEATURESTORE), "build", str(store_corpus.manifest), "--audio-root",
                           str(store_corpus.audio), "--out", str(out), "--workers", "1", *SPEC_ARGS],
                          capture_output=True, text=True, timeout=600, preexec_fn=_file_size_limit(32 * 1024))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"featurestore build: error: cannot write the store {out} (File too large: {out}/"), line

    run = tmp_path / "run"
    done = subprocess.run([str(FEATURESTORE), "train", str(built_store[0]), "--model", "cnn3", "--out", str(run),
                           "--epochs", "1", "--crop-frames", "16", "--num-workers", "0"],
                          capture_output=True, text=True, timeout=600, preexec_fn=_file_size_limit(64 * 1024))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"featurestore train: error: cannot write the checkpoint {run}/"), line
    assert not [p for p in run.iterdir() if p.suffix == ".pt"]  # no half-written checkpoint under its name


def test_arrays_of_another_length_than_the_attributes_say_are_reported_never_trained_on(built_store, tmp_path,
                                                                                       capsys):
    """What a second writer that ignored the lock would leave: arrays of 16 clips under attributes of 29."""
    import zarr

    store = _copy(built_store, tmp_path)
    zarr.open_group(str(store), mode="r+", use_consolidated=False)["logmel"].resize((16, *SPEC_SHAPE))
    says = f"array logmel holds 16 clips where the root attributes say n_clips {store_corpus_rows(built_store)}"
    with pytest.raises(StoreFormatError, match=says):
        open_store(store)
    for command in (["verify", str(store)], ["info", str(store)]):
        assert main(command) == 2 and says in capsys.readouterr().err
    code, err = _train(store, tmp_path, capsys)
    assert code == 2 and says in err, err
