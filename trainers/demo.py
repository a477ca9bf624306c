"""`featurestore demo`: the whole pipeline on a built-in synthetic corpus, narrated stage by stage.

It lives at the top of the dependency chain (trainers -> featurestore -> manifests) because it
drives all three, and it calls the same Python functions as the stage commands, so what it
shows is exactly what a user gets from running them by hand.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

HELP_ORDER = 40  # last: the whole pipeline


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("demo")
    clips_per_style: int = 30
    seconds: float = 10.0
    epochs: int = 12
    batch_size: int = 16  # a small corpus needs more, smaller steps than the MTAT default of 32
    crop_frames: int = 64  # train on random ~4-s windows, evaluate on the average of 3 (GTZAN report)
    workers: int | None = None  # None: one per core
    multilabel: bool = False
    seed: int = 0


def add_parser(subparsers) -> None:
    d = DemoConfig()
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on a built-in synthetic corpus",
        description="Generate a labelled corpus of synthetic music (8 styles, real WAV/FLAC/OGG/MP3 files, a few "
                    "broken ones), build its manifest and feature store, train cnn4, evaluate it on the test "
                    "split and write a report with figures. Re-running into the same --out reuses what is built.",
    )
    p.add_argument("--out", type=Path, default=d.out, help=f"working folder (default ./{d.out})")
    p.add_argument("--clips-per-style", type=int, default=d.clips_per_style,
                   help=f"clips per style (default {d.clips_per_style})")
    p.add_argument("--seconds", type=float, default=d.seconds, help=f"clip length (default {d.seconds:g} s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"training batch size (default {d.batch_size})")
    p.add_argument("--workers", type=int, help="Dask worker processes (default: one per core)")
    p.add_argument("--multilabel", action="store_true", help="clips mix two styles: a multi-label tagging task")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from featurestore.environment import require

    require()  # before the corpus is generated: a broken install is one line
    config = DemoConfig(out=args.out, clips_per_style=args.clips_per_style, seconds=args.seconds,
                        epochs=args.epochs, batch_size=args.batch_size, workers=args.workers, multilabel=args.multilabel, seed=args.seed)
    run_demo(config)
    return 0


def run_demo(config: DemoConfig) -> dict:
    """Run every stage into `config.out`; returns the test metrics."""
    from featurestore.errors import UserError

    if config.clips_per_style < 4:
        raise UserError("--clips-per-style must be at least 4 so every split gets clips of every style")
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = config.workers or len(os.sched_getaffinity(0))

    corpus = _corpus(config, out, workers)
    manifest_path, audio_root = _manifest(config, out, corpus)
    build = _store(config, out, manifest_path, audio_root, workers, len(corpus.clips))
    metrics, run = _train(config, out)
    _summary(config, out, corpus, build, metrics, run, time.perf_counter() - started)
    return metrics


def _stage(n: int, text: str) -> None:
    print(f"\n[{n}/4] {text}", flush=True)


def _corpus(config: DemoConfig, out: Path, workers: int):
    from tqdm import tqdm

    from featurestore.synth import STYLES, CorpusConfig, generate_corpus

    kind = "multi-label (two styles mixed per clip)" if config.multilabel else "single-label"
    _stage(1, f"generating a {kind} corpus: {len(STYLES)} styles x {config.clips_per_style} clips of "
              f"{config.seconds:g} s, WAV/FLAC/OGG/MP3 at 16-44.1 kHz, plus deliberately broken files")
    with tqdm(unit="file", leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = generate_corpus(
            CorpusConfig(root=out / "corpus", clips_per_style=config.clips_per_style, seconds=config.seconds,
                         seed=config.seed, multilabel=config.multilabel),
            progress, workers=workers)
    what = f"wrote {report.written} files" if report.written else "reused the corpus already there"
    print(f"{what}: {len(report.clips)} clips, {len(report.broken)} broken on purpose, "
          f"in {report.root} ({report.elapsed:.1f} s)")
    return report


def _manifest(config: DemoConfig, out: Path, corpus) -> tuple[Path, Path]:
    import manifests
    from manifests.adapters.csv import csv
    from manifests.adapters.folder import folder
    from manifests.report import summary

    _stage(2, "label manifest: one row per clip, stratified 70/15/15 train/valid/test split")
    if config.multilabel:
        manifest, audio_root = csv(corpus.labels_csv, split=(0.7, 0.15, 0.15), seed=config.seed), corpus.root
    else:
        manifest, audio_root = folder(corpus.folders, split=(0.7, 0.15, 0.15), seed=config.seed), corpus.folders
    path = out / "manifest.parquet"
    if path.is_file() and manifests.load(path).content_hash() == manifest.content_hash():
        print(f"reused {path} (same clips, labels and split)")
    else:
        manifests.save(manifest, path)
        print(summary(manifest, str(path)))
    return path, audio_root


def _store(config: DemoConfig, out: Path, manifest_path: Path, audio_root: Path, workers: int, good: int):
    from featurestore.builder import build
    from featurestore.errors import UserError
    from featurestore.presets import preset

    base = preset("mtat-seed")
    crop = base.feature("waveform").settings.crop_samples
    spec = base.replace(duration=config.seconds, crop_samples=min(crop, int(config.seconds * base.decoding.sample_rate)))
    logmel, mfcc = (spec.feature(name).clip_shape() for name in ("logmel", "mfcc"))
    _stage(3, f"feature store: float16 log-mel {logmel[0]}x{logmel[1]}, MFCC {mfcc[0]}x{mfcc[1]} "
              f"and a waveform crop per clip (preset mtat-seed, {config.seconds:g} s), {workers} Dask workers")
    report = build(manifest_path, audio_root=audio_root, out=out / "store.zarr", spec=spec, workers=workers,
                   progress=True)
    print(report.summary())
    if report.ok < good:  # only the files broken on purpose may fail: anything else is worth stopping for
        raise UserError(f"the build stored {report.ok} of the corpus's {good} good clips ({report.failed} failed, "
                        f"{report.pending} pending; the summary above names the first): fix the cause and re-run "
                        f"`featurestore demo --out {out}`, which resumes the build")
    return report


def _train(config: DemoConfig, out: Path) -> tuple[dict, Path]:
    import json

    from featurestore.store import open_store
    from trainers.config import TrainConfig
    from trainers.inputs import InputConfig
    from trainers.loop import train

    run = out / "run-cnn4"
    frames = open_store(out / "store.zarr").spec.feature("logmel").clip_shape()[-1]
    crop = config.crop_frames if frames > config.crop_frames else None
    windows = f"random {crop}-frame windows" if crop else "whole clips"
    _stage(4, f"training cnn4 on log-mel {windows} for {config.epochs} epochs, then testing the best checkpoint")
    metrics_path = run / "metrics.json"
    if metrics_path.is_file():
        print(f"reused the finished run in {run}")
        return json.loads(metrics_path.read_text()), run
    inputs = InputConfig(kind="logmel", crop_frames=crop, eval_crops=3 if crop else 1)
    train(TrainConfig(store=str(out / "store.zarr"), model="cnn4", out=str(run), input=inputs, epochs=config.epochs,
                      batch_size=config.batch_size, num_workers=0, seed=config.seed, resume=(run / "last.pt").is_file()))
    return json.loads(metrics_path.read_text()), run


def _summary(config: DemoConfig, out: Path, corpus, build, metrics: dict, run: Path, elapsed: float) -> None:
    from featurestore.store import open_store

    store = open_store(out / "store.zarr")
    stored = sum(f.stat().st_size for f in (out / "store.zarr").rglob("*") if f.is_file())
    headline = ("roc_auc_macro", "pr_auc_macro") if config.multilabel else ("accuracy", "macro_f1")
    figures = sorted(p.name for p in run.glob("*.png"))
    print(f"\nsummary ({elapsed:.0f} s)")
    print(f"  clips       {build.ok} ok, {build.failed} failed of {store.n_clips}")
    for reason in build.first_reasons:
        print(f"              failed: {reason}")
    print(f"  store       {out / 'store.zarr'}: {stored / 1e6:.1f} MB, {stored / store.n_clips / 1e3:.1f} kB per clip")
    print("  test        " + ", ".join(f"{k} {metrics[k]:.3f}" for k in headline if metrics.get(k) is not None))
    print(f"  report      {run / 'report.md'}")
    print(f"  figures     {', '.join(figures)}")
    root = out / ("corpus" if config.multilabel else "corpus/genres")
    manifest = (f"csv --file {corpus.labels_csv} --root {root}" if config.multilabel else f"folder --root {root}")
    print(f"""
by hand, on your own data (see README.md for MTAT, GTZAN and FMA):
  featurestore manifest {manifest} --out {out / 'manifest.parquet'}
  featurestore build {out / 'manifest.parquet'} --audio-root {root} --out {out / 'store.zarr'} --preset mtat-seed --duration {config.seconds:g}
  featurestore info {out / 'store.zarr'}
  featurestore train {out / 'store.zarr'} --model cnn4 --out {run} --epochs {config.epochs} --batch-size {config.batch_size} --crop-frames {config.crop_frames} --eval-crops 3
  featurestore evaluate {run} --split test
  featurestore predict {run} {root} --csv {out / 'predictions.csv'}""")
