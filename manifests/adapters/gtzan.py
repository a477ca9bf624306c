"""GTZAN: the `genres/<genre>/<genre>.000NN.wav` tree -> single-label manifest.

GTZAN has no artist metadata, yet artists repeat within genres (35 reggae clips are Bob
Marley), so random splits overstate accuracy. `split="filtered"` uses the fault-filtered,
artist-disjoint lists of Kereliuk, Sturm & Larsen (2015), shipped in `manifests/data/`
(copied from github.com/coreyker/dnn-mgr, gtzan/{train,valid,test}_filtered.txt).
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, split_choice
from manifests.paths import scan_audio
from manifests.schema import SPLITS, Manifest
from manifests.textio import read_lines

_LIST_NAME = re.compile(r"([^_.]+)(?:_[^.]*)?\.txt")


def gtzan(
    root: str | Path,
    *,
    split: SplitArg = None,
    split_lists: str | Path | None = None,
    seed: int = 0,
) -> Manifest:
    """Manifest of the GTZAN tree at `root` (the folder holding `genres/`, or `genres/` itself).

    `split`: ratios (stratified by genre, the default 70/15/15), or "filtered"; `split_lists`:
    a folder of train/valid/test list files (paths like `blues/blues.00000.wav`) instead.
    """
    root = Path(root)
    tree = root / "genres" if (root / "genres").is_dir() else root
    if not tree.is_dir():
        raise UserError(f"GTZAN root {root} is not a folder")
    if split is not None and split_lists is not None:
        raise UserError("give --split or --split-lists, not both")
    choice = "lists" if split_lists is not None else split_choice(split, ("filtered",))
    files, skipped = scan_audio(tree)
    nested = [path for path in files if path.count("/") != 1]
    if nested:
        raise UserError(f"{tree / nested[0]}: expected <genre>/<file> directly under {tree}")
    if not files:
        raise UserError(f"no audio files under {tree}; expected {tree}/<genre>/<genre>.000NN.wav")
    relative = pd.Series(files, dtype="str")
    genres = relative.str.split("/").str[0]
    vocabulary = sorted(genres.unique())
    prefix = "" if tree == root else "genres/"
    stems = relative.str.rsplit(".", n=1).str[0]  # genre/genre.000NN, as the list files name clips
    clip_ids = stems.str.split("/").str[1]
    table = pd.DataFrame({"clip_id": clip_ids, "path": prefix + relative, "group": clip_ids, "genre": genres})
    duplicated = table["clip_id"].duplicated()
    if duplicated.any():
        raise UserError(f"{tree}: two audio files for clip {table['clip_id'][duplicated].iloc[0]!r}; keep one")
    dropped = {"not audio": skipped} if skipped else {}
    official = None
    if choice in ("filtered", "lists"):
        folder = split_lists if split_lists is not None else resources.files("manifests") / "data" / "gtzan_filtered"
        official = _assign_lists(Path(str(folder)), stems, tree)
        if official.isna().any():
            dropped["not in split lists"] = int(official.isna().sum())
            keep = official.notna().to_numpy()
            table, official = table[keep].reset_index(drop=True), official[keep].reset_index(drop=True)
    labels = table["genre"].to_numpy()[:, None] == np.asarray(vocabulary)[None, :]
    clips = Clips(
        dataset="gtzan",
        source=str(tree),
        table=table,
        labels=labels,
        vocabulary=vocabulary,
        group_by="none",
        official=official,
        official_method="official:filtered" if split_lists is None else f"lists:{split_lists}",
        dropped=dropped,
        options={"root": str(root), "split": choice if isinstance(choice, str) else "ratios",
                 "split_lists": None if split_lists is None else str(split_lists)},
    )  # fmt: skip
    return assemble(clips, None if isinstance(choice, str) else choice, seed, keep_unlabelled=False)


def _assign_lists(folder: Path, keys: pd.Series, tree: Path) -> pd.Series:
    """Split name per clip (NaN where no list names it) from `<split>[_anything].txt` files."""
    if not folder.is_dir():
        raise UserError(f"split lists folder {folder} not found")
    lists: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _LIST_NAME.fullmatch(path.name)
        if not match:
            continue
        if match.group(1) not in SPLITS:
            raise UserError(
                f"{path}: unknown split name {match.group(1)!r}; list files are named train*.txt, valid*.txt, test*.txt"
            )
        if match.group(1) in lists:
            raise UserError(
                f"{folder}: two {match.group(1)} lists ({lists[match.group(1)].name}, {path.name}); keep one per split"
            )
        lists[match.group(1)] = path
    absent = [name for name in SPLITS if name not in lists]
    if absent:
        raise UserError(
            f"{folder}: no list file for split(s) {', '.join(absent)}; expected train*.txt, valid*.txt, test*.txt"
        )
    position = {key: i for i, key in enumerate(keys)}
    assigned = pd.Series([None] * len(keys), dtype=object)
    for name in SPLITS:
        for number, entry in read_lines(lists[name]):
            key = entry.rsplit(".", 1)[0] if "." in entry.rsplit("/", 1)[-1] else entry
            if key not in position:
                raise UserError(f"{lists[name]} line {number}: {entry!r} is not an audio file under {tree}")
            if assigned[position[key]] is not None:
                raise UserError(
                    f"{lists[name]} line {number}: {entry!r} is already in the {assigned[position[key]]} list"
                )
            assigned[position[key]] = name
    return assigned
