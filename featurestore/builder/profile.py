"""Where a build's time went, per clip: its tasks' stages and the gaps around them.

The build measures itself (`featurestore.stages`): each task the seconds of every stage of its
shard, when it began and ended and on which worker; the driver its own phases. `Profiler` hears
both from the build's events. Over W worker
processes a build of wall time T has T x W seconds of worker time: the tasks' stages, time before
a worker's first task, between its tasks and after its last one, and the driver's phases outside
the tasks, while every worker waits. `BuildProfile.per_clip` lays that out in milliseconds per
clip; `featurestore build --profile` prints it and `benchmarks/` checks its sum against the wall
clock.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from featurestore.builder.events import Committed, Event, Events, PhaseFinished

# Task stages in pipeline order, with what each covers (the names the build laps under).
STAGES = {
    "open and peek": "resolve the path, stat, read the header, open libsndfile (a local MP3: read into memory)",
    "decode": "libsndfile (libmpg123 for MP3, from memory) to float32",
    "mix and resample": "channels averaged, soxr HQ resampling",
    "checks": "peak and finiteness of samples and features, codec range",
    "STFT": "torch.stft, periodic Hann, centred",
    "power": "|X|^2 in real arithmetic",
    "mel filterbank": "sparse blocks of the Slaney filterbank",
    "log": "10 log10(max(S, 1e-10))",
    "logmel": "log-mel tensor to NumPy",
    "mfcc": "orthonormal DCT-II of the log-mel",
    "waveform": "crops of the clip",
    "handcrafted": "57 GTZAN descriptors per segment (librosa)",
    "copy into the shard": "features into the shard's buffers (float16 cast)",
    "encode": "shard to its stored dtype (quantized codecs round here)",
    "stored values": "what readers get back, in memory (no read-back from storage)",
    "compress and write": "zarr: Blosc/zstd per chunk, shard index, one object per array",
    "object sizes": "sizes of the written shard objects for the commit record",
    "content hash": "SHA-256 of the stored values",
    "statistics": "float64 sums of the train clips",
    "open store": "zarr group open; stored rows of a growing shard",
    "worker set-up": "extractor built (first task of a worker only)",
}
RESIDUALS = ("task code outside the laps", "the build outside its phases")  # not measured: the rest


@dataclass(frozen=True)
class Row:
    group: str  # "task", "Dask", "driver"
    name: str
    ms: float  # per clip, of one worker's time
    what: str


@dataclass(frozen=True)
class BuildProfile:
    """What a build measured of itself. `tasks`: per task its "shard", "worker" (pid), "began" and
    "ended" (time.time()), "clips", "decoded" and "stages" (seconds per stage). `submitted` and
    `collected` bound the tasks phase on the same clock, so that a worker's idle time before its
    first task and after its last one can be told from its busy time."""

    phases: dict[str, float]  # driver seconds: manifest and libraries, plan, cluster start-up, tasks, ...
    workers: int = 0  # task slots of the cluster (worker threads; one per process in a local build)
    submitted: float = 0.0
    collected: float = 0.0
    tasks: tuple[dict[str, Any], ...] = ()

    def per_clip(self, wall: float) -> list[Row]:
        """Rows summing to wall x workers / clips (the last of each group a residual, `RESIDUALS`)."""
        clips = sum(t["clips"] for t in self.tasks)
        if not clips:
            return []
        scale, workers = 1e3 / clips, max(self.workers, 1)
        stages: dict[str, float] = defaultdict(float)
        busy: dict[int, float] = defaultdict(float)
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        unattributed = 0.0
        for task in self.tasks:
            for name, seconds in task["stages"].items():
                stages[name] += seconds
            span = task["ended"] - task["began"]
            unattributed += span - sum(task["stages"].values())
            w = task["worker"]
            busy[w] += span
            first[w] = min(first.get(w, task["began"]), task["began"])
            last[w] = max(last.get(w, task["ended"]), task["ended"])
        rows = [Row("task", n, stages.pop(n) * scale, what) for n, what in STAGES.items() if n in stages]
        rows += [Row("task", n, s * scale, "a plug-in feature") for n, s in sorted(stages.items())]
        rows.append(Row("task", RESIDUALS[0], unattributed * scale, "result dict, stopwatch"))
        span = self.collected - self.submitted
        head = sum(first[w] - self.submitted for w in first)
        tail = sum(self.collected - last[w] for w in last)
        between = sum(span - busy[w] for w in busy) - head - tail
        tail += (workers - len(busy)) * span  # workers that ran no task wait all along
        rows += [
            Row("Dask", "before a worker's first task", head * scale, "submission, scheduling, sending the job"),
            Row("Dask", "between a worker's tasks", between * scale, "result back, commit record, next task"),
            Row("Dask", "after a worker's last task", tail * scale, "waiting for the other workers to finish"),
        ]
        rows += [Row("driver", name, seconds * workers * scale, "every worker waits")
                 for name, seconds in self.phases.items() if name != "tasks"]
        rows.append(Row("driver", RESIDUALS[1], (wall - sum(self.phases.values())) * workers * scale,
                        "the report"))
        return rows

    def table(self, wall: float) -> str:
        """The rows as text, largest first, for `featurestore build --profile`."""
        rows = self.per_clip(wall)
        if not rows:
            return "no clip was decoded: nothing to profile"
        total = sum(r.ms for r in rows)
        lines = [f"where the time went: ms per clip of one worker's time ({self.workers} workers, "
                 f"{sum(t['clips'] for t in self.tasks)} clips, {wall:.1f} s)"]
        lines += [f"  {r.ms:9.3f}  {r.ms / total:6.1%}  {r.group:6s} {r.name}" for r in
                  sorted(rows, key=lambda r: -r.ms) if r.ms >= 0.0005]
        return "\n".join(lines)


class Profiler:
    """A listener collecting the driver's phases and each committed task's timing."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.tasks: list[dict[str, Any]] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, PhaseFinished):
            self.phases[event.name] = self.phases.get(event.name, 0.0) + event.seconds
        elif isinstance(event, Committed):
            r = event.result
            self.tasks.append({"shard": r.shard, "worker": r.worker, "began": r.began, "ended": r.ended,
                               "decoded": r.decoded, "stages": r.stages,
                               "clips": event.record.stop - event.record.start})

    def profile(self, workers: int, submitted: float, collected: float) -> BuildProfile:
        return BuildProfile(dict(self.phases), workers, submitted, collected, tuple(self.tasks))


class PhaseClock:
    """The driver's stopwatch: `lap(name)` ends phase `name` and tells the build's listeners."""

    def __init__(self, events: Events):
        self.events = events
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.events.emit(PhaseFinished(name, now - self.last))
        self.last = now
