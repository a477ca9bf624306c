"""The build: a manifest and its audio into a store, one Dask task per shard; resumable, growable.

One module per step: `plan` (what the request adds to the store's state), `apply` (create or
grow the store's nodes; the root document says "building"), `task` (one shard on a worker),
`driver` (submit, isolate crashing clips, commit each result), `finish` (statistics, manifest
copy, "complete"), `cluster` (Dask), `events` (what listeners hear), `lock` (one writer per
store), `watch` (no silent hang), `profile` and `progress` (listeners).

The store's state is read once, under the lock, and carried through: the plan's view of which
parts are committed is updated as records are written and handed to the finish, so a resumed
build reads the root document once and writes it twice (building, complete).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from featurestore import environment
from featurestore.builder.events import Events, Listener, listening
from featurestore.builder.lock import Lock
from featurestore.builder.report import BuildReport
from featurestore.errors import StorageError, UserError
from featurestore.spec import FeatureSpec

__all__ = ["BuildReport", "Listener", "build", "listening"]

SpecRequest = FeatureSpec | Callable[[FeatureSpec | None], FeatureSpec] | None


def build(
    manifest: str | os.PathLike[str],
    *,
    audio_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    spec: SpecRequest = None,
    workers: int | None = None,
    scheduler: str | None = None,
    shard_clips: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    worker_env: Mapping[str, str | None] | None = None,
    scheduler_timeout: float | None = None,
    moved_audio: bool = False,
    listeners: Iterable[Listener] = (),
) -> BuildReport:
    """Build (or resume, or grow) the store at `out` from a manifest (a Parquet path or URL) and
    the audio under `audio_root` (manifest paths are relative to it).

    `spec` is a `FeatureSpec`, or a function of the store's current spec (None for a new store)
    that returns one; None keeps the store's own spec (a new store gets the mtat-seed preset).
    On an existing store the arrays it lacks are added, rows appended to the manifest are built,
    changed labels or splits update the manifest copy and statistics; whatever would mix or lose
    data is refused with a `UserError` before the store is touched.

    `scheduler` is the address of a running Dask scheduler; without it a local cluster of
    `workers` processes (default: one per core) runs the build, its processes started with
    `builder.cluster.BUILD_WORKER_ENV` updated by `worker_env` (None unsets a variable). A
    scheduler that does not answer for `scheduler_timeout` seconds (default 60) stops the build.
    The store records its audio root; resuming or growing it from another one is refused unless
    `moved_audio` says the same files moved there. `listeners` hear the build's events
    (`featurestore.builder.events`). The returned report says what was built; clips that could
    not be used are counted as failed with their reasons, never dropped.
    """
    import manifests

    from featurestore.builder.cluster import check_scheduler_address, prepare_local_workers
    from featurestore.builder.lock import writer_lock
    from featurestore.locations import location

    started = time.perf_counter()
    if workers is not None and scheduler is not None:
        raise UserError("give either --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    if scheduler is not None:
        check_scheduler_address(scheduler)
    if scheduler_timeout is not None and not scheduler_timeout > 0:
        raise UserError(f"--scheduler-timeout must be positive seconds (got {scheduler_timeout})")
    if scheduler is None:  # local workers import their libraries while this process plans
        prepare_local_workers(worker_env)
    table = manifests.load(manifest)
    if len(table.table) == 0:
        raise UserError(f"{manifest}: the manifest has no rows: nothing to build")
    options = Options(spec, workers, scheduler, shard_clips, overwrite, progress, worker_env, scheduler_timeout,
                      moved_audio)
    run = _Run(location(out), location(audio_root), table, options, listeners)
    try:
        with writer_lock(run.url) as lock:
            run(lock)
    except (OSError, StorageError) as exc:
        from featurestore.builder.task import describe_os_error

        why = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        raise UserError(f"cannot write the store {run.url} ({why}); the build stopped and its {len(run.records)} "
                        "committed shard(s) stay intact: make the location writable and re-run the same command "
                        "to resume") from None
    return run.report(time.perf_counter() - started)


@dataclass(frozen=True)
class Options:
    """How to build, as `build` takes them."""

    spec: SpecRequest
    workers: int | None
    scheduler: str | None
    shard_clips: int | None
    overwrite: bool
    progress: bool
    worker_env: Mapping[str, str | None] | None
    scheduler_timeout: float | None
    moved_audio: bool


class _Run:
    """One build under the lock: the store's state, the plan, the cluster, the tasks, the finish."""

    def __init__(self, url: str, audio_root: str, manifest, options: Options, listeners: Iterable[Listener]):
        from featurestore.builder.driver import Outcome
        from featurestore.builder.profile import PhaseClock, Profiler

        self.url, self.audio_root, self.manifest, self.options = url, audio_root, manifest, options
        self.profiler = Profiler()
        self.events = Events([*listeners, self.profiler])
        self.clock = PhaseClock(self.events)
        self.clock.lap("manifest")
        self.records: dict = {}  # commit records by shard, as written
        self.outcome = Outcome()
        self.plan = self.tally = None

    def __call__(self, lock: Lock) -> None:
        from featurestore.builder import apply, finish
        from featurestore.builder.cluster import add_local_workers, check_worker_audio, check_workers, dask_client
        from featurestore.builder.driver import Driver
        from featurestore.builder.plan import audio_paths, check_audio_root, check_same_audio, plan
        from featurestore.builder.progress import ProgressBar
        from featurestore.builder.watch import WatchConfig
        from featurestore.presets import DEFAULT, preset

        o = self.options
        state = apply.existing(self.url, o.overwrite)
        self.clock.lap("store state")
        requested = o.spec(state.spec if state else None) if callable(o.spec) else o.spec
        spec = requested or (state.spec if state else preset(DEFAULT))
        self.plan = todo = plan(self.url, state, spec, self.manifest, self.audio_root, o.shard_clips)
        self.records = dict(todo.state.records) if todo.state else {}
        valid = dict(todo.valid)  # each shard's committed parts, kept up to date for the finish
        sample = []
        if todo.jobs:  # a build that decodes nothing (new labels, say) needs no audio
            check_same_audio(self.url, state, self.audio_root, o.moved_audio)
            sample = check_audio_root(self.audio_root, audio_paths(todo, self.manifest.table))
        self.clock.lap("plan")
        if todo.unchanged():
            self.tally = finish.tally(todo, self.manifest, self.records, valid)
            return
        cluster = (dask_client(o.workers, o.scheduler, o.worker_env, o.progress) if todo.jobs
                   else contextlib.nullcontext())
        with cluster as client:
            if client is not None:  # before the store is touched
                check_workers(client, _libraries(spec), local=o.scheduler is None)
                check_worker_audio(client, self.audio_root, sample)
            self.clock.lap("cluster start-up")
            attrs = apply.apply(self.url, todo, self.manifest, self.audio_root, self.records, valid, self.events)
            self.clock.lap("store set-up")
            if todo.jobs:
                grow = functools.partial(add_local_workers, client, o.worker_env) if o.scheduler is None else None
                bar = [ProgressBar(todo.layout.n_shards, todo.skipped)] if o.progress else []
                driver = Driver(client, self.url, attrs.store_id, self.records, valid,
                                Events([*self.events.listeners, *bar]), WatchConfig.from_env(o.scheduler_timeout), grow,
                                fence=lock.check)
                try:
                    driver.run(todo.jobs)
                finally:
                    self.outcome = driver.outcome
                    for b in bar:
                        b.close()
            self.clock.lap("tasks")
        self.clock.lap("cluster shut-down")
        lock.check()
        self.tally = finish.finish(self.url, todo, self.manifest, attrs, self.records, valid, self.events)
        self.clock.lap("finish")

    def report(self, elapsed: float) -> BuildReport:
        todo, outcome, tally = self.plan, self.outcome, self.tally
        failures = tuple(f"{todo.layout.describe(i)}: {why}" for i, why in sorted(outcome.failures.items()))
        return BuildReport(self.url, tally.ok, tally.failed, tally.pending, tally.reasons[:5], elapsed,
                           todo.layout.n_shards, len(todo.jobs) - len(outcome.failures), todo.skipped, failures,
                           outcome.decoded, todo.changes(),
                           self.profiler.profile(outcome.workers, outcome.submitted, outcome.collected))


def _libraries(spec: FeatureSpec) -> tuple[str, ...]:
    """What the build's processes must import: the feature libraries, and what each feature requires."""
    extra = [m for name in spec.names for m in spec.feature(name).requires]
    return tuple(dict.fromkeys([*environment.FEATURE_LIBRARIES, *extra]))
