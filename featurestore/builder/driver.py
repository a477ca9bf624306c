"""The driver: submit one task per shard, turn each result into a commit record and write it.

One shard's failure leaves the others to finish. A task that died with its worker on every try
is retried clip by clip (`probe_clip`), so that only the clips that kill a worker fail, named;
the shard is then built again with those clips failed unread. Files a worker could not read
(`ShardUnread`) are looked at here: those this process cannot read either are the files'
failures; those it reads mean the worker cannot see them (a missing mount, another uid), so the
shard goes to another worker, and fails, uncommitted, naming the worker and the file when no
worker is left. A store that cannot be written stops the build at once (`StorageError`: every
other shard would hit it too); losing the cluster, or a scheduler that stops answering, becomes
one line. The driver alone writes commit records, each only while the build still holds the
store's writer lock (`fence`), so a record always describes a shard its task finished.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from featurestore.errors import StorageError, UserError
from featurestore.builder.events import Committed, Committing, Events, ShardFailed
from featurestore.builder.plan import ShardJob
from featurestore.builder.task import ShardRefused, ShardResult, ShardUnread, ShardWritten, build_shard, probe_clip
from featurestore.builder.watch import CrashLog, SchedulerTimeout, WatchConfig, Watcher
from featurestore.store.commits import CommitRecord, rows_hash, write_record
from featurestore.store.layout import shard_name


@dataclass
class Outcome:
    """What the tasks came to: why shards failed, clips decoded, and the tasks' span."""

    failures: dict[int, str] = field(default_factory=dict)
    decoded: int = 0
    workers: int = 0  # task slots of the cluster
    submitted: float = 0.0  # time.time() when the tasks were submitted
    collected: float = 0.0  # ... and when the last result was in


@dataclass
class _Isolation:
    """A shard whose task died with its worker on every try, its clips being tried one by one."""

    job: ShardJob
    left: set[int]
    crashed: dict[int, str] = field(default_factory=dict)


