"""The Dask side of a build: a local cluster or a client of an existing one, its workers' environment
and logs, and the check that every worker can compute features before the store is touched.

Parallelism comes from worker processes with one thread each; the numeric libraries run one
thread per process (`WORKER_ENV`). Local workers start with `BUILD_WORKER_ENV`, forked from a
forkserver that imported their libraries once (`_start_method`); an existing
cluster (`--scheduler`) keeps the environment its operator gave it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from featurestore import environment
from featurestore.errors import UserError

# Dask sets these in worker processes before they start (`distributed.nanny.pre-spawn-environ`);
# one thread each for the numeric libraries, since parallelism comes from the processes.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Dask's own MALLOC_TRIM_THRESHOLD_=65536 also pins glibc's mmap threshold, so every large NumPy or
# torch temporary is mmap'ed and page-faulted afresh: build tasks ran up to 3x slower with it on this
# machine. Fixed thresholds keep those temporaries in the heap (0 page faults per clip, against
# ~5,000 at the gtzan/fma settings with glibc's adaptive default); a worker keeps at most 256 MB
# of freed memory. `worker_env={"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": None}`
# restores Dask's setting (benchmarks/ measures both).
BUILD_WORKER_ENV: dict[str, str | None] = {
    **WORKER_ENV, "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
}


def check_scheduler_address(address: str) -> None:
    """Refuse what is not a Dask scheduler address before anything starts."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        protocol, location = parse_address(address, strict=True)
        if protocol not in ("tcp", "tls", "ws", "wss", "ucx", "inproc"):
            raise ValueError(f"protocol {protocol}:// is not a Dask transport")
        if protocol != "inproc":  # a thread of this process (tests, notebooks): no port
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {address!r} is not a Dask scheduler address ({exc}): give one like "
                        "tcp://host:8786") from None



@contextlib.contextmanager
def _spawning(worker_env: Mapping[str, str | None] | None) -> Iterator[None]:
    """The environment in which local workers start: `BUILD_WORKER_ENV` updated by `worker_env`.

    Dask's Nanny copies the pre-spawn environment into this process's os.environ, never restores
    it, and prefers os.environ over its config: left alone, every later cluster in this process
    would inherit the first one's settings. Those variables are cleared while workers spawn (so
    they neither inherit nor override), and restored afterwards. Workers start forked from a
    preloaded forkserver where that gives them the same environment (`_start_method`)."""
    import dask

    env = _spawn_env(worker_env)
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name in env:
            os.environ.pop(name, None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                              "distributed.worker.multiprocessing-method": _start_method(env)}):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _spawn_env(worker_env: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """The variables set for local workers: Dask's, `BUILD_WORKER_ENV`, `worker_env` (None unsets)."""
    import dask

    return {**dask.config.get("distributed.nanny.pre-spawn-environ"), **BUILD_WORKER_ENV, **(worker_env or {})}


def prepare_local_workers(worker_env: Mapping[str, str | None] | None = None) -> None:
    """Launch the forkserver local workers will be forked from, now: it imports their libraries
    (seconds) while the build reads its manifest, takes the lock and plans, and costs nothing
    more if the build turns out to need no workers (it ends with this program)."""
    _start_method(_spawn_env(worker_env))


_forkserver_environ: dict[str, str] | None = None  # what this process's forkserver was launched with
PRELOAD = "featurestore.builder.preload"


def _worker_environ(env: Mapping[str, str | None]) -> dict[str, str]:
    """The environment a spawned worker would get: this process's, with `env` set over it (None
    unsets), and the hash seed Dask's Nanny gives workers when none is set."""
    environ = {k: v for k, v in os.environ.items() if k not in env}
    environ.update({k: str(v) for k, v in env.items() if v is not None})
    environ.setdefault("PYTHONHASHSEED", "6640")
    return environ


def _start_method(env: Mapping[str, str | None]) -> str:
    """How local workers start: forked from a forkserver that has imported the libraries once
    (`builder.preload`), or spawned, each importing them itself (seconds of CPU per worker).

    A forked worker has the environment its forkserver was launched with, not the one current
    at the fork: variables such as MALLOC_MMAP_THRESHOLD_ and OMP_NUM_THREADS act only when a
    process starts. So the forkserver (one per process) is launched with the environment a
    spawned worker would get, and used only while that environment is unchanged; any other
    (another `worker_env`, a variable set since) spawns its workers, exactly as before."""
    global _forkserver_environ
    from multiprocessing import forkserver

    wanted = _worker_environ(env)
    if _forkserver_environ is None and getattr(forkserver._forkserver, "_forkserver_pid", 0) is None:
        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(wanted)
            os.environ["FEATURESTORE_FORKSERVER"] = "1"  # `builder.preload` takes it out again
            forkserver.set_forkserver_preload([PRELOAD])
            forkserver.ensure_running()
            _forkserver_environ = wanted
        except Exception:  # noqa: BLE001 - no forkserver here: spawn, as before
            return "spawn"
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return "forkserver" if _forkserver_environ == wanted else "spawn"


def add_local_workers(client: Any, worker_env: Mapping[str, str | None] | None, n: int) -> None:
    """Start `n` more workers in the client's LocalCluster, set up like its first ones, and wait
    (up to two minutes) until they have joined."""
    cluster = client.cluster
    target = len(client.scheduler_info()["workers"]) + n
    with _spawning(worker_env):
        cluster.scale(len(cluster.worker_spec) + n)
        with contextlib.suppress(TimeoutError):  # the watch tries again if they never join
            client.wait_for_workers(target, timeout=120)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                worker_env: Mapping[str, str | None] | None = None, progress: bool = False) -> Iterator[Any]:
    """A Client of the cluster at `scheduler`, or of a LocalCluster of `workers` processes with
    one thread each (closed on exit), its workers' environment set before they start."""
    from dask.distributed import Client

    if scheduler is not None:
        if worker_env:
            raise UserError("worker environment settings apply to a local cluster only, not to --scheduler")
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            _announce(client, progress)
            yield client
        return
    with local_cluster(workers or os.cpu_count() or 1, worker_env) as cluster, Client(cluster) as client:
        client.register_plugin(_QuietLogs(), name="featurestore-quiet-logs")  # restarted workers too
        _announce(client, progress)
        yield client


