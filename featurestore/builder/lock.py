"""One writer per store: a lock beside it (`STORE.lock`) that a build holds from start to finish.

Zarr's sharding codec silently loses data when two writers share a shard, so a second build of
a store that another build is writing stops at once, naming the other (host, pid, start time).
Every name of one store (a symlink, `..`, a trailing slash, a relative path) locks the same
place (`lock_url`).

- Local disks (and network file systems with POSIX locks): an `fcntl` lock on `STORE.lock`.
  The kernel drops it the moment its process dies, SIGKILL included, so a killed build never
  leaves it stuck; the file itself only says who holds it.
- Object stores (s3://, ...), which have no locks: a folder `STORE.lock/` of numbered
  generations, each an object created only if absent (a conditional PUT, `If-None-Match: *`).
  The highest generation is the lock. Its holder rewrites it every `HEARTBEAT` seconds; one
  whose heartbeat is older than `stale_after()` seconds (or marked released) is taken over by
  creating the next generation, which exactly one contender can do, so a takeover is atomic and
  numbers are never reused. The generation is the fencing token: the heartbeat renews only a
  lock whose generation is still the highest, and `check()` runs before every commit record, so
  a build whose lock was taken over (it stalled past the stale time) stops in one line without
  writing more. The window between a check and its write is a few milliseconds against the
  60-s stale time; S3 offers no conditional write across two objects to close it further. Make
  every machine's clock roughly right.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featurestore.errors import UserError

HEARTBEAT = 10.0
STALE_AFTER = 60.0


def stale_after() -> float:
    """Seconds without a heartbeat after which an object-store lock is taken over
    (FEATURESTORE_LOCK_STALE_SECONDS overrides the default of 60)."""
    return float(os.environ.get("FEATURESTORE_LOCK_STALE_SECONDS", STALE_AFTER))


def lock_url(url: str) -> str:
    """The lock beside the store, named after its canonical location: every name of one store
    (through a symlink, with `..`, a trailing slash) locks the same file."""
    from featurestore.locations import canonical

    return canonical(url) + ".lock"


def _holder(generation: int = 0) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex, "generation": generation,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "heartbeat": time.time(), "released": False}


def _busy(url: str, other: dict[str, Any]) -> UserError:
    return UserError(f"{url} is being written by another build (host {other.get('host', '?')}, pid "
                     f"{other.get('pid', '?')}, started {other.get('started', '?')}): wait for it to finish or stop "
                     "it, then re-run; a build that dies releases the store by itself")


def _lost(url: str, other: dict[str, Any], how: str) -> UserError:
    return UserError(f"{url}: this build lost its writer lock to another (host {other.get('host', '?')}, pid "
                     f"{other.get('pid', '?')}, started {other.get('started', '?')}) {how}: it stopped without "
                     "writing more; the shards it committed stay intact")


class Lock:
    """A held writer lock: `holder` says who holds it; `check()` raises a `UserError` once it is
    no longer this build's (call it before each write that must be fenced)."""

    holder: dict[str, Any]

    def check(self) -> None:
        raise NotImplementedError


@contextlib.contextmanager
def writer_lock(url: str) -> Iterator[Lock]:
    """Hold the store's writer lock for the block."""
    from fsspec.core import url_to_fs
    from fsspec.implementations.local import LocalFileSystem

    fs, path = url_to_fs(lock_url(url))
    locker = _local if isinstance(fs, LocalFileSystem) else _object
    with locker(url, fs, path) as lock:
        yield lock


class _LocalLock(Lock):
    def __init__(self, url: str, path: str, fd: int, holder: dict[str, Any]):
        self.url, self.path, self.fd, self.holder = url, path, fd, holder

    def check(self) -> None:
        """The kernel holds the lock while this process lives; only the file can be swapped under it."""
        try:
            same = os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise _lost(self.url, _read_json(lambda: Path(self.path).read_bytes()[:4096]),
                        f"after its lock file {self.path} was removed")


