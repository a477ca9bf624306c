"""GPU training path: every recipe in the configuration `featurestore train` runs, on CUDA and the CPU.

One store per preset the recipes read (mtat-seed, gtzan, fma, handcrafted: built by
`featurestore.build` from MTAT-, GTZAN- and FMA-like audio), then each recipe trained by the real
loop (`trainers.loop.Fit.run`) with its own options and the `train` defaults: its batch size,
crops and evaluation views, loader workers (`--num-workers 4`, at most the cores), the persistent
validation pool, cuDNN autotuning, `--precision auto` (bf16 autocast where the GPU has it).
fma-mixnet trains its encoders from scratch (the recipe starts from two trained runs). The
first epoch warms up (worker start, cuDNN autotuning, allocator); the epochs after it are
measured: training samples/s, the epoch's wall time with validation, the share of the training
pass spent waiting for the loader, the share the device was busy (CUDA events around each step;
launch gaps inside a step count as busy, so an upper bound), peak GPU memory, and the bytes each
sample carried from the loader. Then the loader alone (batches copied to the device, no model),
`--channels-last` and `--compile` on cnn4 and cnn3, and mtat-cnn trained with one seed on the CPU
and on CUDA, their test metrics compared. Without a CUDA device every CUDA row says so and only
the CPU parts run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt

# recipe -> (preset it reads, corpus flavour of the audio)
STORES = {"mtat-seed": "mtat", "gtzan": "gtzan", "fma": "fma", "handcrafted": "gtzan"}
BUSY_TARGET = 0.90
BUSY_RECIPES = ("mtat-cnn", "gtzan-cnn3")  # cnn4 and cnn3: the loader must keep the GPU busy
OPTION_RECIPES = ("mtat-cnn", "gtzan-cnn3")
PARITY_RECIPE = "mtat-cnn"
PARITY_TOLERANCE = 0.05  # absolute, on test accuracy and macro-F1


@dataclass(frozen=True)
class Sizes:
    clips: int  # per store
    handcrafted_clips: int  # descriptors cost far more to build
    epochs: int  # per run, the first a warm-up
    cpu_epochs: int
    parity_epochs: int


FULL = Sizes(clips=512, handcrafted_clips=128, epochs=4, cpu_epochs=2, parity_epochs=4)
QUICK = Sizes(clips=24, handcrafted_clips=24, epochs=2, cpu_epochs=2, parity_epochs=1)


def _timed_fit_class():
    """`Fit` with each training step timed and its batch measured (imported lazily: torch)."""
    import torch

    from trainers.loop import Fit

    class TimedFit(Fit):
        epochs: list[dict[str, float]]

        def _train_epoch(self, epoch, loader):
            cuda = self.device.type == "cuda"
            self.events, self.step_seconds, self.bytes, self.samples = [], 0.0, 0, 0
            if cuda:
                torch.cuda.synchronize(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
            times = super()._train_epoch(epoch, loader)
            if cuda:
                torch.cuda.synchronize(self.device)
                self.step_seconds = sum(a.elapsed_time(b) for a, b in self.events) / 1000
            self.epochs = getattr(self, "epochs", []) + [{
                "busy": min(self.step_seconds / times.seconds, 1.0), "bytes": self.bytes / max(self.samples, 1),
                "peak_gib": torch.cuda.max_memory_allocated(self.device) / 2**30 if cuda else float("nan"),
                "ended": time.perf_counter()}]
            return times

        def step(self, batch):
            self.bytes += sum(t.nbytes for t in batch.values())
            self.samples += len(batch["y"])
            if self.device.type != "cuda":
                start = time.perf_counter()
                loss = super().step(batch)
                self.step_seconds += time.perf_counter() - start
                return loss
            pair = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            pair[0].record()
            loss = super().step(batch)
            pair[1].record()
            self.events.append(pair)
            return loss

    return TimedFit


def recipe_config(name: str, url: str, out: Path, device: str, epochs: int, spec, keep_split: bool = False,
                  **flags: Any):
    """The recipe's `train` configuration on this store, crops clamped to its clips (quick runs
    hold 3-s clips), mixnet's encoders trained from scratch. `keep_split` keeps the manifest's
    split: a 70/30 re-split of the few groups of a quick run (or of the 32 renders behind the
    handcrafted store) leaves no validation clip."""
    from trainers.options import resolve, to_config
    from trainers.recipes import recipe

    options = resolve(recipe=name, flags={"epochs": epochs, "device": device, **flags})
    if recipe(name).options.get("freeze_encoders"):
        options["freeze_encoders"] = False
    if keep_split:
        options["split"] = None
    lengths = {f.layout: f.clip_shape()[-1] for f in map(spec.feature, spec.names)}
    for key, layout in (("crop_frames", "spectrogram"), ("crop_samples", "waveform")):
        if options[key] is not None and layout in lengths:
            options[key] = min(options[key], lengths[layout])
    return to_config(url, str(out), options)


def train_recipe(name: str, url: str, out: Path, device: str, epochs: int, quick: bool,
                 **flags: Any) -> dict[str, Any]:
    """One recipe through the real loop; the measured epochs (all but the first) averaged."""
    import numpy as np
    import torch

    from trainers.prepare import open_data, run_splits
    from trainers.runtime import make_loader, to_device

    config = recipe_config(name, url, out, device, epochs, _spec(url), quick, **flags)
    data = run_splits(open_data(url, config.input), config)
    if not len(data.splits["valid"]):  # a re-split of this few groups left none for validation
        config = recipe_config(name, url, out, device, epochs, _spec(url), True, **flags)
        data = run_splits(open_data(url, config.input), config)
    torch.backends.cudnn.benchmark = device == "cuda"  # as `train` sets it
    out.mkdir(parents=True, exist_ok=True)
    fit = _timed_fit_class()(config, data, data.splits["train"], data.splits["valid"], out,
                             "val_accuracy", torch.device(device), progress=False)
    started = time.perf_counter()
    fit.run()
    ends = [started] + [e["ended"] for e in fit.epochs]
    walls = np.diff(ends)[1:]  # each measured epoch's wall time, validation and checkpoints included
    rows = fit.history[1:]
    measured = fit.epochs[1:]
    mean = lambda values: float(np.mean(values))  # noqa: E731
    loader = make_loader(fit.train_set, batch_size=config.batch_size, workers=config.workers(), device=fit.device)
    fit.train_set.set_epoch(1)
    batches = iter(loader)
    samples = len(to_device(next(batches), fit.device)["y"])  # workers started
    start = time.perf_counter()
    for batch in batches:
        samples += len(to_device(batch, fit.device)["y"])
    if device == "cuda":
        torch.cuda.synchronize()
    return {"config": config, "fit": fit, "samples_per_s": mean([r["samples_per_s"] for r in rows]),
            "epoch_s": mean(walls), "wait": mean([r["data_wait"] for r in rows]),
            "busy": mean([e["busy"] for e in measured]), "peak_gib": max(e["peak_gib"] for e in measured),
            "bytes": mean([e["bytes"] for e in measured]),
            "loader_per_s": samples / (time.perf_counter() - start)}


def _spec(url: str):
    from featurestore.store import open_store

    return open_store(url).spec


def build_stores(ctx: Context, sizes: Sizes) -> dict[str, str]:
    """preset -> store url, each built from its flavour's audio (3-s clips in a quick run)."""
    from featurestore.builder import build
    from featurestore.presets import preset

    from benchmarks.corpus import corpus, seconds

    urls = {}
    for name, flavour in STORES.items():
        spec = preset(name)
        duration = min(seconds(ctx, flavour), spec.decoding.duration)
        n_samples = int(duration * spec.decoding.sample_rate)
        crops = {"crop_samples": min(f.settings.crop_samples, n_samples) for f in map(spec.feature, spec.names)
                 if f.layout == "waveform"}
        spec = spec.replace(duration=duration, **crops)
        n = sizes.handcrafted_clips if name == "handcrafted" else sizes.clips
        clips = corpus(ctx, flavour, n)
        urls[name] = str(ctx.work / f"gpu-{name}.zarr")
        ctx.log(f"building a {n}-clip {name} store from {flavour}-like audio ({duration:g}-s clips)")
        build(clips.manifest, audio_root=clips.root, out=urls[name], spec=spec, scheduler=ctx.cluster(2).scheduler.address,
              overwrite=True)
    return urls


