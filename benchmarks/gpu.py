"""GPU training path: what the trainers reach on CUDA, and whether the loader keeps up.

One store of MTAT-like clips (mtat-seed log-mel, MFCC and a waveform crop, built by
`featurestore.build`), then for cnn4, cnn3, nnet2 and mixnet on their natural inputs, batch 32: training
samples/s through the real loop (`trainers.loop.Fit.step`, the streaming loader with pinned
memory and non-blocking copies, cuDNN autotuning as `train` sets it) with bf16 autocast on and
off; the share of wall time the loop waited for the loader; the share the GPU spent between the
CUDA events around each step (launch gaps inside a step count as busy, so this is an upper
bound); peak GPU memory; and the loader alone (batches copied to the device, no model). A CPU
row per model is the reference. Finally cnn4 is trained with the same seed on the CPU and on
CUDA (`trainers.loop.train`) and their test metrics compared. Without a CUDA device every CUDA
row says so and only the CPU parts run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt

MODELS = ("cnn4", "cnn3", "nnet2", "mixnet")
BATCH = 32
BUSY_TARGET = 0.90
PARITY_TOLERANCE = 0.05  # absolute, on test accuracy and macro-F1


@dataclass(frozen=True)
class Sizes:
    clips: int
    warmup: int  # steps before timing (cuDNN autotuning, allocator, loader start)
    steps: int  # timed steps per CUDA setting
    cpu_steps: int  # timed steps of the CPU reference
    parity_epochs: int


FULL = Sizes(clips=2048, warmup=10, steps=60, cpu_steps=6, parity_epochs=4)
QUICK = Sizes(clips=32, warmup=1, steps=3, cpu_steps=2, parity_epochs=1)


def loader_workers() -> int:
    """The loader processes a training run gets here: the cores but one for the training loop, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def _batches(fit) -> Iterator[dict[str, Any]]:
    """The training loop's batches, epoch after epoch, without the single-sample tail batch it skips."""
    from trainers.runtime import make_loader

    loader = make_loader(fit.train_set, batch_size=BATCH, workers=fit.config.workers(), device=fit.device)
    epoch = 0
    while True:
        fit.train_set.set_epoch(epoch)
        for batch in loader:
            if len(batch["y"]) >= 2:
                yield batch
        epoch += 1


def measure(fit, sizes: Sizes, steps: int) -> dict[str, float]:
    """Timed training steps of one Fit: samples/s, step ms, data-wait and device-busy shares, peak memory."""
    import torch

    cuda = fit.device.type == "cuda"
    batches = _batches(fit)
    for _ in range(sizes.warmup):
        fit.step(next(batches))
    if cuda:
        torch.cuda.synchronize(fit.device)
        torch.cuda.reset_peak_memory_stats(fit.device)
    wait = compute = 0.0
    events, samples = [], 0
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - t
        samples += len(batch["y"])
        if cuda:
            pair = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            pair[0].record()
            fit.step(batch)
            pair[1].record()
            events.append(pair)
        else:
            t = time.perf_counter()
            fit.step(batch)
            compute += time.perf_counter() - t
    if cuda:
        torch.cuda.synchronize(fit.device)
        compute = sum(a.elapsed_time(b) for a, b in events) / 1000
    wall = time.perf_counter() - start
    return {"samples_per_s": samples / wall, "step_ms": 1000 * wall / steps, "wait": wait / wall,
            "busy": min(compute / wall, 1.0),
            "peak_gib": torch.cuda.max_memory_allocated(fit.device) / 2**30 if cuda else float("nan")}


def loader_alone(fit, steps: int) -> float:
    """Samples/s of the loader feeding the device, no model."""
    import torch

    from trainers.runtime import to_device

    batches, samples = _batches(fit), 0
    next(batches)  # workers started, buffer filled
    start = time.perf_counter()
    for _ in range(steps):
        batch = to_device(next(batches), fit.device)
        samples += len(batch["y"])
    if fit.device.type == "cuda":
        torch.cuda.synchronize(fit.device)
    return samples / (time.perf_counter() - start)


def make_fit(url: str, model: str, device: str, amp: bool, out: Path):
    import numpy as np
    import torch

    from trainers.config import TrainConfig
    from trainers.inputs import InputConfig
    from trainers.loop import Fit
    from trainers.models import model_info
    from trainers.prepare import open_data

    inputs = InputConfig(model_info(model).natural_input)
    config = TrainConfig(store=url, model=model, out=str(out), input=inputs, batch_size=BATCH,
                         num_workers=loader_workers(), device=device, amp=amp, seed=0)
    data = open_data(url, inputs)
    torch.backends.cudnn.benchmark = device == "cuda"  # as `train` sets it
    return Fit(config, data, data.splits["train"], np.array([], dtype=np.int64), out, "val_accuracy",
               torch.device(device), progress=False)


def parity(url: str, epochs: int, device: str, out: Path) -> dict[str, float]:
    """Test metrics of cnn4 trained with seed 0 on `device` (the full training loop)."""
    from trainers.augment import AugmentConfig
    from trainers.config import TrainConfig
    from trainers.inputs import InputConfig
    from trainers.loop import train

    config = TrainConfig(store=url, model="cnn4", out=str(out), input=InputConfig("logmel"),
                         augment=AugmentConfig.off(), epochs=epochs, batch_size=BATCH, scheduler="none",
                         num_workers=loader_workers(), device=device, seed=0)
    test = train(config, progress=False)["test"]
    return {k: float(test[k]) for k in ("accuracy", "macro_f1")}


