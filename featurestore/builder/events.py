"""What a build tells those who listen: the store created, each commit, each failed shard, each
statistics array, each phase of the driver.

The progress bar and the profile are listeners like any other; so are tests that pause or kill a
build at an exact point (`tests/faultpoints.py`). A listener is any callable taking an event.
Pass listeners to `featurestore.build(..., listeners=[...])`, or subscribe for every build this
process runs with `listening(listener)` (how a script wraps the `featurestore` program). A
listener runs in the driver, between the build's steps: what it does, the build waits for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoreCreated:
    """A new store's root document, groups and arrays exist; no manifest copy, no commit record yet."""

    url: str


@dataclass(frozen=True)
class Committing:
    """A shard task's result is in; its commit record is about to be written."""

    shard: int
    record: Any  # featurestore.store.commits.CommitRecord


@dataclass(frozen=True)
class Committed:
    """A shard's commit record is written: its clips count from now on."""

    shard: int
    record: Any  # CommitRecord
    result: Any  # featurestore.builder.task.ShardWritten: timing, clips decoded


@dataclass(frozen=True)
class ShardFailed:
    """A shard's task failed; its clips stay pending and the next run retries them."""

    shard: int
    reason: str


@dataclass(frozen=True)
class StatisticsWritten:
    """One array's normalisation statistics are written (the store is not yet marked complete)."""

    array: str


@dataclass(frozen=True)
class PhaseFinished:
    """A phase of the driver ended ("plan", "cluster start-up", "tasks", "finish", ...)."""

    name: str
    seconds: float


Event = StoreCreated | Committing | Committed | ShardFailed | StatisticsWritten | PhaseFinished
Listener = Callable[[Event], None]
_everywhere: list[Listener] = []


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Hear the events of every build this process runs while the block lasts."""
    _everywhere.append(listener)
    try:
        yield listener
    finally:
        _everywhere.remove(listener)


class Events:
    """One build's outlet: its own listeners, then the process-wide ones."""

    def __init__(self, listeners: Iterable[Listener] = ()):
        self.listeners = list(listeners)

    def emit(self, event: Event) -> None:
        for listener in (*self.listeners, *_everywhere):
            listener(event)
