"""Where a build task's time goes: a stopwatch whose laps name the stage that just ended.

A build task records every stage of its shard (`recording`); the decoder and the feature code
call `lap(stage)` at their boundaries, which costs one `perf_counter` call while a task records
and nothing otherwise (predict, the trainers). The laps partition the task's time, so their sum
is the task's duration; `benchmarks/profile.py` turns them into milliseconds per clip.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Iterator

_current: ContextVar[Stopwatch | None] = ContextVar("featurestore_stopwatch", default=None)


class Stopwatch:
    """Seconds per stage: `lap(stage)` charges the time since the previous lap to `stage`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def lap(stage: str) -> None:
    """End `stage` in the task recording in this context, if any."""
    watch = _current.get()
    if watch is not None:
        watch.lap(stage)


@contextlib.contextmanager
def recording() -> Iterator[Stopwatch]:
    """Record the laps of this context (one build task) until the block ends."""
    watch = Stopwatch()
    token = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(token)
