"""A Dask LocalCluster configured like the build's own, kept warm and shared by project and baseline.

`build_store(workers=N)` starts a fresh cluster per call; the benchmarks keep clusters warm
instead (workers have imported torch and built their extractor) and hand their address to
`build_store(scheduler=...)`, so the project and the decode-only ceiling run on the very same
worker processes. The cold start a user pays once per build is measured on its own, end to
end, by the scaling benchmark.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"


@contextlib.contextmanager
def local_cluster(workers: int, *, malloc_trim: bool = True) -> Iterator[object]:
    """A Client on `workers` single-threaded processes; `malloc_trim=False` unsets Dask's
    MALLOC_TRIM_THRESHOLD_ in the workers (glibc's adaptive default then applies)."""
    import dask
    from dask.distributed import Client, LocalCluster

    from featurestore.build import WORKER_ENV

    env = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_ENV}
    if not malloc_trim:
        env[MALLOC_TRIM] = None
    hidden = {MALLOC_TRIM: os.environ.pop(MALLOC_TRIM)} if MALLOC_TRIM in os.environ else {}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}), LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0",
        ) as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.update(hidden)


def worker_pids(client) -> list[int]:
    return list(client.run(os.getpid).values())


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def worker_env(client, name: str) -> str:
    """What the workers actually see, so the report states it rather than assumes it."""
    return ", ".join(sorted({str(v) for v in client.run(getenv, name).values()}))
