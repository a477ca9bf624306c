"""The build's progress bar on stderr: a listener of its events."""

from __future__ import annotations

import sys
import time
from typing import Any

from featurestore.builder.events import Committed, Event, ShardFailed


class ProgressBar:
    """Shards done of all, clips per second, clips failed so far."""

    def __init__(self, shards: int, skipped: int):
        from tqdm import tqdm

        self.bar: Any = tqdm(total=shards, initial=skipped, unit="shard", file=sys.stderr)
        self.clips = self.failed = 0
        self.started = time.perf_counter()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Committed):
            record = event.record
            self.clips += record.stop - record.start
            self.failed += record.clips.failed if record.clips is not None else 0
            self.bar.set_postfix(clips_per_s=f"{self.clips / (time.perf_counter() - self.started):.1f}",
                                 failed=self.failed)
            self.bar.update()
        elif isinstance(event, ShardFailed):
            self.bar.update()

    def close(self) -> None:
        self.bar.close()
