"""Build throughput: `featurestore.build` against librosa done by hand and against decoding alone, per preset.

For each preset, on its own kind of generated files (mtat-seed: 16 kHz mono MP3; fma: 44.1 kHz
stereo MP3; gtzan: 22.05 kHz WAV), one run, alternating every contender in every round:
- the project: `featurestore.build` on warm Dask LocalClusters of 2 and of 1
  single-threaded worker processes (passed as `scheduler=`, set up like the build's own
  cluster), writing the whole store (arrays, commits, statistics, manifest copy);
- (a) librosa by hand, the same features into one `.npy` per clip and feature
  (`benchmarks/baselines.py`): a `multiprocessing.Pool(2)` mapping it over the clips, the first
  parallel version a user writes, with the libraries' default threads and with one thread per
  process (the stronger of the two, which the target uses), and a single-process loop; all warm;
- (b) the decode-only ceiling: soundfile + soxr and nothing else, on the project's 2 workers and
  on its 1 worker, one task per shard-sized group of files like the build: how far decoding
  alone scales on this machine; (b') the store's own decoder alone (`featurestore.audio.decoder`:
  MP3s read from memory, every check), the floor the build itself stands on.
The project's own runs say where their time goes (`BuildReport.profile`, `featurestore/profile.py`):
the per-stage table is the median run's. Then the floors behind it: other MP3 decoders, and the
handcrafted descriptors against the direct librosa calls they reproduce. Peak memory is the
largest RSS of one process (psutil, every 50 ms).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import shutil
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from featurestore.builder.profile import RESIDUALS

from benchmarks.baselines import prepare
from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt
from benchmarks.timing import Contender, alternate, paired_speedup, round_speedups

TARGET_VS_DECODE = 0.70
TARGET_VS_POOL = 1.6
TARGET_SCALING = 1.8
TARGET_HANDCRAFTED = 2.0
PARITY = 1e-4  # relative, handcrafted against direct librosa
PROFILE_TOLERANCE = 0.10
WORKERS = 2
WARM_CLIPS = 16  # two one-chunk shards: one for each worker, usually
GTZAN_TRACKS = 1000


@dataclass(frozen=True)
class Case:
    preset: str
    flavour: str
    clips: int
    rounds: int


FULL = (Case("mtat-seed", "mtat", 512, 5), Case("fma", "fma", 48, 3), Case("gtzan", "gtzan", 96, 3))
QUICK = (Case("mtat-seed", "mtat", 16, 1), Case("fma", "fma", 4, 1), Case("gtzan", "gtzan", 4, 1))
HANDCRAFTED_CLIPS = (6, 32)  # clips timed against direct librosa; clips built for the projection
QUICK_HANDCRAFTED = (1, 4)


def run(ctx: Context) -> Section:
    cases = QUICK if ctx.quick else FULL
    two, one = ctx.cluster(WORKERS), ctx.cluster(1)
    tables, targets, notes = [], [], []
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(WORKERS, initializer=prepare) as pool, spawn.Pool(WORKERS, prepare, (True,)) as pool1, \
            ProcessPoolExecutor(1, mp_context=spawn, initializer=prepare) as loop:
        for case in cases:
            result = _case(ctx, case, two, one, (pool, pool1), loop)
            tables += result["tables"]
            targets += result["targets"]
            notes += result["notes"]
        hand_tables, hand_targets, hand_notes = _handcrafted(ctx, two, loop)
    tables += [_decoders(ctx)] + hand_tables
    targets += hand_targets
    notes += hand_notes + [
        "Start-up of a fresh LocalCluster (worker processes importing torch) is not in these numbers: the "
        "scaling section measures it, `featurestore.build(workers=2)` end to end against warm workers.",
        "(b) runs in the build's own worker processes, so its RSS includes what the build imported there (torch).",
    ]
    return Section(name="build", title="Build throughput", summary=__doc__.split("\n\n", 1)[1].strip(),
                   tables=tables, targets=targets, notes=notes)


def _case(ctx: Context, case: Case, two, one, pools, loop) -> dict:
    from featurestore.builder import build
    from featurestore.presets import preset
    from featurestore.store.layout import default_shard_clips

    from benchmarks.baselines import Plain, decode_chunk, librosa_clip, librosa_loop, store_decode_chunk
    from benchmarks.cluster import worker_pids
    from benchmarks.corpus import corpus, distinct, seconds

    spec = preset(case.preset)
    plain = Plain.of(spec)
    clips = corpus(ctx, case.flavour, case.clips)
    shard = default_shard_clips(case.clips, spec)
    groups = [clips.paths[i : i + shard] for i in range(0, case.clips, shard)]
    store, npy = ctx.work / f"build-{case.preset}.zarr", ctx.work / f"librosa-{case.preset}"
    pids = [[p.pid for p in pool._pool] for pool in pools]  # noqa: SLF001 - where multiprocessing keeps them
    loop_pid = loop.submit(os.getpid).result()
    profiles: dict[float, tuple] = {}

    def project(client):
        def go():
            started = time.perf_counter()
            report = build(clips.manifest, audio_root=clips.root, out=store, spec=spec,
                           scheduler=client.scheduler.address, overwrite=True)
            if report.ok != case.clips:
                raise RuntimeError(f"the build stored {report.ok} of {case.clips} clips: {report.first_reasons}")
            if client is two:
                profiles[time.perf_counter() - started] = report.profile
        return go

    def by_pool(pool):
        def go():
            if sum(pool.map(partial(librosa_clip, spec=plain, out_dir=str(npy)), enumerate(clips.paths))) != case.clips:
                raise RuntimeError("the librosa pool skipped clips")
        return go

    def by_loop():
        if loop.submit(librosa_loop, clips.paths, plain, str(npy)).result() != case.clips:
            raise RuntimeError("the librosa loop skipped clips")

    def decode_only(client, chunk=decode_chunk):
        settings = spec if chunk is store_decode_chunk else plain

        def go():
            if sum(client.gather(client.map(chunk, groups, spec=settings, pure=False))) != case.clips:
                raise RuntimeError("the decode-only baseline skipped clips")
        return go

    def clean():
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(npy, ignore_errors=True)

    warm = corpus(ctx, case.flavour, WARM_CLIPS)
    ctx.log(f"{case.preset}: warming every contender up (imports, extractors, numba) on {WARM_CLIPS} clips")
    for client in (two, one):
        _warm_every_worker(client, warm, spec, ctx.work / "warm.zarr")
    for pool in pools:
        pool.map(partial(librosa_clip, spec=plain, out_dir=str(ctx.work / "warm-npy")), enumerate(warm.paths))
    loop.submit(librosa_loop, warm.paths, plain, str(ctx.work / "warm-npy")).result()
    for client in (two, one):
        client.gather(client.map(decode_chunk, [warm.paths], spec=plain, pure=False))
    two.gather(two.map(store_decode_chunk, [warm.paths], spec=spec, pure=False))

    names = {
        "two": f"featurestore.build, {WORKERS} Dask workers",
        "one": "featurestore.build, 1 Dask worker",
        "pool default": f"(a) librosa, multiprocessing.Pool({WORKERS}), default threads",
        "pool": f"(a) librosa, multiprocessing.Pool({WORKERS}), 1 thread per process",
        "loop": "(a) librosa loop, 1 process",
        "decode": f"(b) decode only (soundfile + soxr), the same {WORKERS} Dask workers",
        "decode one": "(b) decode only, the same 1 Dask worker",
        "store decode": f"(b') decode only with the store's decoder (featurestore.audio.decoder), {WORKERS} workers",
    }
    ctx.log(f"{case.preset}: {case.rounds} round(s) of {case.clips} clips, alternating {', '.join(names)}")
    runs = alternate([
        Contender(names["two"], project(two), lambda: worker_pids(two), clean),
        Contender(names["one"], project(one), lambda: worker_pids(one), clean),
        Contender(names["pool default"], by_pool(pools[0]), lambda: pids[0], clean),
        Contender(names["pool"], by_pool(pools[1]), lambda: pids[1], clean),
        Contender(names["loop"], by_loop, lambda: [loop_pid], clean),
        Contender(names["decode"], decode_only(two), lambda: worker_pids(two), clean),
        Contender(names["decode one"], decode_only(one), lambda: worker_pids(one), clean),
        Contender(names["store decode"], decode_only(two, store_decode_chunk), lambda: worker_pids(two), clean),
    ], case.rounds, ctx.log)
    label = f"{case.preset} ({case.clips} {case.flavour.upper()}-like clips, {seconds(ctx, case.flavour):g} s, " \
            f"{min(case.clips, distinct(ctx, case.flavour))} distinct renders; shards of {shard})"
    codecs_table, cheapest = _codecs(ctx, case, clips, spec, two, label)
    rate = {k: case.clips / runs[v].median for k, v in names.items()}

    def speedup(k: str, base: str) -> float:
        return paired_speedup(runs, names[k], names[base])

    rows = [[names[k], fmt(rate[k]), fmt(runs[names[k]].median), " / ".join(f"{s:.2f}" for s in runs[names[k]].seconds),
             f"{runs[names[k]].peak / 2**20:,.0f}", f"{speedup(k, 'pool'):.2f}×", f"{speedup(k, 'loop'):.2f}×",
             f"{speedup(k, 'decode'):.0%}"] for k in names]

    wall = sorted(profiles)[len(profiles) // 2]
    profile_rows = profiles[wall].per_clip(wall)
    per_worker = wall * WORKERS * 1e3 / case.clips
    measured = sum(r.ms for r in profile_rows if r.name not in RESIDUALS)
    table_rows = [[r.group, r.name, f"{r.ms:.3f}", f"{r.ms / per_worker:.1%}", r.what] for r in profile_rows]
    table_rows.append(["", "sum of the measured rows", f"{measured:.2f}", f"{measured / per_worker:.1%}",
                       "residual rows excluded"])
    table_rows.append(["", f"wall time per clip × {WORKERS} workers", f"{per_worker:.2f}", "100%",
                       f"this run: {wall:.2f} s for {case.clips} clips"])
    decode_ms = sum(r.ms for r in profile_rows if r.name in ("open and peek", "decode", "mix and resample"))

    vs_decode, vs_pool, scaling = speedup("two", "decode"), speedup("two", "pool"), speedup("two", "one")
    decode_scaling = speedup("decode", "decode one")
    ms = defaultdict(float, {r.name: r.ms for r in profile_rows})
    floor = decode_ms + ms["STFT"] + ms["compress and write"]
    codec_floor = decode_ms + ms["STFT"] + cheapest[1]
    ceiling_time = WORKERS * 1e3 / rate["decode"]
    pool_time = WORKERS * 1e3 / rate["pool"]
    agree = abs(measured / per_worker - 1)
    return {
        "tables": [
            Table(f"{label}: median of {case.rounds} alternating round(s); each ratio is the median of the "
                  "per-round ratios",
                  ["contender", "clips/s", "median s", "all runs s", "peak RSS per process MiB", "vs Pool(2) 1 thread",
                   "vs loop", "vs (b)"], rows),
            Table(f"{label}: where the 2-worker build's time goes (its median run), ms per clip of one worker's time",
                  ["", "stage", "ms per clip", "share", "what"], table_rows),
            codecs_table,
        ],
        "targets": [
            Target(f"{case.preset}: build vs (b) decode-only ceiling", f"≥ {TARGET_VS_DECODE:.0%}",
                   f"{vs_decode:.0%} (rounds {_spread(runs, names['two'], names['decode'], '.0%')})",
                   vs_decode >= TARGET_VS_DECODE),
            Target(f"{case.preset}: build vs (a) librosa Pool({WORKERS})", f"≥ {TARGET_VS_POOL}×",
                   f"{vs_pool:.2f}× (rounds {_spread(runs, names['two'], names['pool'], '.2f')})",
                   vs_pool >= TARGET_VS_POOL),
            Target(f"{case.preset}: {WORKERS} workers vs 1", f"≥ {TARGET_SCALING}×",
                   f"{scaling:.2f}× (rounds {_spread(runs, names['two'], names['one'], '.2f')})",
                   scaling >= TARGET_SCALING),
            Target(f"{case.preset}: stage profile sums to the wall time", f"within {PROFILE_TOLERANCE:.0%}",
                   f"{measured:.2f} of {per_worker:.2f} ms ({agree:.1%} off)", agree <= PROFILE_TOLERANCE),
        ],
        "notes": [
            f"{case.preset}: opening and decoding the files is {decode_ms:.2f} of the build's {per_worker:.2f} ms "
            f"per clip per worker ({decode_ms / per_worker:.0%}); the decode-only ceiling spends "
            f"{WORKERS * 1e3 / rate['decode']:.2f} ms, Dask included. The floor under the build is decoding plus "
            f"the two stages no arithmetic removes, the FFT ({ms['STFT']:.2f} ms) and the store's compression "
            f"({ms['compress and write']:.2f} ms, {spec.codec} of {_stored_kb(spec):.0f} KB per clip): "
            f"{floor:.2f} ms, so with every other stage free the build would reach {ceiling_time / floor:.0%} of "
            f"the ceiling. With the cheapest lossless codec measured ({cheapest[0]}, {cheapest[1]:.2f} ms) that "
            f"floor is {codec_floor:.2f} ms: at most {ceiling_time / codec_floor:.0%} of the ceiling and "
            f"{pool_time / codec_floor:.2f}× the single-threaded librosa pool ({pool_time:.2f} ms per clip per "
            f"process), even if every other stage cost nothing.",
            f"{case.preset}: decoding alone runs {decode_scaling:.2f}× as fast on {WORKERS} workers as on 1: how far "
            f"this machine's cores scale for this work (the build: {scaling:.2f}×).",
            f"{case.preset}: the store's own decoder alone (b') runs at {rate['store decode']:,.0f} clips/s, "
            f"{speedup('store decode', 'decode'):.2f}× plain soundfile (b); the build reaches "
            f"{speedup('two', 'store decode'):.0%} of it.",
        ],
    }


def _spread(runs, name: str, base: str, spec: str) -> str:
    """Each round's speed-up of `name` over `base`, lowest to highest."""
    ratios = sorted(round_speedups(runs, name, base))
    return " … ".join(format(r, spec) for r in (ratios[0], ratios[-1])) if len(ratios) > 1 else format(ratios[0], spec)