def check_workers(client: Any, libraries: tuple[str, ...] = environment.FEATURE_LIBRARIES, local: bool = False) -> None:
    """Stop with one line when a worker cannot import or run the feature libraries, instead of
    one identical failure per shard. The driver itself never imports them: its workers are the
    ones that compute. `local`: the workers run this machine's install, so the line names no
    worker."""
    try:
        found = {w: p for w, p in client.run(environment.problem, libraries).items() if p}
    except Exception as exc:  # noqa: BLE001 - e.g. featurestore itself missing on the workers
        raise UserError(f"the Dask workers cannot run featurestore ({type(exc).__name__}: {exc}): "
                        f"{environment.FIX}") from None
    if found:
        worker, problem = sorted(found.items())[0]
        if local:
            raise UserError(problem)
        others = f" (and {len(found) - 1} other worker(s))" if len(found) > 1 else ""
        raise UserError(f"Dask worker {worker}{others}: {problem}")


def check_worker_audio(client: Any, audio_root: str, sample: list[str]) -> None:
    """Stop with one line, before the store is touched, when a worker cannot read sampled audio
    files that this process reads (a node whose mount is missing, or that sees other permissions):
    its tasks would find its share of the files missing. Stopping, rather than building around
    it, leaves no node of the cluster silently idle and no misconfiguration unreported."""
    from featurestore.audio.decoder import read_problem, read_problems

    readable = [path for path in sample if read_problem(audio_root, path) is None]
    found = {w: p for w, p in client.run(read_problems, audio_root, readable).items() if p} if readable else {}
    if found:
        worker, problems = sorted(found.items())[0]
        path, why = problems[0]
        others = f" (and {len(found) - 1} other worker(s))" if len(found) > 1 else ""
        raise UserError(f"Dask worker {worker}{others} cannot read the audio this machine reads: {path} ({why}), "
                        f"{len(problems)} of {len(readable)} sampled files: mount the audio there or fix its "
                        "permissions, or stop that worker, then re-run (the store was not touched)")


class _DropMessages(logging.Filter):
    """Drops log records whose message starts with one of `prefixes`."""

    def __init__(self, *prefixes: str):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _QuietLogs(WorkerPlugin):
    """A Dask worker plugin: `_quiet_worker_logs` in every worker of our local cluster, those the
    nanny starts again after a death included (a plain `client.run` reaches only the first ones)."""

    def setup(self, worker: Any) -> None:
        _quiet_worker_logs()


def _quiet_worker_logs() -> None:
    """Our own local workers log nothing the build reports itself: a task that failed is in the
    summary (Dask's "Compute Failed" block would repeat it with a traceback), a build that
    stops cancels its tasks in flight (a warning each), and a heartbeat that meets the scheduler
    closing at the end of a build is a traceback about nothing (a scheduler lost mid-build is
    reported by the driver, in one line)."""
    logging.getLogger("distributed.worker").addFilter(
        _DropMessages("Compute Failed", "Failed to communicate with scheduler during heartbeat"))
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


@contextlib.contextmanager
def local_cluster(workers: int, worker_env: Mapping[str, str | None] | None = None) -> Iterator[Any]:
    """A LocalCluster of `workers` single-threaded processes started with `BUILD_WORKER_ENV`
    updated by `worker_env` (None unsets a variable)."""
    from dask.distributed import LocalCluster

    with _spawning(worker_env):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0")  # a free port; the dashboard needs bokeh
    # Closing kills workers still busy after a few seconds (a cancelled task finishing a clip); the
    # nanny's warning about it says nothing the user can act on.
    # ... nor does its "Restarting worker" after a death, which the build reports itself.
    quiet_close = _DropMessages("Worker process still alive", "Restarting worker")
    logging.getLogger("distributed.nanny").addFilter(quiet_close)
    try:
        with cluster:
            yield cluster
    finally:
        logging.getLogger("distributed.nanny").removeFilter(quiet_close)


def _announce(client: Any, progress: bool) -> None:
    if progress and "dashboard" in client.scheduler_info().get("services", {}):
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)


