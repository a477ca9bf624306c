"""Scaling: does the build's cost per clip stay flat, and do two workers give two cores' worth?

1. Start-up: `featurestore.build(workers=2)` end to end (it starts its own LocalCluster, as
   `featurestore build` does) against the same build on warm workers, alternating; the
   difference is what a user pays once per build.
2. Size: `featurestore.build` on 2 warm workers for 100 → 3,200 MTAT-like clips at mtat-seed. A
   least-squares line t = a + b·n splits the per-build overhead a from the cost per clip b;
   flat means b explains every size.
3. Workers: the same build on warm clusters of 1 and 2 workers, under three settings of glibc's
   allocator in the workers: `featurestore.build`'s own, Dask's default (`MALLOC_TRIM_THRESHOLD_=65536`,
   which also pins the mmap threshold) and glibc's adaptive default (both unset), alternating
   all clusters in each round.
4. Projection: seconds per clip measured on 1 and 2 warm workers (the build's default
   environment) for MTAT (mtat-seed, 16 kHz mono MP3), FMA (fma preset, 44.1 kHz stereo MP3) and
   GTZAN (gtzan preset, 22.05 kHz WAV), times each dataset's clip count, plus the start-up cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt, save_figure
from benchmarks.timing import Contender, alternate

TARGET_SPEEDUP = 1.7
DATASETS = {  # flavour -> (dataset, clips, preset)
    "mtat": ("MTAT", 25_863, "mtat-seed"),
    "fma": ("FMA-small", 8_000, "fma"),
    "gtzan": ("GTZAN", 1_000, "gtzan"),
}


@dataclass(frozen=True)
class Sizes:
    cold_clips: int
    cold_rounds: int
    counts: tuple[int, ...]
    workers_clips: int  # MTAT clips per build in the worker comparison
    rounds: int
    other_clips: int  # FMA and GTZAN clips per build
    warmup: int  # clips of each flavour built once on every cluster before timing (0: none)


FULL = Sizes(cold_clips=64, cold_rounds=2, counts=(100, 200, 400, 800, 1600, 3200), workers_clips=1024, rounds=2,
             other_clips=96, warmup=8)
QUICK = Sizes(cold_clips=8, cold_rounds=1, counts=(8, 16), workers_clips=16, rounds=1, other_clips=8, warmup=0)


# Allocator settings compared in the workers: name -> `worker_env` override of the build's own.
SETTINGS = {
    "the build's default": None,
    "Dask's default, MALLOC_TRIM_THRESHOLD_=65536": {"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": None},
    "glibc's default, both unset": {"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_MMAP_THRESHOLD_": None},
}
DEFAULT = next(iter(SETTINGS))


def config_name(flavour: str, workers: int, setting: str) -> str:
    return f"{DATASETS[flavour][0]}, {workers} worker{'s' if workers > 1 else ''}, {setting}"


def fit_line(n: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(intercept s, slope s/clip, R²) of the least-squares line t = a + b·n."""
    b, a = np.polyfit(n, t, 1)
    residual = t - (a + b * n)
    r2 = 1 - float(residual @ residual) / float(((t - t.mean()) ** 2).sum())
    return float(a), float(b), r2


def build(ctx: Context, corpus_, preset_name: str, **where) -> None:
    """One whole `featurestore.build` (overwriting the previous one); `where`: workers= or scheduler=."""
    import featurestore
    from featurestore.presets import preset

    report = featurestore.build(corpus_.manifest, audio_root=corpus_.root, out=ctx.work / f"scaling-{preset_name}.zarr",
                                spec=preset(preset_name), overwrite=True, **where)
    if report.ok != len(corpus_.paths):
        raise RuntimeError(f"featurestore.build stored {report.ok} of {len(corpus_.paths)} clips: {report.first_reasons}")


def cold_start(ctx: Context, sizes: Sizes):
    from benchmarks.cluster import worker_pids
    from benchmarks.corpus import corpus

    c = corpus(ctx, "mtat", sizes.cold_clips)
    warm = ctx.cluster(2)
    pids = worker_pids(warm)
    return alternate([
        Contender("`featurestore.build(workers=2)`: starts its own LocalCluster", lambda: build(ctx, c, "mtat-seed", workers=2),
                  lambda: []),
        Contender("`featurestore.build(scheduler=...)` on 2 warm workers", lambda: build(
            ctx, c, "mtat-seed", scheduler=warm.scheduler.address), lambda: pids),
    ], sizes.cold_rounds, ctx.log)


