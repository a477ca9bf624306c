"""The object-store writer lock is fenced: a stale lock is taken over by exactly one contender,
and a build whose lock was taken over stops before its next commit record.

Real processes against an S3 API server (moto's, on 127.0.0.1), as two builds on two machines
would meet; the store's commit records are read back from the server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featurestore.builder.lock import ObjectLock, lock_url
from featurestore.store.commits import read_documents

pytest_plugins = ["helpers_store"]
pytestmark = pytest.mark.reliability

TRIALS = 60
CONTENDER = """
import sys, time
from pathlib import Path
from fsspec.core import url_to_fs
from featurestore.builder.lock import ObjectLock, lock_url
from featurestore.errors import UserError

folder, trials, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for t in range(trials):
    url = f"s3://lock-trials/trial-{t}.zarr"
    fs, path = url_to_fs(lock_url(url))
    lock = ObjectLock(url, fs, path)
    (folder / f"ready-{t}-{me}").touch()
    while not (folder / f"go-{t}").exists():
        time.sleep(0.0002)
    try:
        lock.acquire()
        result = f"won {lock.holder['generation']}"
    except UserError:
        result = "busy"
    (folder / f"partial-{t}-{me}").write_text(result)
    (folder / f"partial-{t}-{me}").rename(folder / f"result-{t}-{me}")
"""


def _stale(fs, url: str, age: float = 3600.0) -> None:
    """A lock left by a build that died an hour ago: generation 1, its heartbeat that old."""
    record = {"host": "gone", "pid": 1, "token": "dead", "generation": 1, "started": "long ago",
              "heartbeat": time.time() - age, "released": False}
    fs.pipe_file(lock_url(url).removeprefix("s3://") + "/generation-000000000001", json.dumps(record).encode())


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.001)


def test_two_processes_taking_over_one_stale_lock_give_exactly_one_winner(tmp_path):
    from benchmarks.s3 import moto_s3

    with moto_s3("lock-trials") as fs:
        for t in range(TRIALS):
            _stale(fs, f"s3://lock-trials/trial-{t}.zarr")
        script = tmp_path / "contender.py"
        script.write_text(CONTENDER)
        procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(TRIALS), me])
                 for me in ("a", "b")]
        try:
            outcomes = []
            for t in range(TRIALS):
                for me in ("a", "b"):
                    _wait_for(tmp_path / f"ready-{t}-{me}")
                (tmp_path / f"go-{t}").touch()  # both released at once
                for me in ("a", "b"):
                    _wait_for(tmp_path / f"result-{t}-{me}")
                outcomes.append(sorted((tmp_path / f"result-{t}-{me}").read_text() for me in ("a", "b")))
        finally:
            for p in procs:
                p.kill()
                p.wait()
    assert outcomes == [["busy", "won 2"]] * TRIALS, [o for o in outcomes if o != ["busy", "won 2"]]


def test_a_build_whose_lock_was_taken_over_stops_without_writing_another_commit_record(
        store_corpus, tmp_path, monkeypatch):
    """A real build into s3:// paused just before its second commit record; meanwhile its lock is
    taken over (as a build would after the first one stalled past the stale time). Released, it
    stops in one line and writes nothing more: one commit record, the taker's lock untouched."""
    from benchmarks.s3 import moto_s3

    url, marker, release = "s3://fenced-builds/store.zarr", tmp_path / "reached", tmp_path / "release"
    faultpoints = Path(__file__).with_name("faultpoints.py")
    with moto_s3("fenced-builds") as fs:
        proc = subprocess.Popen(
            [sys.executable, str(faultpoints), "commit:2", str(marker), "--release", str(release), "--",
             str(store_corpus.big_manifest), "--audio-root", str(store_corpus.audio), "--out", url,
             "--duration", "1", "--crop-samples", "4096", "--shard-size", "8", "--workers", "1", "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(marker, timeout=180)
            assert len(read_documents(url)) == 1
            monkeypatch.setenv("FEATURESTORE_LOCK_STALE_SECONDS", "0.5")  # this process's view: stale
            time.sleep(0.6)
            taker = ObjectLock(url, fs, lock_url(url).removeprefix("s3://"))
            taker.acquire()
            release.touch()
            _, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert proc.returncode == 2, err
        assert "this build lost its writer lock to another" in err and "stopped without writing more" in err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert len(read_documents(url)) == 1, "a commit record was written after the lock was lost"
        taker.check()  # still the taker's: the stopped build did not release or renew it
