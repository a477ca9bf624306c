"""One writer per store: a lock beside it (`STORE.lock`) that a build holds from start to finish.

Zarr's sharding codec silently loses data when two writers share a shard, so a second build of
a store that another build is writing stops at once, naming the other (host, pid, start time).

- Local disks (and network file systems with POSIX locks): an `fcntl` lock on `STORE.lock`.
  The kernel drops it the moment its process dies, SIGKILL included, so a killed build never
  leaves it stuck; the file itself only says who holds it.
- Object stores (s3://, ...), which have no locks: an object created only if absent
  (conditional PUT, `If-None-Match: *`), refreshed by its holder every `HEARTBEAT` seconds.
  One whose heartbeat is older than `stale_after()` seconds belongs to a build that died, and
  the next build takes it over. Make every machine's clock roughly right.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
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


def _holder() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "heartbeat": time.time()}


def _busy(url: str, other: dict[str, Any]) -> UserError:
    return UserError(f"{url} is being written by another build (host {other.get('host', '?')}, pid "
                     f"{other.get('pid', '?')}, started {other.get('started', '?')}): wait for it to finish or stop "
                     "it, then re-run; a build that dies releases the store by itself")


@contextlib.contextmanager
def writer_lock(url: str) -> Iterator[dict[str, Any]]:
    """Hold the store's writer lock for the block; yields this build's holder record."""
    from fsspec.core import url_to_fs
    from fsspec.implementations.local import LocalFileSystem

    fs, path = url_to_fs(lock_url(url))
    locker = _local if isinstance(fs, LocalFileSystem) else _object
    with locker(url, fs, path) as holder:
        yield holder


@contextlib.contextmanager
def _local(url: str, fs: Any, path: str) -> Iterator[dict[str, Any]]:
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
        yield holder
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiting build then locks a new file
        os.close(fd)


@contextlib.contextmanager
def _object(url: str, fs: Any, path: str) -> Iterator[dict[str, Any]]:
    holder = _holder()
    if not _create(fs, path, holder):
        other = _read_json(lambda: fs.cat_file(path))
        if time.time() - float(other.get("heartbeat", 0)) <= stale_after():
            raise _busy(url, other)
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)  # a dead build's lock
        if not _create(fs, path, holder):
            raise _busy(url, _read_json(lambda: fs.cat_file(path)))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            holder["heartbeat"] = time.time()
            with contextlib.suppress(OSError):
                fs.pipe_file(path, json.dumps(holder).encode())

    thread = threading.Thread(target=beat, name="featurestore-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        stop.set()
        thread.join()
        with contextlib.suppress(OSError):
            if _read_json(lambda: fs.cat_file(path)).get("token") == holder["token"]:
                fs.rm_file(path)


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