def size_sweep(ctx: Context, sizes: Sizes) -> tuple[np.ndarray, np.ndarray]:
    from benchmarks.corpus import corpus

    client, times = ctx.cluster(2), {}
    # Small and large builds interleaved in time, so a drift in the machine's load bends no fit.
    for n in [*sizes.counts[::2], *sizes.counts[1::2][::-1]]:
        c = corpus(ctx, "mtat", n)
        t0 = time.perf_counter()
        build(ctx, c, "mtat-seed", scheduler=client.scheduler.address)
        times[n] = time.perf_counter() - t0
        ctx.log(f"  {n} clips: {times[n]:.1f} s ({n / times[n]:.1f} clips/s)")
    return np.array(sizes.counts, float), np.array([times[n] for n in sizes.counts])


def worker_runs(ctx: Context, sizes: Sizes):
    """Alternating rounds over {1, 2 workers} × allocator settings for MTAT, {1, 2} for FMA and GTZAN."""
    from benchmarks.cluster import seen_by_workers, worker_pids
    from benchmarks.corpus import corpus

    inputs = {
        "mtat": corpus(ctx, "mtat", sizes.workers_clips),
        "fma": corpus(ctx, "fma", sizes.other_clips),
        "gtzan": corpus(ctx, "gtzan", sizes.other_clips),
    }
    warm = {f: corpus(ctx, f, sizes.warmup) for f in inputs} if sizes.warmup else {}
    clients = {(w, setting): ctx.cluster(w, env) for setting, env in SETTINGS.items() for w in (1, 2)}
    seen = {setting: seen_by_workers(clients[1, setting]) for setting in SETTINGS}
    contenders = []
    for (w, setting), client in clients.items():
        address, pids = client.scheduler.address, worker_pids(client)
        for f in inputs:
            if setting == DEFAULT or f == "mtat":
                if f in warm:
                    build(ctx, warm[f], DATASETS[f][2], scheduler=address)
                contenders.append(Contender(config_name(f, w, setting),
                                            lambda f=f, a=address: build(ctx, inputs[f], DATASETS[f][2], scheduler=a),
                                            lambda p=pids: p))
    ctx.log(f"  {sizes.rounds} alternating rounds over {len(contenders)} builds")
    runs = alternate(contenders, sizes.rounds, ctx.log)
    counts = {f: len(c.paths) for f, c in inputs.items()}
    return runs, counts, seen


