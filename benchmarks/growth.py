"""Growth: what adding 1 % more clips, or new labels, costs an MTAT-sized store, against a rebuild.

25,863 MTAT-like clips (16 kHz mono MP3, 29.1 s; hard links cycling through a few renders, since
decoding costs the same whichever clip a file is), mtat-seed log-mel + MFCC, 2 warm workers:
- the store is built from the first 99 % of the rows;
- the full manifest (1 % more rows appended) is built into it: only the new clips are decoded;
- the same full manifest is built into a new store, from scratch: the rebuild it replaces;
- the splits of every row are redrawn and the grown store rebuilt with them: the manifest copy
  and the statistics are recomputed from the stored features, nothing is decoded.
The grown and the fresh store must be identical, shard by shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.context import Context
from benchmarks.results import Section, Table, Target, fmt

WORKERS = 2
APPEND_TARGET = 0.03  # of the rebuild's time


@dataclass(frozen=True)
class Sizes:
    clips: int
    appended: int


FULL = Sizes(clips=25_863, appended=259)
QUICK = Sizes(clips=48, appended=8)


def run(ctx: Context) -> Section:
    import manifests
    import numpy as np

    import featurestore
    from featurestore.presets import preset
    from featurestore.store import open_store

    from benchmarks.corpus import corpus

    sizes = QUICK if ctx.quick else FULL
    spec = preset("mtat-seed").select(["logmel", "mfcc"])
    if ctx.quick:
        spec = spec.replace(duration=3.0)
    clips = corpus(ctx, "mtat-growth", sizes.clips)
    full = manifests.load(clips.manifest)
    base_rows = sizes.clips - sizes.appended
    base = ctx.work / "growth-base.parquet"
    manifests.save(manifests.Manifest(full.table.iloc[:base_rows].reset_index(drop=True), full.meta), base)
    rng = np.random.default_rng(0)
    relabelled = ctx.work / "growth-relabelled.parquet"
    manifests.save(manifests.Manifest(full.table.assign(split=rng.permutation(full.table["split"].to_numpy())),
                                      full.meta), relabelled)
    scheduler = ctx.cluster(WORKERS).scheduler.address

    def build(manifest, out):
        start = time.perf_counter()
        report = featurestore.build(manifest, audio_root=clips.root, out=out, spec=spec, scheduler=scheduler)
        if report.pending:
            raise RuntimeError(f"{out}: {report.pending} clips pending")
        return time.perf_counter() - start, report

    grown, fresh = ctx.work / "grown.zarr", ctx.work / "fresh.zarr"
    ctx.log(f"building {base_rows:,} clips (99 %)")
    t_base, _ = build(base, grown)
    ctx.log(f"appending {sizes.appended} clips")
    t_append, appended = build(clips.manifest, grown)
    ctx.log(f"rebuilding all {sizes.clips:,} clips from scratch")
    t_full, _ = build(clips.manifest, fresh)
    same = {i: r.content_hash() for i, r in open_store(grown).records.items()} == {
        i: r.content_hash() for i, r in open_store(fresh).records.items()}
    if not same:
        raise RuntimeError("the grown store differs from the fresh build")
    ctx.log("new splits for every clip")
    t_relabel, relabel = build(relabelled, grown)

    rows = [
        [f"build the first {base_rows:,} clips", fmt(t_base), "-", f"{base_rows:,}"],
        [f"append {sizes.appended} clips (1 %)", fmt(t_append), f"{t_append / t_full:.1%}", f"{appended.decoded:,}"],
        [f"rebuild all {sizes.clips:,} clips", fmt(t_full), "100%", f"{sizes.clips:,}"],
        ["new splits for every clip (statistics from the stored features)", fmt(t_relabel),
         f"{t_relabel / t_full:.1%}", f"{relabel.decoded:,}"],
    ]
    return Section(
        name="growth",
        title="Growing a store",
        summary=__doc__.split("\n\n", 1)[1].strip(),
        tables=[Table(f"Seconds on {WORKERS} warm workers, mtat-seed log-mel + MFCC, {appended.shards} shards of "
                      f"{open_store(grown).shard_clips} clips; the grown store is identical to the fresh one, shard "
                      "by shard",
                      ["step", "seconds", "of the rebuild", "clips decoded"], rows)],
        targets=[Target("append 1 % more clips", f"≤ {APPEND_TARGET:.0%} of a rebuild", f"{t_append / t_full:.1%}",
                        t_append <= APPEND_TARGET * t_full)],
        notes=["One run of each step (a rebuild takes minutes here); the cluster is warm for all of them, so the "
               "times are the work itself, not a cluster's start-up."],
    )