def run(ctx: Context) -> Section:
    import torch

    from featurestore.builder import build
    from featurestore.presets import preset

    from benchmarks.corpus import corpus, seconds

    sizes = QUICK if ctx.quick else FULL
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    clip_seconds = min(seconds(ctx, "mtat"), preset("mtat-seed").decoding.duration)
    spec = preset("mtat-seed").replace(duration=clip_seconds, crop_samples=min(2**16, int(clip_seconds * 16_000)))
    clips = corpus(ctx, "mtat", sizes.clips)
    url = str(ctx.work / "gpu.zarr")
    ctx.log(f"building a {sizes.clips}-clip mtat-seed store (log-mel, MFCC, waveform); CUDA: {gpu}")
    build(clips.manifest, audio_root=clips.root, out=url, spec=spec, scheduler=ctx.cluster(2).scheduler.address, overwrite=True)

    settings = [("cpu", False, sizes.cpu_steps)] + ([("cuda", True, sizes.steps), ("cuda", False, sizes.steps)]
                                                    if cuda else [])
    loader_on = ("cuda", True) if cuda else ("cpu", False)  # the setting whose loader is also timed alone
    rows, busy, loader_rows = [], {}, []
    for model in MODELS:
        for device, amp, steps in settings:
            ctx.log(f"{model} on {device}{' bf16' if amp else ''}: {steps} timed steps")
            fit = make_fit(url, model, device, amp, ctx.scratch(f"gpu-{model}-{device}-{amp}"))
            m = measure(fit, sizes, steps)
            if device == "cuda" and amp:
                busy[model] = m["busy"]
            if (device, amp) == loader_on:
                loader_rows.append([model, fit.config.input.kind, device, fmt(loader_alone(fit, steps)),
                                    fmt(m["samples_per_s"])])
            rows.append([model, device, "bf16 autocast" if amp else "float32", fmt(m["samples_per_s"]),
                         fmt(m["step_ms"]), f"{m['wait']:.0%}", f"{m['busy']:.0%}",
                         "-" if device == "cpu" else f"{m['peak_gib']:.2f}"])
        if not cuda:
            rows.append([model, "cuda", "skipped: no CUDA device", "-", "-", "-", "-", "-"])

    ctx.log(f"parity: cnn4, seed 0, {sizes.parity_epochs} epoch(s) on the CPU{' and on CUDA' if cuda else ''}")
    results = {d: parity(url, sizes.parity_epochs, d, ctx.scratch(f"gpu-parity-{d}") / "run")
               for d in ("cpu", *(("cuda",) if cuda else ()))}
    parity_rows = [[d, f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}"] for d, r in results.items()]
    targets = [Target(f"{m}: GPU busy (step-event time / wall), bf16, {loader_workers()} loader workers",
                      f"≥ {BUSY_TARGET:.0%}", f"{b:.0%}", b >= BUSY_TARGET) for m, b in busy.items()]
    if cuda:
        gap = max(abs(results["cpu"][k] - results["cuda"][k]) for k in ("accuracy", "macro_f1"))
        parity_rows.append(["|difference|", "", f"largest {gap:.3f}"])
        targets.append(Target("cnn4 CPU against CUDA, same seed: test accuracy and macro-F1",
                              f"within {PARITY_TOLERANCE}", f"{gap:.3f}", gap <= PARITY_TOLERANCE))
    else:
        parity_rows.append(["cuda", "skipped: no CUDA device", "-"])

    return Section(
        name="gpu",
        title="GPU training",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[
            Table(f"Training samples/s, batch {BATCH}, {loader_workers()} loader workers, {sizes.clips} clips of "
                  f"{clip_seconds:g} s; {sizes.warmup} warm-up steps, then {sizes.steps} timed steps on CUDA and "
                  f"{sizes.cpu_steps} on the CPU; GPU: {gpu}, {os.cpu_count()} CPU cores",
                  ["model", "device", "precision", "samples/s", "ms per step", "waiting for data",
                   "device busy", "peak GPU memory GiB"], rows),
            Table("Loader alone: samples/s delivered to the device, no model, against training on that device "
                  "(CUDA bf16 when there is a GPU)",
                  ["model", "input", "device", "loader samples/s", "training samples/s"], loader_rows),
            Table(f"cnn4 trained on the CPU and on CUDA: seed 0, {sizes.parity_epochs} epoch(s), no augmentation, "
                  "test split", ["device", "accuracy", "macro-F1"], parity_rows),
        ],
        targets=targets,
        notes=[
            "CUDA runs: bf16 autocast (the default) and float32, pinned-memory batches copied with non_blocking, "
            "cudnn.benchmark on; the CPU runs float32 with torch's default threads.",
            "Device busy on CUDA is the time between CUDA events recorded around each step over the wall time; "
            "on the CPU it is the time spent in the step. Waiting for data is the time `next(loader)` blocked.",
            f"Parity tolerance {PARITY_TOLERANCE} absolute: bf16 autocast and cuDNN's kernel choice change "
            "rounding, so the runs are close, not identical.",
            "No baseline alternates in this section: the loader-alone rows are the reference for the training rows.",
        ],
    )
