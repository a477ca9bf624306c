"""Recovery: what a crash costs a real build, against the same build undisturbed.

MTAT-like files (16 kHz mono MP3, 29.1 s), mtat-seed features, alternating in every round:
- (a) `featurestore build --workers 2` in its own process, as a user runs it (cold start included);
- (b) the same command SIGKILLed, with its workers, once half of its shards are committed, then
  run again: the crash costs (b) − (a), the work in flight at the kill plus one more start-up;
- (c) `featurestore.build` on a warm LocalCluster of 2 workers;
- (d) the same with one worker process SIGKILLed once a quarter of the shards are committed: its
  nanny starts a new one (which imports torch afresh) and Dask reruns the task it held.
Every disturbed build must end with the same content hash, shard by shard, as the undisturbed one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.context import Context
from benchmarks.results import Section, Table, fmt
from benchmarks.timing import Contender, alternate

WORKERS = 2
BUILT = re.compile(r"\((\d+) built now, (\d+) already committed\)")


@dataclass(frozen=True)
class Sizes:
    clips: int
    shard_clips: int | None  # None: the build's own choice
    rounds: int


FULL = Sizes(clips=1024, shard_clips=None, rounds=2)
QUICK = Sizes(clips=32, shard_clips=8, rounds=1)


def _committed(store: Path) -> int:
    return len(list((store / "commits").glob("shard-*/zarr.json")))


def _hashes(store: Path) -> dict[int, str]:
    from featurestore.store import open_store

    opened = open_store(store)
    if opened.build_state != "complete":
        raise RuntimeError(f"{store}: the build did not complete")
    return {i: r.content_hash() for i, r in opened.records.items()}


def _kill_family(pid: int) -> None:
    import psutil

    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def _warm(spec) -> None:
    """On a worker: import torch and build the extractor, as a first task would."""
    from featurestore.builder.task import extractor

    extractor(spec, spec.names)


def run(ctx: Context) -> Section:
    from featurestore.builder import build
    from featurestore.presets import preset
    from featurestore.store.layout import default_shard_clips

    from benchmarks.cluster import worker_pids
    from benchmarks.corpus import corpus, seconds

    sizes = QUICK if ctx.quick else FULL
    spec = preset("mtat-seed")
    clips = corpus(ctx, "mtat", sizes.clips)
    shard = sizes.shard_clips or default_shard_clips(sizes.clips, spec)
    n_shards = -(-sizes.clips // shard)
    cold, cold_killed = ctx.work / "recovery-cold.zarr", ctx.work / "recovery-cold-killed.zarr"
    warm, warm_killed = ctx.work / "recovery-warm.zarr", ctx.work / "recovery-warm-killed.zarr"
    command = [sys.executable, "-m", "featurestore", "build", str(clips.manifest), "--audio-root", str(clips.root),
               "--workers", str(WORKERS), "--shard-size", str(shard), "--quiet", "--out"]
    recomputed: dict[str, list[int]] = {"b": [], "d": []}
    committed_at_kill: list[int] = []

    def cold_build():
        subprocess.run([*command, str(cold)], check=True, stdout=subprocess.DEVNULL)

    def cold_killed_and_resumed():
        proc = subprocess.Popen([*command, str(cold_killed)], stdout=subprocess.DEVNULL)
        while _committed(cold_killed) < n_shards // 2:
            if proc.poll() is not None:
                raise RuntimeError("the build finished before half of its shards were committed")
            time.sleep(0.005)
        _kill_family(proc.pid)
        committed_at_kill.append(_committed(cold_killed))
        again = subprocess.run([*command, str(cold_killed)], check=True, capture_output=True, text=True)
        recomputed["b"].append(int(BUILT.search(again.stdout).group(1)))

    client = ctx.cluster(WORKERS)

    def warm_build(out: Path):
        return build(clips.manifest, audio_root=clips.root, out=out, spec=spec, shard_clips=shard,
                     scheduler=client.scheduler.address)

    def warm_with_a_worker_killed():
        victim = worker_pids(client)[0]

        def kill_at_a_quarter():
            while _committed(warm_killed) < max(1, n_shards // 4):
                time.sleep(0.005)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_at_a_quarter, daemon=True)
        killer.start()
        report = warm_build(warm_killed)
        killer.join()
        recomputed["d"].append(report.shards_built)

    def fresh(*stores: Path):
        def setup():
            for store in stores:
                shutil.rmtree(store, ignore_errors=True)
            client.wait_for_workers(WORKERS, timeout=120)
            client.run(_warm, spec)  # a worker restarted by (d) warms up untimed

        return setup

    names = {
        "a": f"(a) featurestore build --workers {WORKERS}, undisturbed",
        "b": "(b) the same, SIGKILLed at half its shards, then re-run",
        "c": f"(c) featurestore.build on {WORKERS} warm workers, undisturbed",
        "d": "(d) the same, one worker SIGKILLed at a quarter of the shards",
    }
    ctx.log(f"{sizes.rounds} rounds of {sizes.clips} clips in {n_shards} shards, alternating (a) (b) (c) (d)")
    runs = alternate([
        Contender(names["a"], cold_build, lambda: [], fresh(cold)),
        Contender(names["b"], cold_killed_and_resumed, lambda: [], fresh(cold_killed)),
        Contender(names["c"], lambda: warm_build(warm), lambda: [], fresh(warm)),
        Contender(names["d"], warm_with_a_worker_killed, lambda: [], fresh(warm_killed)),
    ], sizes.rounds, ctx.log)

    reference = _hashes(cold)
    for store in (cold_killed, warm, warm_killed):
        if _hashes(store) != reference:
            raise RuntimeError(f"{store} differs from the undisturbed build")

    median = {k: runs[v].median for k, v in names.items()}
    rows = [
        [names["a"], fmt(median["a"]), " / ".join(f"{s:.2f}" for s in runs[names["a"]].seconds), "-", "-"],
        [names["b"], fmt(median["b"]), " / ".join(f"{s:.2f}" for s in runs[names["b"]].seconds),
         " / ".join(f"{r} of {n_shards} (committed at the kill: {k})" for r, k in zip(recomputed["b"], committed_at_kill)),
         f"{median['b'] - median['a']:+.2f} s ({median['b'] / median['a']:.2f}×)"],
        [names["c"], fmt(median["c"]), " / ".join(f"{s:.2f}" for s in runs[names["c"]].seconds), "-", "-"],
        [names["d"], fmt(median["d"]), " / ".join(f"{s:.2f}" for s in runs[names["d"]].seconds),
         " / ".join(f"all {r}, in the same run" for r in recomputed["d"]),
         f"{median['d'] - median['c']:+.2f} s ({median['d'] / median['c']:.2f}×)"],
    ]
    return Section(
        name="recovery",
        title="Recovery",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[Table(f"{sizes.clips} MTAT-like clips ({seconds(ctx, 'mtat'):g} s MP3), shards of {shard} clips, "
                      f"median of {sizes.rounds} alternating rounds",
                      ["contender", "median s", "all runs s", "shards built by the last run", "cost of the fault"],
                      rows)],
        notes=[
            "Every disturbed store ended with the undisturbed store's content hash for every shard.",
            "(b) is killed when the commit records on disk reach half the shards (polled every 5 ms), so "
            "a shard or two more may be committed by then; the re-run builds exactly the rest.",
            "A resumed build costs its start-up plus the shards not yet committed: work done by tasks in "
            "flight at the kill is lost, committed work never is.",
        ],
    )