def _codecs(ctx: Context, case: Case, clips, spec, client, label: str) -> tuple[Table, tuple[str, float]]:
    """The store's lossless codecs on the same clips: what its compression stage costs and saves
    (one build each on the warm 2 workers, its profile's "compress and write" row); returns the
    table and the cheapest codec that compresses (name, ms per clip)."""
    from featurestore.builder import build
    from featurestore.codecs import DEFAULT, LOSSLESS
    from featurestore.store import open_store
    from featurestore.store.inspect import footprint

    rows, costs = [], {}
    for name in (DEFAULT, *LOSSLESS):
        out = ctx.work / f"codec-{case.preset}.zarr"
        started = time.perf_counter()
        report = build(clips.manifest, audio_root=clips.root, out=out, spec=spec.replace(codec=name),
                       scheduler=client.scheduler.address, overwrite=True)
        wall = time.perf_counter() - started
        ms = {r.name: r.ms for r in report.profile.per_clip(wall)}["compress and write"]
        total = footprint(open_store(out))[-1]
        costs[name] = ms
        rows.append([name, f"{ms:.2f}", f"{total.bytes_per_clip / 1e3:,.0f}", f"{total.ratio:.2f}×",
                     f"{case.clips / wall:.0f}"])
        shutil.rmtree(out, ignore_errors=True)
    cheapest = min(((n, c) for n, c in costs.items() if n != "none"), key=lambda nc: nc[1])
    return Table(f"{label}: the store's lossless codecs, one build each (2 workers): the compression stage's cost",
                 ["codec", "compress and write ms per clip", "stored KB per clip", "ratio", "clips/s (one run)"],
                 rows), cheapest


