"""Watching a build's cluster, so that no build hangs silently and a crash is named as one.

The driver waits on its tasks in slices of `WatchConfig.every` seconds, and fetches a finished
task's result for at most as long (the result stays on its worker, which may have frozen since).
After each slice with nothing finished or fetched it asks the scheduler who it is (giving up
after `scheduler_timeout` seconds: a stopped, overloaded or unreachable scheduler would
otherwise keep the driver waiting for ever), reports workers it has not heard from for
`stall_floor` seconds (a frozen or stopped process, which Dask only drops after its five-minute
worker TTL), and reports when no shard has finished for `stall_factor` times the median shard
time (at least `stall_floor` seconds).

A local cluster's nannies restart a worker that died, in seconds, but not always: Dask skips the
restart while a nanny is still starting its worker and only logs one that fails. Under load, with
a clip killing worker after worker, a build was left with no worker and would have waited for
ever, so a local cluster short of workers for `stall_floor` seconds gets new ones.

The nannies of a local cluster live in the driver and log how a worker process died ("killed by
signal 11", "exceeded 95% memory budget"); `CrashLog` keeps those lines so that a task that died
with its worker says how it died instead of guessing.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO


class SchedulerTimeout(Exception):
    """The scheduler did not answer in time."""


@dataclass(frozen=True)
class WatchConfig:
    scheduler_timeout: float = 60.0
    stall_floor: float = 120.0  # also how long a worker may stay silent before it is reported
    stall_factor: float = 10.0

    @property
    def every(self) -> float:
        return max(0.5, min(10.0, self.scheduler_timeout / 2, self.stall_floor / 2))

    @classmethod
    def from_env(cls, scheduler_timeout: float | None = None) -> WatchConfig:
        """`FEATURESTORE_STALL_SECONDS` sets the stall floor (tests use a few seconds)."""
        floor = os.environ.get("FEATURESTORE_STALL_SECONDS")
        return cls(scheduler_timeout=cls.scheduler_timeout if scheduler_timeout is None else scheduler_timeout,
                   stall_floor=float(floor) if floor else cls.stall_floor)


class Watcher:
    def __init__(self, client: Any, config: WatchConfig, out: TextIO | None = None,
                 grow: Callable[[int], None] | None = None):
        """`grow(n)` starts n more workers in the build's own local cluster (None elsewhere)."""
        self.client, self.config, self.out, self.grow = client, config, out or sys.stderr, grow
        self.durations: list[float] = []
        self.last_progress = time.monotonic()
        self.stall_reported = False
        self.silent: set[str] = set()
        self.size = len(client.cluster.worker_spec) if grow is not None else 0
        self.short_since: float | None = None

    def finished(self, seconds: float) -> None:
        self.durations.append(seconds)
        self.last_progress = time.monotonic()
        self.stall_reported = False

    def check(self, running: int) -> None:
        """Called when a slice passed with nothing finished; raises SchedulerTimeout."""
        try:
            identity = self.client.sync(self.client.scheduler.identity,
                                        callback_timeout=self.config.scheduler_timeout)
        except (TimeoutError, OSError) as exc:
            raise SchedulerTimeout(str(exc)) from None
        now = time.time()
        for address, worker in (identity.get("workers") or {}).items():
            quiet = now - float(worker.get("last_seen", now))
            if quiet > self.config.stall_floor and address not in self.silent:
                self.silent.add(address)
                self._say(f"Dask worker {address} has not been heard from for {quiet:.0f} s (frozen, stopped or "
                          "swapping?); its task stays with it until Dask drops the worker")
            elif quiet <= self.config.stall_floor:
                self.silent.discard(address)
        self._replace_lost_workers(len(identity.get("workers") or {}))
        idle = time.monotonic() - self.last_progress
        median = statistics.median(self.durations) if self.durations else None
        limit = max(self.config.stall_floor, self.config.stall_factor * median if median else 0.0)
        if idle > limit and not self.stall_reported:
            self.stall_reported = True
            typical = f"{self.config.stall_factor:g}x the median shard time of {median:.1f} s" if median else \
                "and none has finished yet"
            self._say(f"no shard has finished for {idle:.0f} s ({typical}); {running} task(s) still running on "
                      f"{len(identity.get('workers') or {})} worker(s): the build goes on waiting")

    def _replace_lost_workers(self, live: int) -> None:
        if live >= self.size:
            self.short_since = None
            return
        now = time.monotonic()
        self.short_since = self.short_since or now
        if now - self.short_since > self.config.stall_floor:
            lost = self.size - live
            self._say(f"{lost} of the local cluster's {self.size} worker(s) died and were not restarted for "
                      f"{now - self.short_since:.0f} s: starting {lost} new one(s)")
            self.grow(lost)
            self.short_since = None

    def _say(self, text: str) -> None:
        print(f"featurestore build: warning: {text}", file=self.out, flush=True)


_DEATH = re.compile(r"Worker process (?P<pid>\d+) (?:was killed by signal (?P<signal>\d+)|exited with status (?P<status>\d+))")


class CrashLog(logging.Handler):
    """The last lines in which a local cluster's nannies said how a worker process died."""

    LOGGERS = ("distributed.nanny", "distributed.nanny.memory")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.deaths: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        match = _DEATH.search(text)
        if match and match["signal"]:
            number = int(match["signal"])
            name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else "?"
            self.deaths.append(f"worker process {match['pid']} was killed by signal {number} ({name})")
        elif match:
            self.deaths.append(f"worker process {match['pid']} exited with status {match['status']}")
        elif "memory budget" in text:
            self.deaths.append("a worker exceeded its memory budget and was restarted (the task needs more memory "
                               "than a worker has)")

    def latest(self, wait: float = 1.0) -> str | None:
        """The last deaths, waiting up to `wait` s for a first one (the scheduler may learn of a
        death before the nanny has reaped the process; remote nannies never tell)."""
        deadline = time.monotonic() + wait
        while not self.deaths and time.monotonic() < deadline:
            time.sleep(0.05)
        return "; ".join(dict.fromkeys(self.deaths[-3:])) or None

    def __enter__(self) -> CrashLog:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)