def run(ctx: Context) -> Section:
    from benchmarks.corpus import distinct

    sizes = QUICK if ctx.quick else FULL
    ctx.log(f"start-up: {sizes.cold_clips} clips, featurestore.build(workers=2) end to end vs warm workers")
    cold = cold_start(ctx, sizes)
    cold_runs, warm_runs = cold.values()
    startup = cold_runs.median - warm_runs.median
    cold_rows = [[name, f"{r.median:.1f}", " / ".join(f"{s:.1f}" for s in r.seconds)] for name, r in cold.items()]
    cold_rows.append(["start-up cost (difference)", f"{startup:.1f}", ""])

    ctx.log(f"size sweep {sizes.counts[0]} → {sizes.counts[-1]} clips on 2 warm workers")
    n, t = size_sweep(ctx, sizes)
    a, b, r2 = fit_line(n, t)
    size_rows = [[f"{int(k):,}", f"{s:.1f}", fmt(k / s), f"{s / k * 1e3:.1f}", f"{(s - a) / k * 1e3:.1f}",
                  f"{a + b * k:.1f}"] for k, s in zip(n, t)]

    ctx.log("1 and 2 workers under three allocator settings")
    runs, counts, seen = worker_runs(ctx, sizes)

    def per_clip(flavour: str, workers: int, setting: str = DEFAULT) -> float:
        return runs[config_name(flavour, workers, setting)].median / counts[flavour]

    worker_rows = []
    for flavour in DATASETS:
        for setting in SETTINGS if flavour == "mtat" else (DEFAULT,):
            for w in (1, 2):
                r = runs[config_name(flavour, w, setting)]
                worker_rows.append([
                    config_name(flavour, w, setting), fmt(counts[flavour] / r.median), f"{r.median:.1f}",
                    " / ".join(f"{s:.1f}" for s in r.seconds), f"{r.peak / 2**20:,.0f}",
                    f"{per_clip(flavour, 1, setting) / per_clip(flavour, w, setting):.2f}×",
                    f"{per_clip(flavour, w, DEFAULT) / per_clip(flavour, w, setting):.2f}×",
                ])
    speedups = {setting: per_clip("mtat", 1, setting) / per_clip("mtat", 2, setting) for setting in SETTINGS}

    projection_rows = []
    for flavour, (dataset, clips, preset_name) in DATASETS.items():
        one, two = per_clip(flavour, 1), per_clip(flavour, 2)
        projection_rows.append([
            dataset, f"{clips:,}", preset_name, f"{one * 1e3:.1f}", f"{two * 1e3:.1f}",
            hms(clips * one + startup), hms(clips * two + startup),
        ])

    plot = plot_scaling(ctx, n, t, a, b)
    return Section(
        name="scaling",
        title="Scaling",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[
            Table(f"Start-up: {sizes.cold_clips} MTAT-like clips, mtat-seed, median of {sizes.cold_rounds} "
                  f"alternating rounds", ["build", "median s", "all runs s"], cold_rows),
            Table(f"Build time against clip count, `featurestore.build` on 2 warm workers, mtat-seed. Fit: "
                  f"t = {a:.2f} s + {b * 1e3:.2f} ms × clips, R² = {r2:.4f}",
                  ["clips", "wall s", "clips/s", "ms per clip (raw)", "ms per clip after the fit's intercept", "fit s"],
                  size_rows),
            Table(f"Warm clusters of 1 and 2 workers, median of {sizes.rounds} alternating rounds "
                  f"({counts['mtat']:,} MTAT, {counts['fma']} FMA, {counts['gtzan']} GTZAN clips per build)",
                  ["build", "clips/s", "median s", "all runs s", "peak RSS per worker MiB", "speed-up vs 1 worker",
                   "speed vs the build's default"],
                  worker_rows),
            Table(f"Projected wall time of a full build: measured s/clip × clips + {startup:.1f} s start-up "
                  f"(the build's default worker environment)",
                  ["dataset", "clips", "preset", "ms/clip, 1 worker (per core)", "ms/clip, 2 workers",
                   "1 core", "2 cores"], projection_rows),
        ],
        targets=[
            Target("MTAT, 2 workers vs 1 worker (the build's default worker environment)", f"≥ {TARGET_SPEEDUP}×",
                   f"{speedups[DEFAULT]:.2f}×", speedups[DEFAULT] >= TARGET_SPEEDUP),
        ],
        notes=[
            "MTAT speed-up of 2 workers over 1: "
            + "; ".join(f"{setting}: {x:.2f}×" for setting, x in speedups.items())
            + f" (target {TARGET_SPEEDUP}×). What the workers reported: "
            + "; ".join(f"{setting}: {seen[setting]}" for setting in SETTINGS) + ".",
            f"Cost per clip: fit slope {b * 1e3:.2f} ms on 2 warm workers; per-build overhead (store creation, "
            f"statistics, manifest copy) {a:.2f} s; start-up of a fresh LocalCluster (worker processes importing "
            f"torch) {startup:.1f} s.",
            f"Clip counts above the distinct renders ({distinct(ctx, 'mtat')} MTAT, {distinct(ctx, 'fma')} FMA, "
            f"{distinct(ctx, 'gtzan')} GTZAN) cycle through them as hard links: the work per clip is the same.",
            "FMA and GTZAN clips are generated in their formats (44.1 kHz stereo MP3 at libsndfile's default "
            "bit rate, 22.05 kHz 16-bit WAV); the real FMA files are 128–320 kbit/s, so decoding them may cost more.",
        ],
        plots=[plot],
    )


def hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def plot_scaling(ctx: Context, n: np.ndarray, t: np.ndarray, a: float, b: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(n, t, "o", label="measured")
    grid = np.linspace(0, n.max(), 50)
    ax1.plot(grid, a + b * grid, "-", label=f"fit {a:.1f} s + {b * 1e3:.2f} ms/clip")
    ax1.set_xlabel("clips")
    ax1.set_ylabel("wall s, featurestore.build on 2 warm workers")
    ax1.legend()
    ax2.semilogx(n, t / n * 1e3, "o-", label="raw")
    ax2.semilogx(n, (t - a) / n * 1e3, "s-", label="after the per-build overhead")
    ax2.set_xticks(n, [f"{int(k):,}" for k in n], minor=False)
    ax2.set_xticks([], minor=True)
    ax2.set_xlabel("clips")
    ax2.set_ylabel("ms per clip")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    fig.suptitle("Build scaling, mtat-seed, 2 warm workers")
    return save_figure(fig, ctx.out / "scaling.png")