def _warm_every_worker(client, warm, spec, out: Path) -> None:
    """Builds of one-chunk shards until every worker has run a task: a worker's first task imports
    zarr and builds its extractor (half a second), which must not land in a timed run."""
    from featurestore.builder import build
    from featurestore.store.layout import CHUNK_CLIPS

    from benchmarks.cluster import worker_pids

    cold = set(worker_pids(client))
    for _ in range(10):
        report = build(warm.manifest, audio_root=warm.root, out=out, spec=spec, scheduler=client.scheduler.address,
                       shard_clips=CHUNK_CLIPS, overwrite=True)
        cold -= {task["worker"] for task in report.profile.tasks}
        if not cold:
            return
    raise RuntimeError(f"worker(s) {sorted(cold)} ran no warm-up task in 10 builds")


def _stored_kb(spec) -> float:
    """Raw bytes per clip of the arrays a build compresses (KB)."""
    from featurestore.store.layout import clip_arrays

    return sum(a.clip_bytes for a in clip_arrays(spec).values()) / 1e3


def _decoders(ctx: Context) -> Table:
    """The MP3 decoders that could replace libsndfile's, on the same files, alternating."""
    from benchmarks.corpus import corpus, seconds

    decoders = {"libsndfile 1.2 (libmpg123), as the build": _libsndfile}
    for module, label, fn in (("miniaudio", "miniaudio (dr_mp3)", _miniaudio),
                              ("pedalboard", "pedalboard (JUCE)", _pedalboard)):
        if importlib.util.find_spec(module):
            decoders[label] = fn
    rows = []
    for flavour, n in (("mtat", 16), ("fma", 8)):
        paths = corpus(ctx, flavour, n).paths
        spent = {k: [] for k in decoders}
        for _ in range(1 if ctx.quick else 3):
            for label, fn in decoders.items():
                t0 = time.perf_counter()
                for p in paths:
                    fn(p)
                spent[label].append((time.perf_counter() - t0) / n)
        base = np.median(spent[next(iter(decoders))])
        rows += [[f"{flavour.upper()}-like MP3, {seconds(ctx, flavour):g} s", label, f"{np.median(s) * 1e3:.2f}",
                  f"{np.median(s) / base:.2f}×"] for label, s in spent.items()]
    missing = [m for m in ("miniaudio", "pedalboard") if not importlib.util.find_spec(m)]
    caption = "MP3 decoders, whole file to float32, one process, median of 3 alternating rounds" + (
        f" ({', '.join(missing)} not installed: pip install -c constraints.txt -e '.[bench]')" if missing else "")
    return Table(caption, ["files", "decoder", "ms per file", "time vs libsndfile"], rows)


