"""Cold builds as a user runs them: wall clock from the command to its exit, `featurestore build`
against the script a user writes instead (`benchmarks.pool_build`: a `multiprocessing.Pool(2)`
of single-threaded processes mapping librosa over the clips, one `.npy` per clip and feature).

Every contender is a fresh process with 2 worker processes of one thread each, on files whose
pages are cached (the disk is not what is measured), alternating A B, B A round by round. Each
tool's fixed cost and cost per added clip come from a least-squares line through its median
times; speed-ups are medians of per-round ratios. MTAT-like clips (16 kHz mono MP3, 29.1 s,
preset mtat-seed) at 256, 1,024 and 4,096 clips, and GTZAN-like ones (22,050 Hz WAV, 30 s,
preset gtzan) at 128 and 1,000.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np

from benchmarks.context import Context
from benchmarks.corpus import corpus
from benchmarks.results import Section, Table, Target, fmt
from benchmarks.timing import Runs, paired_speedup

FIXED_COST = 2.5  # s
SPEEDUP = {256: 1.0, 1024: 1.5, 4096: 2.0}  # against the fastest peer, MTAT-like
SPEEDUP_GTZAN = (1000, 1.3)
PER_CLIP = 0.55  # of the Pool's cost per added clip
CASES = {"mtat": ("mtat-seed", (256, 1024, 4096)), "gtzan": ("gtzan", (128, 1000))}
QUICK_CASES = {"mtat": ("mtat-seed", (8, 24)), "gtzan": ("gtzan", (4, 12))}
ROUNDS, QUICK_ROUNDS = 3, 1
OURS, POOL = "featurestore build", "Pool(2) + librosa"


def _commands(preset: str, manifest: str, audio: str, out: str) -> dict[str, list[str]]:
    python = sys.executable
    return {OURS: [python, "-m", "featurestore", "build", manifest, "--audio-root", audio, "--out", out,
                   "--preset", preset, "--workers", "2", "--quiet"],
            POOL: [python, "-m", "benchmarks.pool_build", manifest, audio, out, "--preset", preset, "--processes", "2"]}


def _wall(command: list[str], out: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[2]} failed: {done.stderr[-2000:]}")
    return seconds


def _fit(sizes: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed cost s, cost per added clip s) of the least-squares line."""
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(seconds, float), 1)
    return float(intercept), float(slope)


def run(ctx: Context) -> Section:
    cases = QUICK_CASES if ctx.quick else CASES
    rounds = QUICK_ROUNDS if ctx.quick else ROUNDS
    env_note = os.environ.get("NUMBA_CACHE_DIR", "")
    walls: dict[tuple[str, int], dict[str, Runs]] = {}
    for flavour, (preset, sizes) in cases.items():
        for n in sizes:
            clips = corpus(ctx, flavour, n)
            out = str(ctx.scratch(f"cold-{flavour}-{n}"))
            commands = _commands(preset, str(clips.manifest), str(clips.root), out + "/result")
            runs = walls[(flavour, n)] = {name: Runs() for name in commands}
            for r in range(rounds):
                order = list(commands) if r % 2 == 0 else list(reversed(commands))
                for name in order:
                    runs[name].seconds.append(_wall(commands[name], out + "/result"))
                    ctx.log(f"  {flavour} {n} clips, round {r + 1}/{rounds}, {name}: {runs[name].seconds[-1]:.2f} s")
            shutil.rmtree(out, ignore_errors=True)

    rows, fits, targets = [], {}, []
    for flavour, (preset, sizes) in cases.items():
        for name in (OURS, POOL):
            fits[(flavour, name)] = _fit(list(sizes), [walls[(flavour, n)][name].median for n in sizes])
        for n in sizes:
            runs = walls[(flavour, n)]
            ratio = paired_speedup(runs, OURS, POOL)
            rows.append([flavour, f"{n:,}", fmt(runs[OURS].median), fmt(runs[POOL].median), f"{ratio:.2f}x"])
            goal = SPEEDUP.get(n) if flavour == "mtat" else (SPEEDUP_GTZAN[1] if n == SPEEDUP_GTZAN[0] else None)
            if goal is not None and not ctx.quick:
                targets.append(Target(f"cold build, {n:,} {flavour}-like clips, against the fastest peer measured "
                                      f"({POOL})", f">= {goal}x", f"{ratio:.2f}x", ratio >= goal))
    fit_rows = [[flavour, name, fmt(fits[(flavour, name)][0]), fmt(1e3 * fits[(flavour, name)][1])]
                for flavour in cases for name in (OURS, POOL)]
    if not ctx.quick:
        fixed, per_clip = fits[("mtat", OURS)]
        pool_per_clip = fits[("mtat", POOL)][1]
        targets += [Target("fixed cost of a cold `featurestore build` (intercept, MTAT-like)", f"<= {FIXED_COST} s",
                           f"{fixed:.2f} s", fixed <= FIXED_COST),
                    Target("cost per added clip against the Pool's (MTAT-like)", f"<= {PER_CLIP}x",
                           f"{per_clip / pool_per_clip:.2f}x", per_clip <= PER_CLIP * pool_per_clip)]
    return Section(
        name="cold", title="Cold builds from the command line",
        summary=(f"Wall clock from the command to its exit, median of {rounds} alternating round(s): "
                 f"`featurestore build --workers 2` against a `multiprocessing.Pool(2)` librosa script "
                 "(`benchmarks/pool_build.py`), both 2 single-threaded processes on page-cached files, numba's "
                 f"cache warm{' (NUMBA_CACHE_DIR ' + env_note + ')' if env_note else ''}. HF `datasets` and "
                 "lhotse are not measured yet."),
        tables=[Table("cold builds", ["clips", "n", f"{OURS} s", f"{POOL} s", "speed-up"], rows),
                Table("fixed cost and cost per added clip (least squares over the sizes)",
                      ["clips", "tool", "fixed cost s", "ms per added clip"], fit_rows)],
        targets=targets,
    )