class Driver:
    def __init__(self, client: Any, url: str, store_id: str, records: dict[int, CommitRecord],
                 valid: dict[int, frozenset[str]], events: Events, watch: WatchConfig,
                 grow: Callable[[int], None] | None, fence: Callable[[], None] = lambda: None):
        """`records` and `valid` (each shard's committed parts) are updated as records are written;
        `fence` raises once the writer lock is no longer this build's (`Lock.check`), and runs
        before every commit record."""
        self.client, self.url, self.store_id, self.fence = client, url, store_id, fence
        self.records, self.valid, self.events, self.watch = records, valid, events, watch
        self.watcher = Watcher(client, watch, grow=grow)
        self.pending: dict[Any, ShardJob] = {}
        self.probes: dict[Any, tuple[int, int]] = {}  # future -> (shard, row)
        self.isolating: dict[int, _Isolation] = {}
        self.blind: dict[int, set[str]] = {}  # shard -> workers that could not read its files
        self.warned: set[str] = set()
        self.outcome = Outcome(workers=sum(client.nthreads().values()))

    def run(self, jobs: tuple[ShardJob, ...]) -> Outcome:
        from concurrent.futures import CancelledError

        from distributed.comm import CommClosedError

        self.outcome.submitted = time.time()
        for job in jobs:
            self._submit(job)
        with CrashLog() as self.crashes:
            try:
                while self.pending or self.probes:
                    self._step()
            except SchedulerTimeout:
                raise UserError(f"the Dask scheduler at {self.client.scheduler.address} has not answered for "
                                f"{self.watch.scheduler_timeout:g} s (stopped, overloaded or unreachable); the build "
                                f"stopped and its {len(self.records)} committed shard(s) stay intact: check the "
                                "cluster, then re-run the same command to resume (--scheduler-timeout sets the "
                                "wait)") from None
            except (CancelledError, CommClosedError):
                raise UserError(f"lost the Dask cluster ({self.client.scheduler.address}) during the build; its "
                                f"{len(self.records)} committed shard(s) stay intact: re-run the same command to "
                                "resume") from None
            except BaseException:
                self.client.cancel([*self.pending, *self.probes])
                raise
        self.outcome.collected = time.time()
        return self.outcome

    # --- the loop ------------------------------------------------------------------------------------

    def _submit(self, job: ShardJob, workers: list[str] | None = None) -> None:
        self.pending[self._task(build_shard, job, name=f"build-{shard_name(job.index)}", workers=workers)] = job

    def _task(self, fn: Any, *args: Any, name: str, workers: list[str] | None = None) -> Any:
        where = {"workers": workers, "allow_other_workers": False} if workers else {}
        return self.client.submit(fn, *args, pure=False, key=f"{name}-{os.urandom(4).hex()}", **where)

    def _step(self) -> None:
        from dask.distributed import wait

        try:
            done, _ = wait([*self.pending, *self.probes], timeout=self.watch.every, return_when="FIRST_COMPLETED")
        except TimeoutError:
            self.watcher.check(len(self.pending) + len(self.probes))
            return
        unanswered = False
        for future in done:
            if future in self.probes:
                self._probed(future)
            elif future.status == "error":
                self._errored(future)
            else:
                try:  # a finished task's result stays on its worker until fetched
                    result = future.result(timeout=self.watch.every)
                except TimeoutError:  # that worker froze since: fetching would wait for ever
                    unanswered = True
                    continue
                self._finished(self.pending.pop(future), result)
        if unanswered:
            self.watcher.check(len(self.pending) + len(self.probes))

    def _errored(self, future: Any) -> None:
        from distributed.scheduler import KilledWorker

        job = self.pending.pop(future)
        exc = future.exception()
        if not isinstance(exc, KilledWorker):
            self._failed(job.index, f"{type(exc).__name__}: {exc}")
        elif job.probed:
            self._failed(job.index, "the task died with the worker running it on every try: " + (
                self.crashes.latest() or "the worker logs say why (a crash, or more memory than a worker has)"))
        else:
            rows = job.decoded_rows()
            print(f"featurestore build: warning: the task of {shard_name(job.index)} died with its worker on every "
                  f"try ({self.crashes.latest() or 'the worker logs say how'}); trying its {len(rows)} clip(s) one "
                  "by one", file=sys.stderr, flush=True)
            self.isolating[job.index] = _Isolation(job, set(rows))
            for row in rows:
                future = self._task(probe_clip, job, row, name=f"probe-{shard_name(job.index)}-{row}")
                self.probes[future] = (job.index, row)

    def _probed(self, future: Any) -> None:
        from distributed.scheduler import KilledWorker

        index, row = self.probes.pop(future)
        isolation = self.isolating[index]
        if future.status == "error" and isinstance(future.exception(), KilledWorker):
            isolation.crashed[row] = ("the worker decoding this file died on every try (" + (
                self.crashes.latest() or "see the worker logs") + "): a file that crashes the decoder, or more "
                "memory than a worker has")
        isolation.left.discard(row)
        if not isolation.left:  # again, the culprits failed unread (none: the deaths had another cause)
            del self.isolating[index]
            self._submit(replace(isolation.job, unread={**isolation.job.unread, **isolation.crashed}, probed=True))

    def _finished(self, job: ShardJob, result: ShardResult) -> None:
        if isinstance(result, ShardUnread):
            self._unread(job, result)
            return
        if isinstance(result, ShardRefused):
            if result.storage:
                raise StorageError(result.reason)
            self._failed(job.index, result.reason)
            return
        record = merge(self.records.get(job.index), result, job, self.store_id)
        self.events.emit(Committing(job.index, record))
        self.fence()
        write_record(self.url, record)
        self.records[job.index] = record
        self.valid[job.index] = frozenset(record.parts())
        self.watcher.finished(result.seconds)
        self.outcome.decoded += result.decoded
        self.events.emit(Committed(job.index, record, result))

    def _unread(self, job: ShardJob, result: ShardUnread) -> None:
        from featurestore.audio.decoder import read_problem

        here = {row: read_problem(job.audio_root, job.paths[row]) for row in sorted(result.rows)}
        job = replace(job, unread={**job.unread, **{row: why for row, why in here.items() if why is not None}})
        seen = [row for row, why in here.items() if why is None]
        if not seen:  # this process cannot read them either: the files' own failures
            self._submit(job)
            return
        blind = self.blind.setdefault(job.index, set())
        blind.add(result.worker)
        row = seen[0]
        what = (f"Dask worker {result.worker} cannot read {job.paths[row]} ({result.rows[row]}), which this "
                "machine reads")
        others = sorted(set(self.client.nthreads()) - blind)
        if not others:
            self._failed(job.index, f"{what}: a fault of the worker's machine (a missing mount, permissions, I/O), "
                                    "not of the file; nothing of this shard was committed: fix that worker, then "
                                    "re-run the same command")
            return
        if result.worker not in self.warned:
            self.warned.add(result.worker)
            print(f"featurestore build: warning: {what}; its shards go to other workers", file=sys.stderr, flush=True)
        self._submit(job, workers=others)

    def _failed(self, index: int, reason: str) -> None:
        self.outcome.failures[index] = reason
        self.events.emit(ShardFailed(index, reason))


def merge(old: CommitRecord | None, result: ShardWritten, job: ShardJob, store_id: str) -> CommitRecord:
    """The shard's new commit record: the task's parts over the old record's still-valid ones (a
    shard that only gained arrays keeps its other parts; a grown shard keeps the failure reasons of
    its stored rows)."""
    clips, arrays = result.clips, dict(result.arrays)
    if old is not None and not job.clips:
        clips, arrays = old.clips, {**old.arrays, **arrays}
    elif old is not None and job.keep and old.clips is not None and clips is not None:
        kept = {k: v for k, v in old.clips.errors.items() if int(k) < job.keep}
        clips = replace(clips, errors={**kept, **clips.errors})
    return CommitRecord(job.index, store_id, job.start, job.stop, rows_hash(job.clip_ids, job.paths), clips, arrays)