def _libsndfile(path: str) -> np.ndarray:
    import soundfile as sf

    return sf.read(path, dtype="float32", always_2d=True)[0]


def _miniaudio(path: str) -> np.ndarray:
    import miniaudio

    decoded = miniaudio.mp3_read_file_f32(path)
    return np.asarray(decoded.samples, dtype=np.float32).reshape(-1, decoded.nchannels)


def _pedalboard(path: str) -> np.ndarray:
    from pedalboard.io import AudioFile

    with AudioFile(path) as f:
        return f.read(f.frames)


def time_descriptors(paths: list[str], spec, rounds: int) -> tuple[list[float], list[float], float]:
    """Seconds per clip of `describe` and of the direct librosa calls, alternating, and their worst
    relative difference. Runs in the benchmark's spawned one-process executor, a lean process of
    its own; its first `describe` compiles librosa's kernels under the store's compile lock."""
    from featurestore.audio import decode
    from featurestore.environment import compiling
    from featurestore.maths.descriptors import describe, segments

    from benchmarks.baselines import librosa_descriptors

    rate, size = spec.decoding.sample_rate, spec.feature("handcrafted").segment_samples
    samples = [decode(p, spec.decoding).samples for p in paths]
    with compiling():
        describe(samples[0], rate, size)  # numba compiles librosa's kernels once
    ours, direct, worst = [], [], 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        tables = [describe(y, rate, size) for y in samples]
        t1 = time.perf_counter()
        reference = [np.stack([librosa_descriptors(s, rate) for s in segments(y, size)]) for y in samples]
        t2 = time.perf_counter()
        ours.append((t1 - t0) / len(samples))
        direct.append((t2 - t1) / len(samples))
        for a, b in zip(tables, reference):
            worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6))))
    return ours, direct, worst


