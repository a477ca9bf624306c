"""The step every adapter ends with: drop unlabelled clips (counted), split, build the Manifest."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from manifests.errors import UserError
from manifests.io import frame, to_arrow
from manifests.schema import SPLITS, Manifest, ManifestMeta
from manifests.split import DEFAULT_RATIOS, deviations_pp, normalise_ratios, parse_ratios, stratified_split

SplitArg = str | Sequence[float] | None
# The distribution's version (pyproject.toml is its one source), recorded in every manifest.
WRITER_VERSION = importlib.metadata.version("featurestore")


@dataclass(frozen=True)
class Clips:
    """What an adapter read, before splitting. Rows are in manifest order."""

    dataset: str
    source: str  # the file or folder read, for messages
    table: pd.DataFrame  # clip_id, path, group ("" = none), then source columns
    labels: np.ndarray  # (rows, len(vocabulary)) bool
    vocabulary: list[str]
    group_by: str
    official: pd.Series | None = None  # train/valid/test per row where the dataset defines it
    official_method: str = ""  # how `official` came about, e.g. "official:musicnn"
    taxonomy: str = ""
    taxonomy_hash: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)


def split_choice(split: SplitArg, named: Sequence[str], default: SplitArg = None) -> tuple[float, float, float] | str:
    """Ratios (normalised) or the name of an official split from a user's `split` argument."""
    split = default if split is None else split
    if split is None:
        return DEFAULT_RATIOS
    if isinstance(split, str):
        if split in named:
            return split
        if "/" not in split:
            raise UserError(f"--split {split!r}: expected {' or '.join([*named, 'ratios like 70/15/15'])}")
        return parse_ratios(split)
    return normalise_ratios(split)


def assemble(clips: Clips, ratios: tuple[float, float, float] | None, seed: int, keep_unlabelled: bool) -> Manifest:
    """Split by `ratios` (stratified over groups) or, when None, keep `clips.official`."""
    if not len(clips.table):
        raise UserError(f"{clips.source}: no clips found")
    labelled = clips.labels.any(axis=1)
    keep = np.ones(len(labelled), dtype=bool) if keep_unlabelled else labelled
    dropped = dict(clips.dropped)
    if not keep_unlabelled and (~labelled).any():
        dropped["unlabelled"] = int((~labelled).sum())
    table = clips.table[keep].reset_index(drop=True)
    labels = clips.labels[keep]
    if not len(table):
        raise UserError(
            f"{clips.source}: none of its {len(labelled):,} clips has a label; check the labels or taxonomy"
        )
    if ratios is None:
        names = clips.official[keep].to_numpy()
        codes = pd.Series(names).map({name: i for i, name in enumerate(SPLITS)}).to_numpy()
        used = tuple(float(v) for v in np.bincount(codes, minlength=len(SPLITS)) / len(codes))
        method = clips.official_method
    else:
        codes = stratified_split(labels, table["group"].to_numpy(), ratios, seed)
        used, method = ratios, "iterative-stratification"
    deviation = float(deviations_pp(labels, codes, used).max())
    columns = {
        "clip_id": table["clip_id"],
        "path": table["path"],
        "labels": label_lists(labels, clips.vocabulary),
        "split": np.asarray(SPLITS)[codes],
        "group": table["group"].where(table["group"] != "", table["clip_id"]),  # no group: the clip alone
    }
    columns.update({name: table[name] for name in table.columns if name not in columns})
    meta = ManifestMeta(
        dataset=clips.dataset,
        labels=list(clips.vocabulary),
        taxonomy=clips.taxonomy,
        taxonomy_hash=clips.taxonomy_hash,
        split_method=method,
        split_ratios=[round(v, 6) for v in used],
        seed=None if ratios is None else seed,
        max_deviation_pp=round(deviation, 4),
        group_by=clips.group_by,
        dropped=dropped,
        options=clips.options,
        version=WRITER_VERSION,
    )
    # through Arrow, so that the table is exactly (dtypes included) what loading the file gives
    return Manifest(frame(to_arrow(Manifest(pd.DataFrame(columns), meta))), meta)


def label_lists(matrix: np.ndarray, vocabulary: Sequence[str]) -> pd.Series:
    """Row i -> the names of the columns set in matrix[i], in vocabulary order."""
    offsets = np.concatenate([[0], np.cumsum(matrix.sum(axis=1))]).astype(np.int32)
    values = pa.array(np.asarray(vocabulary, dtype=object)[np.nonzero(matrix)[1]], type=pa.string())
    return pd.Series(pa.ListArray.from_arrays(pa.array(offsets), values).to_pylist(), dtype=object)