@contextlib.contextmanager
def _local(url: str, fs: Any, path: str) -> Iterator[Lock]:
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = _read_json(lambda: os.pread(fd, 4096, 0))
            os.close(fd)
            raise _busy(url, other) from None
        try:  # the holder before us may have removed the file after we opened it: lock the one on disk
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = _holder()
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    try:
        yield _LocalLock(url, path, fd, holder)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting build then locks a new file
        os.close(fd)


class ObjectLock(Lock):
    """The generations of `STORE.lock/` on an object store (see the module doc)."""

    def __init__(self, url: str, fs: Any, folder: str):
        self.url, self.fs, self.folder = url, fs, folder.rstrip("/")
        self.holder: dict[str, Any] = {}

    def _name(self, generation: int) -> str:
        return f"{self.folder}/generation-{generation:012d}"

    def _latest(self) -> tuple[int, dict[str, Any]]:
        """(the highest generation, its record); (0, {}) when there is none."""
        try:
            names = self.fs.ls(self.folder, detail=False, refresh=True)
        except FileNotFoundError:
            names = []
        numbers = [int(n.rsplit("-", 1)[1]) for n in names if re.fullmatch(r".*/generation-\d{12}", n)]
        if not numbers:
            return 0, {}
        top = max(numbers)
        return top, _read_json(lambda: self.fs.cat_file(self._name(top)))

    def acquire(self) -> None:
        """Take the lock, or raise `UserError` naming the build that holds it."""
        for _ in range(3):  # a contender that lost the race for a generation reads the winner's
            top, record = self._latest()
            fresh = time.time() - float(record.get("heartbeat", 0)) <= stale_after()
            if top and fresh and not record.get("released"):
                raise _busy(self.url, record)
            holder = _holder(top + 1)
            if _create(self.fs, self._name(top + 1), holder):
                self.holder = holder
                self._forget_below(top)
                return
        raise _busy(self.url, self._latest()[1])

    def _forget_below(self, generation: int) -> None:
        """Old generations go; the one below ours stays, so that numbers keep rising."""
        for number in range(max(generation - 8, 1), generation):
            with contextlib.suppress(OSError):
                self.fs.rm_file(self._name(number))

    def check(self) -> None:
        top, record = self._latest()
        if top != self.holder["generation"]:
            raise _lost(self.url, record, f"after its heartbeat went stale (over {stale_after():g} s without one)")

    def renew(self) -> bool:
        """Rewrite this generation's heartbeat if it is still the lock; False once it is not."""
        top, _ = self._latest()
        if top != self.holder["generation"]:
            return False
        self.holder["heartbeat"] = time.time()
        self.fs.pipe_file(self._name(top), json.dumps(self.holder).encode())
        return True

    def release(self) -> None:
        """Mark this generation released (the next build takes the next one at once)."""
        with contextlib.suppress(OSError):
            if self._latest()[0] == self.holder["generation"]:
                self.fs.pipe_file(self._name(self.holder["generation"]),
                                  json.dumps({**self.holder, "released": True}).encode())


@contextlib.contextmanager
def _object(url: str, fs: Any, path: str) -> Iterator[Lock]:
    lock = ObjectLock(url, fs, path)
    lock.acquire()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            try:
                if not lock.renew():
                    return  # taken over: the next check() stops the build
            except OSError:
                continue  # a blip: the next beat tries again, well inside the stale time

    thread = threading.Thread(target=beat, name="featurestore-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield lock
    finally:
        stop.set()
        thread.join()
        lock.release()


def _create(fs: Any, path: str, holder: dict[str, Any]) -> bool:
    """Write the lock object only if there is none (a conditional PUT); False if one exists."""
    try:
        with fs.open(path, "xb") as f:
            f.write(json.dumps(holder).encode())
    except FileExistsError:
        return False
    return True


def _read_json(read) -> dict[str, Any]:
    try:
        return json.loads(read() or b"{}")
    except (OSError, ValueError):
        return {}
