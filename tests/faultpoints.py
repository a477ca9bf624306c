"""Run `featurestore build` with a pause at a named point, so that a test can kill or disturb a
real build process exactly there instead of guessing with timers.

    python tests/faultpoints.py POINT MARKER [--release FILE] -- BUILD ARGUMENTS...

On reaching POINT the build creates MARKER, then waits until FILE exists (without --release it
waits for ever: the test kills it). The Dask workers are not paused: tasks in flight go on. The
pause is a listener of the build's events (`featurestore.builder.events`): nothing in the
package is replaced.

POINT:
  created    the store's group and arrays exist; no manifest copy, no commit record yet
  commit:K   K-1 shards committed; the K-th result is in, its commit record not yet written
  finishing  every shard committed, the manifest copy and the first statistics array written,
             the store not yet marked complete
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from featurestore.builder.events import Committing, Event, StatisticsWritten, StoreCreated, listening
from featurestore.cli import main


def _pauser(marker: str, release: str | None) -> Callable[[], None]:
    def pause() -> None:
        Path(marker).touch()
        while release is None or not Path(release).exists():
            time.sleep(0.01)

    return pause


def at(point: str, pause: Callable[[], None]) -> Callable[[Event], None]:
    """A listener that pauses the build at `point`."""
    kinds = {"created": StoreCreated, "finishing": StatisticsWritten}
    kind, k = (Committing, int(point.partition(":")[2])) if point.startswith("commit:") else (kinds.get(point), 1)
    if kind is None:
        raise SystemExit(f"unknown fault point {point!r}")
    seen = []

    def listener(event: Event) -> None:
        if isinstance(event, kind):
            seen.append(event)
            if len(seen) == k:
                pause()

    return listener


if __name__ == "__main__":
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("point")
    parser.add_argument("marker")
    parser.add_argument("--release")
    options = parser.parse_args(sys.argv[1:split])
    with listening(at(options.point, _pauser(options.marker, options.release))):
        sys.exit(main(["build", *sys.argv[split + 1:]]))
