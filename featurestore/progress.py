"""Progress that a cluster job's log shows too: a tqdm bar on a terminal, plain lines elsewhere.

A bar redrawn with carriage returns is noise in a log file, and silence for minutes looks like a
hang. So when the stream is not a terminal (a batch job, `nohup`, a pipe), a background thread
prints one line every `FEATURESTORE_PROGRESS_SECONDS` seconds (default 30) while the work runs:
`LABEL: DONE/TOTAL UNIT (PCT %), RATE UNIT/s, ETA M:SS` and any extra fields. The line comes on
time even when a single step takes longer than the interval.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

EVERY_ENV = "FEATURESTORE_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def interval() -> float:
    try:
        seconds = float(os.environ.get(EVERY_ENV, DEFAULT_SECONDS))
    except ValueError:
        return DEFAULT_SECONDS
    return seconds if seconds > 0 else DEFAULT_SECONDS


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """`update(n, **fields)` as work completes; `close()` (or a `with` block) when it ends.

    `bar`: True draws a tqdm bar, False prints lines, None (default) a bar only on a terminal.
    `stream` is stderr unless given."""

    def __init__(self, total: int | None, *, label: str, unit: str, initial: int = 0, bar: bool | None = None,
                 stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.label, self.unit, self.total = label, unit, total
        self.done, self.initial, self.fields = initial, initial, {}
        self.started = time.monotonic()
        self._bar: Any = None
        self._stop = threading.Event()
        if bar if bar is not None else _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=label, leave=False, file=self.stream)
        else:
            self._thread = threading.Thread(target=self._tick, name=f"progress: {label}", daemon=True)
            self._thread.start()

    @property
    def bar(self) -> bool:
        """A bar is drawn (fields that cost a device sync are worth computing)."""
        return self._bar is not None

    def update(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        if fields:  # a new dict, never one changed under the reporting thread
            self.fields = {**self.fields, **fields}
        if self._bar is not None:
            if fields:
                self._bar.set_postfix(self.fields, refresh=False)
            self._bar.update(n)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"
                 + (f" ({100 * self.done / self.total:.0f} %)" if self.total else "")]
        parts.append(f"{rate:.3g} {self.unit}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        parts += [f"{k} {v}" for k, v in self.fields.items()]
        return f"{self.label}: " + ", ".join(parts) + f" ({_clock(elapsed)} elapsed)"

    def _tick(self) -> None:
        every = interval()
        while not self._stop.wait(every):
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        self._stop.set()
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
