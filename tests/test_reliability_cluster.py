"""Builds on a real Dask cluster survive what clusters do to them: killed workers, a killed build
process at every stage, readers during a build, an output that turns unwritable, a shard whose
task kills every worker it runs on. Each case ends bit-identical to an undisturbed local build.

The cluster is started with the `dask` command-line tools, as on a shared machine; builds run as
real `featurestore build` processes, paused at exact points by tests/faultpoints.py when a test
needs to act at one. Recovery times are printed (`pytest -m reliability -s` shows them).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.register_assert_rewrite("helpers_store")

from helpers_store import build_store
from featurestore.cli import main
from featurestore.errors import UserError
from featurestore.store import OK, PENDING, open_store
from featurestore.store.commits import read_documents
from featurestore.store.inspect import verify
from helpers_cluster import dask_cli_cluster
from helpers_store import SPEC, assert_same_arrays, read_arrays

pytest_plugins = ["helpers_store"]
pytestmark = pytest.mark.reliability

FAULTPOINTS = Path(__file__).with_name("faultpoints.py")
SHARD = 8  # clips per shard: the 72-clip corpus makes 9 shards
SPEC_ARGS = ["--duration", "1", "--crop-samples", "4096", "--shard-size", str(SHARD), "--quiet"]
SUMMARY = re.compile(r"\((\d+) built now, (\d+) already committed\) in ([\d.]+) s")


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    with dask_cli_cluster(tmp_path_factory.mktemp("dask-cli"), workers=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, store_corpus):
    """The 72-clip corpus built undisturbed by a local cluster: what every case must equal."""
    out = tmp_path_factory.mktemp("reference") / "store.zarr"
    report = build_store(store_corpus.big_manifest, store_corpus.audio, out, SPEC, shard_clips=SHARD, workers=2,
                         progress=False)
    assert report.pending == 0 and report.shards == 9
    return out, read_arrays(out)


def _build_args(corpus, out: Path, *where: str) -> list[str]:
    return [str(corpus.big_manifest), "--audio-root", str(corpus.audio), "--out", str(out), *SPEC_ARGS, *where]


def _start(args: list[str], *, point: str | None = None, marker: Path | None = None, release: Path | None = None,
           drop_privileges: bool = False) -> subprocess.Popen:
    """`featurestore build ARGS` as its own process, paused at `point` when given."""
    if point is None:
        cmd = [sys.executable, "-m", "featurestore", "build", *args]
    else:
        cmd = [sys.executable, str(FAULTPOINTS), point, str(marker),
               *(["--release", str(release)] if release else []), "--", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_drop_file_override if drop_privileges else None)


def _drop_file_override() -> None:
    """Make file permissions bind the process even when tests run as root (CI containers do):
    drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so they are gone after exec."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"build exited {proc.returncode} before its fault point: {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the build never reached its fault point"
        time.sleep(0.01)


def _finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _rerun(capsys, args: list[str]) -> tuple[int, int, float]:
    """Re-run the same build in this process: (shards built now, already committed, seconds)."""
    capsys.readouterr()
    assert main(["build", *args]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    built, skipped, seconds = SUMMARY.search(captured.out).groups()
    return int(built), int(skipped), float(seconds)


def _assert_intact(out: Path, reference) -> None:
    """Complete, equal to the undisturbed build byte for byte, verified, no temporary left behind."""
    ref_url, ref_arrays = reference
    assert open_store(out).build_state == "complete"
    assert_same_arrays(read_arrays(out), ref_arrays)
    assert open_store(out).manifest.equals(open_store(ref_url).manifest)
    assert verify(open_store(out))[1] == []
    assert not [*out.rglob("*.partial"), *out.rglob(".*.tmp*")], "a killed writer's temporaries were left behind"


def _report(fault: str, **numbers) -> None:
    print(f"\nRECOVERY {fault}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


def test_a_cluster_build_equals_the_local_build(cli_cluster, store_corpus, local_reference, tmp_path, capsys):
    out = tmp_path / "cluster.zarr"
    built, skipped, seconds = _rerun(capsys, _build_args(store_corpus, out, "--scheduler", cli_cluster.address))
    assert (built, skipped) == (9, 0)
    _assert_intact(out, local_reference)
    _report("none (cluster build)", seconds=seconds)


def _worker_running_a_shard(client, proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str, int]:
    """(worker address, task key, pid) of a worker while it executes a shard task."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the build ended before a shard task was seen running: {proc.stderr.read()}"
        # a lambda travels by value; a function of this test module would need the module on the worker
        for address, keys in client.run(lambda dask_worker: [str(t.key) for t in dask_worker.state.executing]).items():
            shard_keys = [k for k in keys if k.startswith("build-shard-")]
            if shard_keys and address in pids:
                return address, shard_keys[0], pids[address]
        time.sleep(0.01)
    raise AssertionError("no shard task was seen running")


def test_a_worker_killed_mid_shard_costs_nothing(cli_cluster, store_corpus, local_reference, tmp_path):
    out = tmp_path / "store.zarr"
    started = time.monotonic()
    proc = _start(_build_args(store_corpus, out, "--scheduler", cli_cluster.address))
    try:
        _, key, pid = _worker_running_a_shard(cli_cluster.client, proc)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        code, stdout, err = _finish(proc)
    finally:
        proc.kill()
    assert code == 0, err
    assert "Traceback" not in err and "ok 72, failed 0, pending 0" in stdout
    _assert_intact(out, local_reference)
    _report("worker SIGKILL mid-shard", task=key, build_total=f"{time.monotonic() - started:.1f}s",
            kill_to_done=f"{time.monotonic() - killed_at:.1f}s")
    cli_cluster.client.wait_for_workers(2, timeout=60)  # its nanny starts a new one
    assert pid not in cli_cluster.client.run(os.getpid).values()


@pytest.mark.parametrize(("point", "committed"), [("created", 0), ("commit:1", 0), ("commit:5", 4), ("finishing", 9)],
                         ids=["early-store-created", "early-nothing-committed", "middle", "finalisation"])
def test_a_build_killed_anywhere_resumes_recomputing_only_uncommitted_shards(
        point, committed, cli_cluster, store_corpus, local_reference, tmp_path, capsys):
    out, marker = tmp_path / "store.zarr", tmp_path / "reached"
    args = _build_args(store_corpus, out, "--scheduler", cli_cluster.address)
    proc = _start(args, point=point, marker=marker)
    try:
        _wait_for(marker, proc)
        on_disk = len(read_documents(str(out)))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert on_disk == committed
    interrupted = open_store(out)
    assert interrupted.build_state == "building"
    assert interrupted.n_pending == interrupted.n_clips - SHARD * committed
    # what a writer killed mid-file leaves: zarr's temporary beside a shard, ours beside a record
    (out / "logmel" / "c" / "8").mkdir(parents=True, exist_ok=True)
    (out / "logmel" / "c" / "8" / f"0.{'ab' * 16}.partial").write_bytes(b"half a shard")
    (out / "commits" / "shard-00008").mkdir(exist_ok=True)
    (out / "commits" / "shard-00008" / f".zarr.json.{'cd' * 16}.tmp.json").write_bytes(b"{")

    built, skipped, seconds = _rerun(capsys, args)
    assert (built, skipped) == (9 - committed, committed)
    _assert_intact(out, local_reference)
    _report(f"build SIGKILL at {point}", committed=committed, recomputed=built, resume=f"{seconds:.1f}s")


def test_readers_during_a_build_see_only_committed_shards(cli_cluster, store_corpus, local_reference, tmp_path,
                                                         capsys):
    from trainers.config import load_run
    from trainers.inputs import InputConfig
    from trainers.prepare import open_data

    out, marker, release = tmp_path / "store.zarr", tmp_path / "reached", tmp_path / "release"
    proc = _start(_build_args(store_corpus, out, "--scheduler", cli_cluster.address), point="commit:5",
                  marker=marker, release=release)
    try:
        _wait_for(marker, proc)
        committed = sorted(read_documents(str(out)))
        assert committed and len(committed) == 4
        _wait_for_uncommitted_data(out, committed)  # the workers go on while the driver waits

        store = open_store(out)
        done = np.zeros(store.n_clips, bool)
        for index in committed:
            done[index * SHARD:(index + 1) * SHARD] = True
        assert ((store.status == OK) == done).all() and (store.status[~done] == PENDING).all()

        capsys.readouterr()
        assert main(["info", str(out)]) == 0
        info = capsys.readouterr().out
        assert f"ok {done.sum()}, failed 0, pending {(~done).sum()}" in info
        assert "INCOMPLETE (building)" in info and "re-running" in info

        inputs = InputConfig("logmel")
        with pytest.raises(UserError, match=r"still building: 40 of 72 clips pending.*--allow-partial"):
            open_data(str(out), inputs)
        data = open_data(str(out), inputs, allow_partial=True)
        used = np.concatenate(list(data.splits.values()))
        assert len(used) and done[used].all(), "a reader used clips of an uncommitted shard"

        run = tmp_path / "run"
        assert main(["train", str(out), "--out", str(run), "--model", "mlp", "--epochs", "1", "--num-workers", "0"]) == 2
        assert "--allow-partial" in capsys.readouterr().err and not run.exists()
        assert main(["train", str(out), "--out", str(run), "--model", "mlp", "--epochs", "1", "--num-workers", "0",
                     "--allow-partial"]) == 0
        assert load_run(run)["resolved"]["clips"]["train"] == int(
            (done & (store.manifest["split"] == "train").to_numpy()).sum())

        release.touch()
        code, stdout, err = _finish(proc)
    finally:
        proc.kill()
    assert code == 0, err
    _assert_intact(out, local_reference)


def _wait_for_uncommitted_data(out: Path, committed: list[int], timeout: float = 60) -> None:
    """Until some shard without a commit record has its clips written as ok on disk."""
    import zarr

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = zarr.open_group(str(out), mode="r")["status"][:]
        written = {i // SHARD for i in np.flatnonzero(raw == OK)}
        if written - set(committed):
            return
        time.sleep(0.05)
    raise AssertionError("no uncommitted shard was written while the driver waited")


@pytest.mark.parametrize(("locked", "point", "workers"), [("whole store", "commit:3", "2"),
                                                      ("array folders", "commit:1", "1")])
def test_an_output_that_turns_unwritable_stops_the_build_cleanly(locked, point, workers, cli_cluster, store_corpus,
                                                                 local_reference, tmp_path, capsys):
    """Locking the whole store fails the driver's next commit record; locking only the array
    folders fails a worker's next shard write (one worker, paused at its first result, has most
    shards still to write)."""
    out, marker, release = tmp_path / "store.zarr", tmp_path / "reached", tmp_path / "release"
    proc = _start(_build_args(store_corpus, out, "--workers", workers), point=point, marker=marker, release=release,
                  drop_privileges=True)
    try:
        _wait_for(marker, proc)
        tops = [out] if locked == "whole store" else [out / name for name in ("logmel", "mfcc", "waveform", "status",
                                                                              "length")]
        for top in tops:
            for folder in [top, *(p for p in top.rglob("*") if p.is_dir())]:
                folder.chmod(0o555)
        release.touch()
        stopped = time.monotonic()
        code, stdout, err = _finish(proc)
    finally:
        proc.kill()
        for folder in [out, *(p for p in out.rglob("*") if p.is_dir())]:
            folder.chmod(0o755)
    assert code == 2 and "Traceback" not in err, err
    *logged, message = err.strip().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d [\d:,]+ - distributed\.[\w.]+ - (INFO|WARNING) - ", line)
               for line in logged), err  # at most Dask's own notices of shutting down
    found = re.fullmatch(
        f"featurestore build: error: cannot write the store {re.escape(str(out))} "
        f"\\(Permission denied: {re.escape(str(out))}/(?P<where>[^ ]+)\\); the build stopped and its "
        "(?P<committed>\\d+) committed shard\\(s\\) stay intact: make the location writable and re-run the same "
        "command to resume", message)
    assert found, message
    assert ".tmp" not in message and ".partial" not in message, "the message names a temporary file"
    committed = int(found["committed"])
    if locked == "whole store":
        assert committed == 2
    else:
        assert found["where"].split("/")[0] in ("logmel", "mfcc", "waveform", "status", "length"), message
        assert 1 <= committed < 9

    assert len(read_documents(str(out))) == committed
    problems = verify(open_store(out))[1]
    assert all("not committed" in p or "build state" in p for p in problems), problems  # committed shards intact

    fixed = time.monotonic()
    built, skipped, seconds = _rerun(capsys, _build_args(store_corpus, out, "--scheduler", cli_cluster.address))
    assert (built, skipped) == (9 - committed, committed)
    _assert_intact(out, local_reference)
    _report(f"{locked} unwritable mid-build", committed=committed, recomputed=built, resume=f"{seconds:.1f}s",
            stop_after_fault=f"{fixed - stopped:.1f}s")


def test_a_shard_whose_worker_is_killed_on_every_try_is_probed_clip_by_clip_and_built(cli_cluster, store_corpus,
                                                                                      local_reference, tmp_path):
    """With allowed-failures 0 (the scheduler's limit of worker deaths per task), one death makes
    the shard's task fail with KilledWorker, as a file that crashes the decoder on every retry
    would. Its clips are then tried one by one; none kills a worker (the death came from outside),
    so the shard is built again whole and the store ends as if nothing happened."""
    client = cli_cluster.client
    allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    out = tmp_path / "store.zarr"
    args = _build_args(store_corpus, out, "--scheduler", cli_cluster.address)
    try:
        proc = _start(args)
        try:
            _, key, pid = _worker_running_a_shard(client, proc)
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            code, stdout, err = _finish(proc)
        finally:
            proc.kill()
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", allowed))
    assert code == 0 and "Traceback" not in err, err
    shard = int(re.match(r"build-shard-(\d+)-", key).group(1))
    assert f"the task of shard-{shard:05d} died with its worker on every try" in err and "one by one" in err, err
    assert "ok 72, failed 0, pending 0 of 72 clips" in stdout, stdout
    _assert_intact(out, local_reference)
    _report("shard task kills its worker (KilledWorker)", probed_shards=err.count("one by one"),
            build_after_kill=f"{time.monotonic() - killed:.1f}s")


def test_local_workers_do_not_outlive_a_killed_build(store_corpus, local_reference, tmp_path, capsys):
    """SIGKILL of the `featurestore build` process alone (what the OOM killer does): the local
    workers it started exit by themselves, and the re-run resumes."""
    import psutil

    out, marker = tmp_path / "store.zarr", tmp_path / "reached"
    args = _build_args(store_corpus, out, "--workers", "2")
    proc = _start(args, point="commit:5", marker=marker)
    try:
        _wait_for(marker, proc)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    killed = time.monotonic()
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"worker processes outlived the build: {alive}"
    orphans_gone = time.monotonic() - killed
    built, skipped, seconds = _rerun(capsys, args)
    assert (built, skipped) == (5, 4)
    _assert_intact(out, local_reference)
    _report("build SIGKILL with local workers", workers_exit=f"{orphans_gone:.1f}s", recomputed=built,
            resume=f"{seconds:.1f}s")


def test_losing_the_scheduler_stops_the_build_cleanly(cli_cluster, store_corpus, local_reference, tmp_path,
                                                      capsys):
    out, marker, release = tmp_path / "store.zarr", tmp_path / "reached", tmp_path / "release"
    with dask_cli_cluster(tmp_path, workers=1) as doomed:
        proc = _start(_build_args(store_corpus, out, "--scheduler", doomed.address), point="commit:3", marker=marker,
                      release=release)
        try:
            _wait_for(marker, proc)
            doomed.processes[0].send_signal(signal.SIGKILL)
            doomed.processes[0].wait()
            release.touch()
            lost = time.monotonic()
            code, stdout, err = _finish(proc)
            noticed = time.monotonic() - lost
        finally:
            proc.kill()
    assert code == 2 and "Traceback" not in err, err
    committed = len(read_documents(str(out)))  # 2, plus results the client held when the scheduler died
    assert committed >= 2
    assert err.strip().splitlines()[-1] == (
        f"featurestore build: error: lost the Dask cluster ({doomed.address}) during the build; its {committed} "
        "committed shard(s) stay intact: re-run the same command to resume")

    built, skipped, seconds = _rerun(capsys, _build_args(store_corpus, out, "--scheduler", cli_cluster.address))
    assert (built, skipped) == (9 - committed, committed)
    _assert_intact(out, local_reference)
    _report("scheduler SIGKILL", error_after=f"{noticed:.1f}s", recomputed=built, resume=f"{seconds:.1f}s")


@pytest.mark.parametrize("name", ["logmel", "mfcc", "waveform", "status", "length"])
def test_verify_names_a_shard_whose_bytes_changed_on_disk(name, local_reference, tmp_path, capsys):
    """One byte flipped in the middle of one shard file: whether it breaks decompression or only
    changes values, `featurestore verify` exits 1 naming that shard and no other."""
    import shutil

    out = tmp_path / "store.zarr"
    shutil.copytree(local_reference[0], out)
    ndim = len(open_store(out).array(name).shape)
    shard = out.joinpath(name, "c", "3", *["0"] * (ndim - 1))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))

    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert re.search(r"^shard-00003 \(clips 24-31\): (content differs from its commit record|unreadable: )",
                     captured.out, re.MULTILINE), captured.out
    assert {m for m in re.findall(r"shard-\d+", captured.out)} == {"shard-00003"}
    assert "problem(s) in 9 shard(s) checked" in captured.err


def test_workers_that_cannot_load_the_feature_libraries_stop_the_build_in_one_line(store_corpus, tmp_path):
    """The driver's environment is fine; the cluster's workers have a torchaudio that cannot load
    (a shadow package raising the OSError of a mismatched torch): one line naming a worker, exit 2,
    no shard attempted and no store created."""
    from helpers_environment import broken_package

    shadow = broken_package(tmp_path / "shadow", "torchaudio")
    with dask_cli_cluster(tmp_path, workers=2, worker_env={"PYTHONPATH": str(shadow)}) as cluster:
        out = tmp_path / "store.zarr"
        code, stdout, err = _finish(_start(_build_args(store_corpus, out, "--scheduler", cluster.address)))
    assert code == 2, err
    assert re.fullmatch(r"featurestore build: error: Dask worker tcp://127\.0\.0\.1:\d+ \(and 1 other worker\(s\)\): "
                        r"torchaudio \S+ cannot load with torch \S+ \(OSError: Could not load this library: .*\): "
                        r"install a matching pair; reinstall the tested set: pip install -c constraints.txt -e \. "
                        r"\(README, Install\)\n", err), err
    assert not out.exists()
