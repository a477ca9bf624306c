"""A plain CSV: `path`, `label` or `labels` (';'-separated), optional `group` and `split`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, split_choice
from manifests.schema import SPLITS, Manifest
from manifests.textio import read_table


def csv(file: str | Path, *, split: SplitArg = None, seed: int = 0, keep_unlabelled: bool = False) -> Manifest:
    """Manifest of the clips listed in `file`; paths are relative to the audio root.

    A `split` column is kept as is (then `split` must be None); otherwise the rows are split
    by ratios, stratified by label over the `group` column (a clip without a group is its own).
    """
    table = read_table(file)
    names = table.header[0]
    label_column = [name for name in ("label", "labels") if name in names]
    if len(label_column) != 1:
        raise UserError(f"{table.path}: needs exactly one of the columns 'label' or 'labels' (';'-separated)")
    where = table.columns(["path", label_column[0]], optional=["group", "split"])
    paths = table.strings(where["path"])
    table.check_paths(paths)
    table.check_unique(paths, "path")
    raw_labels = table.strings(where[label_column[0]])
    exploded = raw_labels.str.split(";").explode().str.strip()
    exploded = exploded[exploded != ""]
    vocabulary = sorted(exploded.unique())
    labels = np.zeros((len(paths), len(vocabulary)), dtype=bool)
    labels[exploded.index.to_numpy(), pd.Index(vocabulary).get_indexer(exploded)] = True
    groups = table.strings(where["group"]) if "group" in where else pd.Series([""] * len(paths), dtype="str")
    frame = pd.DataFrame({"clip_id": paths, "path": paths, "group": groups})
    official = None
    if "split" in where:
        if split is not None:
            raise UserError(f"{table.path} has a split column, which is kept as is; drop --split or the column")
        official = table.strings(where["split"])
        unknown = ~official.isin(SPLITS)
        if unknown.any():
            row = int(unknown.to_numpy().argmax())
            raise table.error(row, f"split {official.iloc[row]!r} is not one of {', '.join(SPLITS)}")
    ratios = None if official is not None else split_choice(split, ())
    clips = Clips(
        dataset=table.path.stem,
        source=str(table.path),
        table=frame,
        labels=labels,
        vocabulary=vocabulary,
        group_by="group" if "group" in where else "none",
        official=official,
        official_method="given:split column",
        options={"file": str(file), "split": "column" if official is not None else "ratios"},
    )
    return assemble(clips, ratios, seed, keep_unlabelled)
