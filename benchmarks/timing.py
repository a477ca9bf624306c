"""Alternating timed runs with peak-memory sampling.

On a shared machine the load drifts over minutes; timing A five times and then B five times
measures the drift as much as the code. Running A B A B … and taking medians exposes both to
the same conditions, so their ratio is meaningful even when the absolute numbers are not.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a callable doing the whole job, and the processes doing it."""

    name: str
    run: Callable[[], object]
    processes: Callable[[], Iterable[int]]  # PIDs whose RSS counts as this contender's memory
    setup: Callable[[], object] | None = None  # untimed, before every run (e.g. clear its output)


@dataclass
class Runs:
    seconds: list[float] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)  # per run: the largest peak of one process

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak(self) -> int:
        return max(self.peak_rss, default=0)


class PeakRSS:
    """Samples the resident set size of some processes in a thread; `.peak` is the max of one process.

    The processes are looked up once, on entry: asking a Dask cluster for its workers' PIDs is a
    round trip to every worker, and doing it at every sample (20 times a second) interrupted the
    very tasks being timed."""

    def __init__(self, pids: Callable[[], Iterable[int]], interval: float = 0.05):
        self._lookup = pids
        self._pids: tuple[int, ...] = ()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.per_process: dict[int, int] = {}

    def _sample(self) -> None:
        for pid in self._pids:
            try:
                rss = psutil.Process(pid).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.per_process[pid] = max(rss, self.per_process.get(pid, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> "PeakRSS":
        self._pids = tuple(self._lookup())
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak(self) -> int:
        return max(self.per_process.values(), default=0)


def timed(contender: Contender) -> tuple[float, int]:
    if contender.setup is not None:
        contender.setup()
    with PeakRSS(contender.processes) as mem:
        start = time.perf_counter()
        contender.run()
        seconds = time.perf_counter() - start
    return seconds, mem.peak


def round_speedups(runs: dict[str, Runs], name: str, base: str) -> list[float]:
    """How many times faster `name` ran than `base` in each round (base / name)."""
    return [b / a for a, b in zip(runs[name].seconds, runs[base].seconds, strict=True)]


def paired_speedup(runs: dict[str, Runs], name: str, base: str) -> float:
    """The median of `round_speedups`: each round's two runs are taken within a minute of each
    other, while a ratio of the two medians would let the machine's drift between rounds move it
    (the load of a shared machine changes by tens of percent over minutes)."""
    return statistics.median(round_speedups(runs, name, base))


def alternate(contenders: list[Contender], repeats: int, log: Callable[[str], None]) -> dict[str, Runs]:
    """Run every contender once per round, `repeats` rounds, in a fixed A B C order."""
    runs = {c.name: Runs() for c in contenders}
    for r in range(repeats):
        for c in contenders:
            seconds, peak = timed(c)
            runs[c.name].seconds.append(seconds)
            runs[c.name].peak_rss.append(peak)
            log(f"  round {r + 1}/{repeats} {c.name}: {seconds:.2f} s, peak RSS {peak / 2**20:.0f} MiB")
    return runs
