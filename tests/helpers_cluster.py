"""A Dask cluster started with the `dask` command-line tools, as on a shared machine: one
`dask scheduler` and `dask worker` processes (one thread each) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass
class CliCluster:
    address: str
    client: object  # a dask Client of the test itself, to watch and steer the cluster
    processes: list[subprocess.Popen]
    names: dict[str, str]  # worker name -> address


@contextlib.contextmanager
def dask_cli_cluster(folder: Path, workers: int | dict[str, list[str]],
                     worker_env: dict[str, str] | None = None) -> Iterator[CliCluster]:
    """`workers` worker processes (named cli-worker-0, ...), or one per name, each started behind
    its command prefix (a mount namespace, dropped capabilities); their environment updated by
    `worker_env`.

    They stop by themselves if this process dies: the scheduler after 10 idle minutes, the workers
    20 s after losing it."""
    from dask.distributed import Client

    prefixes = workers if isinstance(workers, dict) else {f"cli-worker-{i}": [] for i in range(workers)}
    dask = str(Path(sys.executable).with_name("dask"))
    folder.mkdir(parents=True, exist_ok=True)
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    log = (folder / "cluster.log").open("wb")
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                   "--scheduler-file", str(scheduler_file), "--idle-timeout", "600"],
                                  stdout=log, stderr=log, env=env)]
    processes += [subprocess.Popen([*prefix, dask, "worker", "--scheduler-file", str(scheduler_file), "--host",
                                    "127.0.0.1", "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                                    "--death-timeout", "20", "--name", name], stdout=log, stderr=log,
                                   env={**env, **(worker_env or {})})
                  for name, prefix in prefixes.items()]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None, "dask scheduler did not start"
            time.sleep(0.05)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(len(prefixes), timeout=60)
            names = {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
            yield CliCluster(address, client, processes, names)
    finally:
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
