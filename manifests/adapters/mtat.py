"""MagnaTagATune: `annotations_final.csv` (+ `clip_info_final.csv`) -> manifest.

Both files are TAB-separated with every field quoted and CRLF line ends. Clips are
consecutive ~29 s segments of songs and artists span many songs, so the default group is
the artist: a clip-level split would put pieces of one song on both sides.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, label_lists, split_choice
from manifests.schema import Manifest
from manifests.taxonomy import MTAT_7, Taxonomy, load_taxonomy, top_tags
from manifests.textio import TextTable, read_table

CLIP_INFO_COLUMNS = (
    "clip_id", "track_number", "title", "artist", "album", "url",
    "segmentStart", "segmentEnd", "original_url", "mp3_path",
)  # fmt: skip
GROUPS = ("artist", "album", "song", "none")
# musicnn / Pons et al.: the 16 folders 0-f are keyed by artist + album; c is valid, d-f test
MUSICNN_FOLDERS = {**dict.fromkeys("0123456789ab", "train"), "c": "valid", **dict.fromkeys("def", "test")}


def mtat(
    annotations: str | Path,
    clip_info: str | Path | None = None,
    *,
    taxonomy: str = "mtat-7",
    group: str = "artist",
    split: SplitArg = None,
    seed: int = 0,
    keep_unlabelled: bool = False,
) -> Manifest:
    """Manifest of MTAT clips labelled through `taxonomy` ("mtat-7", "topN" or a TOML/JSON file).

    `split` is ratios ("70/15/15") or "musicnn" (the folder split of Pons et al.).
    """
    if group not in GROUPS:
        raise UserError(f"--group {group!r}: expected one of {', '.join(GROUPS)}")
    if group in ("artist", "album") and clip_info is None:
        raise UserError(f"--group {group} needs --clip-info clip_info_final.csv (or use --group song or none)")
    choice = split_choice(split, ("musicnn",))
    ann = read_table(annotations, delimiter="\t")
    where = ann.columns(["clip_id", "mp3_path"], optional=None)
    tags = [name for name in ann.header[0] if name not in ("clip_id", "mp3_path")]
    if not tags:
        raise UserError(f"{ann.path}: no tag columns between clip_id and mp3_path")
    ids = ann.strings(where["clip_id"])
    paths = ann.strings(where["mp3_path"])
    ann.fail_where(ids == "", lambda r: "clip_id is empty")
    ann.check_unique(ids, "clip_id")
    ann.check_paths(paths)
    ann.check_unique(paths, "mp3_path")  # one audio file under two ids would sit in two splits
    tag_matrix = _tag_matrix(ann, [where[tag] for tag in tags], tags)
    chosen = _taxonomy(taxonomy, tags, tag_matrix.sum(axis=0))
    # float32 so that the product runs in BLAS (integer matmul does not)
    labels = (tag_matrix.astype(np.float32) @ chosen.matrix(tags, str(ann.path)).astype(np.float32)) > 0

    table = pd.DataFrame({"clip_id": ids, "path": paths})
    if clip_info is not None:
        table = table.join(_clip_info(clip_info, ids))
    table.insert(2, "group", _groups(table, group))
    table["tags"] = label_lists(tag_matrix, tags)
    official = None
    if choice == "musicnn":
        official = paths.str[0].map(MUSICNN_FOLDERS)
        if official.isna().any():
            row = int(official.isna().to_numpy().argmax())
            raise ann.error(
                row, f"path {paths.iloc[row]!r} is not in a folder 0-f; --split musicnn needs MTAT's folders"
            )
    clips = Clips(
        dataset="mtat",
        source=str(ann.path),
        table=table,
        labels=labels,
        vocabulary=chosen.labels,
        group_by=group,
        official=official,
        official_method="official:musicnn",
        taxonomy=chosen.name,
        taxonomy_hash=chosen.hash(),
        options={
            "annotations": str(annotations),
            "clip_info": None if clip_info is None else str(clip_info),
            "taxonomy": taxonomy,
            "group": group,
            "split": choice if isinstance(choice, str) else "ratios",
            "keep_unlabelled": keep_unlabelled,
        },
    )
    return assemble(clips, None if isinstance(choice, str) else choice, seed, keep_unlabelled)


def _tag_matrix(ann: TextTable, positions: list[int], tags: list[str]) -> np.ndarray:
    """(clips, tags) bool from the "0"/"1" tag columns; anything else is an error naming the line."""
    columns = []
    for position, tag in zip(positions, tags):
        column = ann.data.column(position)
        ones = pc.equal(column, "1")
        valid = pc.or_(ones, pc.equal(column, "0"))
        if not pc.all(valid, min_count=0).as_py():  # min_count=0: True, not null, for no rows
            row = int(np.flatnonzero(~valid.to_numpy(zero_copy_only=False))[0])
            raise ann.error(row, f'tag column {tag!r} holds {column[row].as_py()!r}; expected "0" or "1"')
        columns.append(ones.to_numpy(zero_copy_only=False))
    return np.column_stack(columns)


def _taxonomy(name: str, tags: list[str], counts: np.ndarray) -> Taxonomy:
    if name == "mtat-7":
        return MTAT_7
    top = re.fullmatch(r"top(\d+)", name)
    if top and 0 < int(top.group(1)) <= len(tags):
        return top_tags(tags, counts, int(top.group(1)))
    if Path(name).is_file():
        return load_taxonomy(name)
    raise UserError(f"--taxonomy {name!r}: expected mtat-7, top50 (topN, N <= {len(tags)}) or a TOML/JSON file")


def _clip_info(path: str | Path, ids: pd.Series) -> pd.DataFrame:
    """artist, album, title, track_number, segment bounds for each annotated clip, in its order."""
    info = read_table(path, delimiter="\t")
    where = info.columns(CLIP_INFO_COLUMNS)
    info_ids = info.strings(where["clip_id"])
    info.check_unique(info_ids, "clip_id")
    frame = pd.DataFrame(
        {
            "artist": info.strings(where["artist"]),
            "album": info.strings(where["album"]),
            "title": info.strings(where["title"]),
            "track_number": info.strings(where["track_number"]),
            "segment_start": info.strings(where["segmentStart"]),
            "segment_end": info.strings(where["segmentEnd"]),
        }
    )
    position = pd.Index(info_ids).get_indexer(ids)
    if (position < 0).any():
        missing = ids[position < 0]
        raise UserError(f"{info.path}: no row for clip_id {missing.iloc[0]!r} ({len(missing)} annotated clips missing)")
    return frame.iloc[position].reset_index(drop=True)


def _groups(table: pd.DataFrame, group: str) -> pd.Series:
    if group == "artist":
        return table["artist"]
    if group == "album":  # album titles repeat across artists
        return table["artist"] + " / " + table["album"]
    if group == "song":  # <folder>/<artist>-<album>-<track>-<title>-<start>-<end>.mp3
        return table["path"].str.replace(r"-\d+-\d+\.mp3$", "", regex=True)
    return table["clip_id"]
