"""Loader throughput: the trainers' streaming loader against a DataLoader over one `.npy` per clip.

Same clips (mtat-seed log-mel, 80 × 313 float16, from a store built by `featurestore.build`, written
out once more as one `.npy` per clip: the source report's layout), same DataLoader settings
(batch 32, 2 worker processes, a fresh loader per epoch as the training loop makes), one run,
alternating epochs of each:
- the project: `trainers.StreamingStoreDataset` with the block and shuffle-buffer sizes the
  training loop derives from the store (`trainers.datasets.block_size` / `buffer_size`), through
  `trainers.runtime.make_loader`;
- the baseline: `torch.utils.data.DataLoader(shuffle=True)` over `benchmarks.baselines.NpyClips`.
Both on local disk (warm page cache), then both through an S3-compatible server on 127.0.0.1
(moto), where the per-file layout pays one GET per clip and the store a few range requests
per block of clips. Samples/s counts samples delivered to the training process. Two more
rows time the reads alone in one process (a Zarr call per block; `np.load` per file): how much
of each loader's time is storage, and how much the DataLoader machinery around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import psutil

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt
from benchmarks.timing import Contender, alternate

TARGET_SAMPLES_PER_S = 5_000
BATCH = 32
WORKERS = 2


@dataclass(frozen=True)
class Sizes:
    clips: int
    rounds: int
    epochs: int  # per timed run
    s3_clips: int
    s3_rounds: int


FULL = Sizes(clips=4096, rounds=3, epochs=2, s3_clips=1024, s3_rounds=2)
QUICK = Sizes(clips=32, rounds=1, epochs=1, s3_clips=16, s3_rounds=1)


def new_children(existing: set[int]):
    """PIDs of this process's children that were not there before: the DataLoader workers (not Dask's)."""
    return lambda: [p.pid for p in psutil.Process().children(recursive=True) if p.pid not in existing]


def contenders(url: str, npy_paths: list[str], indices: np.ndarray, epochs: int) -> tuple[list[Contender], int, int]:
    """An epoch-loop of each side over the store positions `indices` and the matching .npy files;
    also the block and shuffle-buffer sizes (clips) the training loop chose for this store."""
    import torch
    from torch.utils.data import DataLoader

    from trainers.datasets import StreamingStoreDataset, block_size, buffer_size
    from trainers.inputs import InputConfig
    from trainers.prepare import open_data
    from trainers.runtime import make_loader

    from benchmarks.baselines import NpyClips

    inputs = InputConfig("logmel")
    data = open_data(url, inputs)
    block = block_size(data.chunk_clips, data.shard_clips)
    buffer = buffer_size(data.spec, inputs, block)
    stream = StreamingStoreDataset.over(data.source(indices, inputs), block_clips=block, buffer_clips=buffer, seed=0)
    npy = NpyClips(npy_paths, data.targets[indices])
    expected = epochs * len(indices)
    loader_workers = new_children({p.pid for p in psutil.Process().children(recursive=True)})

    def project():
        n = 0
        loader = make_loader(stream, batch_size=BATCH, workers=WORKERS, device=torch.device("cpu"))
        for epoch in range(epochs):
            stream.set_epoch(epoch)
            for batch in loader:
                n += len(batch["y"])
        if n != expected:
            raise RuntimeError(f"streaming loader delivered {n} samples, expected {expected}")

    def baseline():
        n = 0
        loader = DataLoader(npy, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=WORKERS > 0)
        for _ in range(epochs):
            for batch in loader:
                n += len(batch["y"])
        if n != expected:
            raise RuntimeError(f"npy loader delivered {n} samples, expected {expected}")

    return [
        Contender("trainers StreamingStoreDataset", project, loader_workers),
        Contender(".npy per clip DataLoader", baseline, loader_workers),
    ], block, buffer


def read_only(url: str, npy_paths: list[str], block: int) -> list[Contender]:
    """The reads alone, in this process, no DataLoader: what each layout's storage costs per sample."""
    from featurestore.store import open_store

    logmel = open_store(url).array("logmel")
    me = lambda: [psutil.Process().pid]  # noqa: E731

    def zarr_blocks():
        for start in range(0, len(npy_paths), block):
            logmel[start : start + block]

    def npy_files():
        for path in npy_paths:
            np.load(path)

    return [
        Contender(f"Zarr reads alone, {block} clips per call", zarr_blocks, me),
        Contender(".npy reads alone, np.load per clip", npy_files, me),
    ]


def write_npy(store, folder) -> list[str]:
    """The store's log-mel as one `.npy` per clip (float16, 80 × 313), read a shard per Zarr call."""
    logmel, paths = store.array("logmel"), []
    for start in range(0, store.n_clips, store.shard_clips):
        for k, clip in enumerate(logmel[start : start + store.shard_clips]):
            paths.append(str(folder / f"{start + k:06d}.npy"))
            np.save(paths[-1], clip)
    return paths


