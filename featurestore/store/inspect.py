"""Looking at a store: per-array footprint, and `verify`, which re-hashes every shard."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurestore.store.commits import content_hash, shard_rows_hashes
from featurestore.store.layout import CLIPS, FAILED, OK, PENDING, clip_arrays, normalised, part_arrays
from featurestore.store.reader import Store


@dataclass(frozen=True)
class Footprint:
    """One row of `featurestore info`."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    chunks: tuple[int, ...] | None
    shards: tuple[int, ...] | None
    codec: str
    stored: int  # bytes on disk, metadata included
    bytes_per_clip: float | None  # over the clips written so far
    ratio: float | None  # decoded bytes / stored bytes


def footprint(store: Store, status: np.ndarray | None = None) -> list[Footprint]:
    """Per-array sizes plus a `total` row; per-clip figures count written (ok or failed) clips
    (`status`: the store's committed status, when the caller has it)."""
    done = int(np.count_nonzero((store.status if status is None else status) != PENDING))
    rows = []
    for name in clip_arrays(store.spec):
        view = store.array(name)
        a, stored = view.raw, view.nbytes_stored()
        decoded = math.prod(a.shape) * view.dtype.itemsize * done / store.n_clips
        step = view.raw.attrs.get("scale_factor")
        codec = "+".join([*([f"step{step:g}:{a.dtype}"] if step else []), *map(_codec_text, a.compressors)]) or "none"
        rows.append(Footprint(name, a.shape, str(view.dtype), a.chunks, a.shards, codec, stored,
                              stored / done if done else None, decoded / stored if done else None))
    stored = sum(r.stored for r in rows)
    decoded = sum(r.ratio * r.stored for r in rows if r.ratio)
    rows.append(Footprint("total", None, "", None, None, "", stored, stored / done if done else None,
                          decoded / stored if done else None))
    return rows


def _codec_text(codec: Any) -> str:
    d = codec.to_dict()
    name, cfg = d["name"].removeprefix("numcodecs."), d.get("configuration", {})
    if name == "blosc":
        return f"blosc-{cfg['cname']}{cfg['clevel']}-{cfg['shuffle']}"
    if name == "zstd":
        return f"zstd{cfg['level']}"
    return name


def read_shard(store: Store, index: int, names: list[str]) -> dict[str, np.ndarray]:
    """A shard's values, as readers get them (quantized arrays scaled back)."""
    start, stop = store.layout.shard_range(index)
    return {name: store.array(name)[start:stop] for name in names}


def verify(store: Store) -> tuple[int, list[str]]:
    """(shards checked, problems): every shard committed for its status and every array, each
    part's content hash as recorded, status counts as recorded, failed rows zero, every value
    finite, statistics present."""
    layout, problems = store.layout, []
    parts = (CLIPS, *store.spec.names)
    missing = [a for p in parts for a in part_arrays(p) if a not in store.state.arrays]
    if missing:
        return layout.n_shards, [f"array {missing[0]} has not been created: re-run the build to finish the store"]
    rows = shard_rows_hashes(store.manifest, layout)
    names = list(clip_arrays(store.spec))
    for index in range(layout.n_shards):
        where = layout.describe(index)
        record = store.records.get(index)
        if record is None:
            problems.append(f"{where}: not committed")
            continue
        valid = store.state.valid(index, rows[index])
        lost = [p for p in parts if p not in valid]
        if lost:
            problems.append(f"{where}: not committed for {', '.join(lost)} (committed for another store, other "
                            "clips or settings, or its shard files were changed or deleted since)")
        try:
            data = read_shard(store, index, names)
        except Exception as exc:  # noqa: BLE001 - a damaged shard is a finding, not a crash
            problems.append(f"{where}: unreadable: {type(exc).__name__}: {exc}")
            continue
        recorded = record.parts()
        for part in valid:
            if content_hash({n: data[n] for n in part_arrays(part)}) != recorded[part].hash:
                problems.append(f"{where}: content differs from its commit record (hash mismatch in {part})")
        status = data["status"]
        if CLIPS in valid and (int((status == OK).sum()), int((status == FAILED).sum())) != (record.clips.ok,
                                                                                           record.clips.failed):
            problems.append(f"{where}: ok/failed counts differ from its commit record")
        if (status == PENDING).any():
            problems.append(f"{where}: {int((status == PENDING).sum())} clip(s) pending")
        for name, values in data.items():
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                problems.append(f"{where}: non-finite values in {name}")
            if name != "status" and (values[status == FAILED] != 0).any():
                problems.append(f"{where}: failed clips with non-zero {name}")
    if store.build_state != "complete":
        problems.append(f"build state is {store.build_state!r}, not 'complete': re-run the build to finish it")
    else:
        for name in normalised(store.spec):
            if not all(np.isfinite(s).all() for s in store.stats(name)):
                problems.append(f"non-finite statistics for {name}")
    return layout.n_shards, problems