def _handcrafted(ctx: Context, client, loop) -> tuple[list[Table], list[Target], list[str]]:
    """The descriptors as the store computes them against the table's direct librosa calls, and a
    handcrafted build on 2 workers, projected to GTZAN's 1,000 tracks."""
    from featurestore.builder import build
    from featurestore.presets import preset

    from benchmarks.corpus import corpus, seconds

    timed_clips, built_clips = QUICK_HANDCRAFTED if ctx.quick else HANDCRAFTED_CLIPS
    spec = preset("gtzan").select(["handcrafted"])
    if ctx.quick:  # the smoke test's 3-s clips, not padded with 27 s of silence (pitch tracking finds nothing there)
        spec = spec.replace(duration=seconds(ctx, "gtzan"))
    clips = corpus(ctx, "gtzan", timed_clips)
    ours, direct, worst = loop.submit(time_descriptors, clips.paths, spec, 1 if ctx.quick else 2).result()
    speedup = float(np.median(direct) / np.median(ours))

    built = corpus(ctx, "gtzan", built_clips)
    report = build(built.manifest, audio_root=built.root, out=ctx.work / "handcrafted.zarr",
                   spec=preset("gtzan").select(["logmel", "mfcc", "handcrafted"]), scheduler=client.scheduler.address,
                   overwrite=True)
    per_clip = report.elapsed / len(built.paths)
    table = Table(
        f"GTZAN handcrafted descriptors (57 per 3-s segment, 10 segments per 30-s clip), one process, "
        f"{timed_clips} clips, median of {len(ours)} alternating round(s)",
        ["computation", "s per 30-s clip", "speed-up"],
        [["featurestore.maths.descriptors.describe (shared STFT, bottleneck median filters)", f"{np.median(ours):.3f}",
          f"{speedup:.2f}×"],
         ["direct librosa.feature.* calls per segment (the public table's)", f"{np.median(direct):.3f}", "1.00×"],
         [f"featurestore.build on {WORKERS} warm workers, gtzan log-mel + MFCC + handcrafted, {len(built.paths)} clips",
          f"{per_clip:.3f} wall", f"GTZAN's {GTZAN_TRACKS:,} tracks: {per_clip * GTZAN_TRACKS / 60:.1f} min on "
          f"{WORKERS} cores (+ start-up)"]],
    )
    targets = [
        Target("handcrafted descriptors vs direct librosa calls", f"≥ {TARGET_HANDCRAFTED:g}×", f"{speedup:.2f}×",
               speedup >= TARGET_HANDCRAFTED),
        Target("handcrafted values vs direct librosa calls", f"≤ {PARITY:g} relative", f"{worst:.1e}", worst <= PARITY),
    ]
    return [table], targets, [f"Handcrafted values differ from the direct calls by at most {worst:.1e} relative "
                              "(|a − b| / max(|b|, 1e-6)) over every descriptor of every segment timed."]
