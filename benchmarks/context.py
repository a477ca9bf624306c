"""What every benchmark is handed: the size of the run, where inputs and results go, warm clusters."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks"
DEFAULT_CACHE = REPO / ".bench"


@dataclass(frozen=True)
class Context:
    quick: bool
    out: Path  # RESULTS.md, results/*.json and the PNGs
    cache: Path  # generated input audio, reused between runs (git-ignored)
    work: Path  # scratch space for stores and .npy trees, deleted after the run
    started: float = field(default_factory=time.perf_counter)
    _clusters: dict = field(default_factory=dict, repr=False)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)

    def scratch(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cluster(self, workers: int, worker_env: dict[str, str | None] | None = None):
        """A Dask client on warm workers set up like `featurestore.build(workers=..., worker_env=...)`'s,
        started on first use and shared by the run's benchmarks.

        Starting workers that import torch costs seconds of CPU each; the cold start a user pays
        once per build is measured on its own (scaling), every other number on warm workers.
        """
        key = (workers, tuple(sorted((worker_env or {}).items())))
        if key not in self._clusters:
            from benchmarks.cluster import local_cluster

            self.log(f"starting a LocalCluster of {workers} worker(s){f', worker_env {worker_env}' if worker_env else ''}")
            self._clusters[key] = self._stack.enter_context(local_cluster(workers, worker_env))
        return self._clusters[key]

    def close(self) -> None:
        self._stack.close()