def run(ctx: Context) -> Section:
    from featurestore.builder import build
    from featurestore.presets import preset
    from featurestore.store import open_store

    from benchmarks.corpus import corpus
    from benchmarks.s3 import moto_s3

    sizes = QUICK if ctx.quick else FULL
    spec = preset("mtat-seed").select(["logmel"])
    clips = corpus(ctx, "mtat", sizes.clips)
    url = str(ctx.work / "loader.zarr")
    ctx.log(f"building a {sizes.clips}-clip mtat-seed log-mel store")
    build(clips.manifest, audio_root=clips.root, out=url, spec=spec, scheduler=ctx.cluster(2).scheduler.address, overwrite=True)
    store = open_store(url)
    if (store.status != 1).any():
        raise RuntimeError(f"{url}: {int((store.status != 1).sum())} clips not ok; the loader benchmark needs all")
    indices = np.arange(store.n_clips)
    npy_paths = write_npy(store, ctx.scratch("loader-npy"))

    results = {}
    ctx.log(f"local disk: {sizes.rounds} rounds of {sizes.epochs} epoch(s) × {len(indices)} clips, alternating")
    local, block, buffer = contenders(url, npy_paths, indices, sizes.epochs)
    results["local disk"] = (local, alternate(local, sizes.rounds, ctx.log), len(indices) * sizes.epochs)
    raw = read_only(url, npy_paths, block)
    results["local disk, 1 process, no DataLoader"] = (raw, alternate(raw, sizes.rounds, ctx.log), len(indices))

    s3_indices = indices[: sizes.s3_clips]
    with moto_s3("bench") as fs:
        ctx.log(f"uploading the store and {len(s3_indices)} .npy files to the S3 server")
        fs.put(url, "bench/loader.zarr", recursive=True)
        fs.put(npy_paths[: len(s3_indices)], "bench/npy/")
        s3_npy = [f"s3://bench/npy/{p.rsplit('/', 1)[1]}" for p in npy_paths[: len(s3_indices)]]
        ctx.log(f"S3: {sizes.s3_rounds} rounds of 1 epoch × {len(s3_indices)} clips, alternating")
        remote, _, _ = contenders("s3://bench/loader.zarr", s3_npy, s3_indices, 1)
        results["S3 (moto, 127.0.0.1)"] = (remote, alternate(remote, sizes.s3_rounds, ctx.log), len(s3_indices))

    rows, rate = [], {}
    for where, (cs, runs, samples) in results.items():
        project, baseline = (samples / runs[c.name].median for c in cs)
        rate[where] = (project, baseline)
        for c, r in zip(cs, (project, baseline)):
            rows.append([where, c.name, fmt(r), fmt(runs[c.name].median),
                         " / ".join(f"{s:.3g}" for s in runs[c.name].seconds),
                         f"{runs[c.name].peak / 2**20:,.0f}", f"{r / baseline:.2f}×"])
    local_project, local_baseline = rate["local disk"]
    return Section(
        name="loader",
        title="Loader throughput",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[Table(
            f"Samples/s, batch {BATCH}, {WORKERS} DataLoader workers; local: {len(indices)} clips × {sizes.epochs} "
            f"epoch(s) per run, median of {sizes.rounds} rounds; S3: {len(s3_indices)} clips, median of "
            f"{sizes.s3_rounds} rounds; store chunks {store.chunk_clips} clips, shards {store.shard_clips}; the "
            f"training loop's blocks {block} clips, shuffle buffer {buffer} clips",
            ["where", "loader", "samples/s", "median s per run", "all runs s", "peak RSS per reading process MiB", "vs .npy"],
            rows,
        )],
        targets=[
            Target("streaming loader, local disk", f"≥ {TARGET_SAMPLES_PER_S:,} samples/s", f"{local_project:,.0f} samples/s",
                   local_project >= TARGET_SAMPLES_PER_S),
            Target("streaming loader vs .npy per clip, local disk", "≥ 1×", f"{local_project / local_baseline:.2f}×",
                   local_project >= local_baseline),
        ],
        notes=[
            "Each run creates its loader once and iterates it for every epoch with persistent workers, as the "
            "training loop does, so worker start-up is paid once per run on both sides.",
            "S3 round trips go through moto's Python server on the same 2 cores; absolute S3 numbers are a floor, "
            "the ratio is the point.",
            "Peak RSS is per reading process (DataLoader worker); forked workers share the training process's "
            "pages, which RSS counts in full on both sides.",
        ],
    )
