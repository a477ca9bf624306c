"""Run `featurestore build` with a pause at a named point, so that a test can kill or disturb a
real build process exactly there instead of guessing with timers.

    python tests/faultpoints.py POINT MARKER [--release FILE] -- BUILD ARGUMENTS...

On reaching POINT the build creates MARKER, then waits until FILE exists (without --release it
waits for ever: the test kills it). The Dask workers are not paused: tasks in flight go on.

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
from pathlib import Path
from typing import Any, Callable

from featurestore import store
from featurestore.cli import main


def _pauser(marker: str, release: str | None) -> Callable[[], None]:
    def pause() -> None:
        Path(marker).touch()
        while release is None or not Path(release).exists():
            time.sleep(0.01)

    return pause


def install(point: str, pause: Callable[[], None]) -> None:
    """Wrap the store function the build calls at `point` (the build looks them up on the module)."""
    if point == "created":
        create = store.create

        def paused_create(*args: Any, **kwargs: Any) -> Any:
            group = create(*args, **kwargs)
            pause()
            return group

        store.create = paused_create
    elif point.startswith("commit:"):
        k, calls = int(point.partition(":")[2]), 0
        write_commit = store.write_commit

        def paused_write_commit(url: str, record: dict[str, Any]) -> None:
            nonlocal calls
            calls += 1
            if calls == k:
                pause()
            write_commit(url, record)

        store.write_commit = paused_write_commit
    elif point == "finishing":
        write_stats = store.write_stats

        def paused_write_stats(group: Any, spec: Any, stats: dict[str, Any]) -> None:
            first, *rest = stats.items()
            write_stats(group, spec, dict([first]))
            pause()
            write_stats(group, spec, dict(rest))

        store.write_stats = paused_write_stats
    else:
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    at = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("point")
    parser.add_argument("marker")
    parser.add_argument("--release")
    options = parser.parse_args(sys.argv[1:at])
    install(options.point, _pauser(options.marker, options.release))
    sys.exit(main(["build", *sys.argv[at + 1:]]))
