"""The build's progress on stderr, a listener of its events: a bar on a terminal, and on a log
file a line every 30 s (`featurestore.progress`)."""

from __future__ import annotations

from featurestore.builder.events import Committed, Event, ShardFailed
from featurestore.progress import Progress


class ProgressBar:
    """Shards done of all, clips and clips failed so far."""

    def __init__(self, shards: int, skipped: int):
        self.progress = Progress(shards, label="build", unit="shards", initial=skipped)
        self.clips = self.failed = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Committed):
            record = event.record
            self.clips += record.stop - record.start
            self.failed += record.clips.failed if record.clips is not None else 0
            self.progress.update(clips=f"{self.clips:,}", failed=self.failed)
        elif isinstance(event, ShardFailed):
            self.progress.update()

    def close(self) -> None:
        self.progress.close()