def parity(url: str, epochs: int, device: str, out: Path) -> dict[str, float]:
    """Test metrics of the parity recipe trained with seed 0 on `device` (the full `train`)."""
    from trainers.loop import train

    config = recipe_config(PARITY_RECIPE, url, out, device, epochs, _spec(url))
    test = train(config, progress=False)["test"]
    return {k: float(test[k]) for k in ("accuracy", "macro_f1")}


def run(ctx: Context) -> Section:
    import torch

    from trainers.recipes import RECIPES

    sizes = QUICK if ctx.quick else FULL
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    urls = build_stores(ctx, sizes)
    devices = [("cpu", sizes.cpu_epochs)] + ([("cuda", sizes.epochs)] if cuda else [])
    skipped = "skipped: no CUDA device"
    rows, loader_rows, busy = [], [], {}
    for name, recipe in RECIPES.items():
        for device, epochs in devices:
            ctx.log(f"{name} on {device}: {epochs} epochs, the first a warm-up")
            m = train_recipe(name, urls[recipe.preset], ctx.scratch(f"gpu-{name}-{device}"), device, epochs, ctx.quick)
            c, fast = m["config"], m["fit"].fast
            if device == "cuda":
                busy[name] = m["busy"]
            if device == devices[-1][0]:
                loader_rows.append([name, c.input.kind, device, str(c.workers()), fmt(m["loader_per_s"]),
                                    fmt(m["samples_per_s"])])
            rows.append([name, c.model, device, fast.precision, str(c.workers()), str(c.batch_size),
                         fmt(m["samples_per_s"]), f"{m['epoch_s']:.2f}", f"{m['wait']:.0%}", f"{m['busy']:.0%}",
                         "-" if device == "cpu" else f"{m['peak_gib']:.2f}", f"{m['bytes']:,.0f}"])
        if not cuda:
            rows.append([name, recipe.options["model"], "cuda", skipped, *["-"] * 8])

    option_rows = []
    for name in OPTION_RECIPES:
        for flag, flags in (("--channels-last", {"channels_last": True}), ("--compile", {"compile": True})):
            if not cuda:
                option_rows.append([name, flag, skipped, "-", "-", "-"])
                continue
            ctx.log(f"{name} on cuda with {flag}")
            m = train_recipe(name, urls[RECIPES[name].preset], ctx.scratch(f"gpu-{name}-{flag}"), "cuda",
                             sizes.epochs, ctx.quick, **flags)
            note = m["fit"].fast.compile_note
            option_rows.append([name, flag, note or "ok", fmt(m["samples_per_s"]), f"{m['wait']:.0%}",
                                f"{m['busy']:.0%}"])

    ctx.log(f"parity: {PARITY_RECIPE}, seed 0, {sizes.parity_epochs} epoch(s) on the CPU{' and on CUDA' if cuda else ''}")
    url = urls[RECIPES[PARITY_RECIPE].preset]
    results = {d: parity(url, sizes.parity_epochs, d, ctx.scratch(f"gpu-parity-{d}") / "run")
               for d in ("cpu", *(("cuda",) if cuda else ()))}
    parity_rows = [[d, f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}"] for d, r in results.items()]
    targets = [Target(f"{n}: GPU busy (step-event time / training wall time), default workers",
                      f"≥ {BUSY_TARGET:.0%}", f"{busy[n]:.0%}", busy[n] >= BUSY_TARGET) for n in BUSY_RECIPES if n in busy]
    if cuda:
        gap = max(abs(results["cpu"][k] - results["cuda"][k]) for k in ("accuracy", "macro_f1"))
        parity_rows.append(["|difference|", "", f"largest {gap:.3f}"])
        targets.append(Target(f"{PARITY_RECIPE} CPU against CUDA, same seed: test accuracy and macro-F1",
                              f"within {PARITY_TOLERANCE}", f"{gap:.3f}", gap <= PARITY_TOLERANCE))
    else:
        parity_rows.append(["cuda", skipped, "-"])

    clips = f"{sizes.clips} clips per store ({sizes.handcrafted_clips} handcrafted)"
    return Section(
        name="gpu",
        title="GPU training",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[
            Table(f"Training samples/s per recipe, its `train` configuration; {clips}; {sizes.epochs} epochs on CUDA "
                  f"and {sizes.cpu_epochs} on the CPU, all but the first measured; GPU: {gpu}, {os.cpu_count()} CPU "
                  "cores", ["recipe", "model", "device", "precision", "loader workers", "batch", "samples/s",
                            "epoch s (with validation)", "waiting for data", "device busy", "peak GPU memory GiB",
                            "bytes copied per sample"], rows),
            Table("Loader alone: samples/s delivered to the device, no model, against training on that device "
                  "(CUDA when there is a GPU)",
                  ["recipe", "input", "device", "loader workers", "loader samples/s", "training samples/s"],
                  loader_rows),
            Table("Options on CUDA: the recipe with one flag added", ["recipe", "flag", "outcome", "samples/s",
                                                                     "waiting for data", "device busy"], option_rows),
            Table(f"{PARITY_RECIPE} trained on the CPU and on CUDA: seed 0, {sizes.parity_epochs} epoch(s), test split",
                  ["device", "accuracy", "macro-F1"], parity_rows),
        ],
        targets=targets,
        notes=[
            "CUDA runs: `--precision auto` (bf16 autocast where the GPU supports it, else fp16 with a gradient "
            "scaler), pinned-memory batches copied non_blocking, cudnn.benchmark on for training; the CPU runs "
            "float32 with torch's default threads.",
            "The loader workers cut each sample's windows before the copy (`trainers.windows`): bytes per sample "
            "are the windows the model reads plus targets and positions, not whole clips.",
            "Device busy on CUDA is the time between CUDA events recorded around each step over the training "
            "pass's wall time; on the CPU it is the time spent in the step. Waiting for data is the time "
            "`next(loader)` blocked (history.csv's data_wait).",
            f"Parity tolerance {PARITY_TOLERANCE} absolute: bf16 autocast and cuDNN's kernel choice change "
            "rounding, so the runs are close, not identical.",
            "No baseline alternates in this section: the loader-alone rows are the reference for the training rows.",
            "The GTZAN descriptor recipes re-split 70/30 by group; where that leaves no validation clip (the few "
            "groups of these generated stores), they keep the manifest's split.",
        ],
    )
