"""Free Music Archive: `tracks.csv` + `genres.csv` -> manifest.

tracks.csv is pandas' dump of a frame with two-level columns: three header rows (column
group, field, then the index name `track_id`), list fields written as Python literals
(`[17, 10, 76]`). Genres form a tree in genres.csv; a track's top-level genres are the roots
its `genres_all` reach.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, split_choice
from manifests.schema import Manifest
from manifests.textio import TextTable, read_table

SUBSETS = ("small", "medium", "large")  # cumulative: small is inside medium, medium inside large
OFFICIAL_SPLIT = {"training": "train", "validation": "valid", "test": "test"}
_FIELDS = {
    "album": ("comments date_created date_released engineer favorites id information listens producer tags title"
              " tracks type"),
    "artist": ("active_year_begin active_year_end associated_labels bio comments date_created favorites id latitude"
               " location longitude members name related_projects tags website wikipedia_page"),
    "set": "split subset",
    "track": ("bit_rate comments composer date_created date_recorded duration favorites genre_top genres genres_all"
              " information interest language_code license listens lyricist number publisher tags title"),
}  # fmt: skip
COLUMNS = [f"{group}.{name}" for group, names in _FIELDS.items() for name in names.split()]  # the 52 of tracks.csv
USED = ["track_id", "track.genre_top", "track.genres_all", "track.title", "set.split", "set.subset",
        "artist.id", "artist.name", "album.id", "album.title"]  # fmt: skip
_INT_LIST = r"\[\s*(?:\d+\s*(?:,\s*\d+\s*)*)?\]"
_ID = r"[0-9]{1,18}"  # ASCII digits (\d takes any script's) that fit in an int64


def fma(
    metadata: str | Path,
    *,
    subset: str = "small",
    labels: str = "top",
    split: SplitArg = None,
    seed: int = 0,
    keep_unlabelled: bool = False,
) -> Manifest:
    """Manifest of the FMA `subset`; the `metadata` folder holds tracks.csv and genres.csv.

    `labels="top"`: the track's `genre_top` (empty when its genres reach several roots: such a
    track is unlabelled); `labels="all"`: every root genre reached from `genres_all`.
    `split`: "official" (`set.split`, the default) or ratios, stratified over artists.
    """
    if subset not in SUBSETS:
        raise UserError(f"--subset {subset!r}: expected one of {', '.join(SUBSETS)}")
    if labels not in ("top", "all"):
        raise UserError(f"--labels {labels!r}: expected top or all")
    choice = split_choice(split, ("official",), default="official")
    metadata = Path(metadata)
    root_of, titles = genre_roots(metadata / "genres.csv")
    tracks, frame = _read_tracks(metadata / "tracks.csv")

    rank = frame["set.subset"].map({name: i for i, name in enumerate(SUBSETS)})
    tracks.fail_where(
        rank.isna(), lambda r: f"set.subset {frame['set.subset'][r]!r} is not one of {', '.join(SUBSETS)}"
    )
    official = frame["set.split"].map(OFFICIAL_SPLIT)
    tracks.fail_where(
        official.isna(), lambda r: f"set.split {frame['set.split'][r]!r} is not one of {', '.join(OFFICIAL_SPLIT)}"
    )
    genres_all = _genre_lists(tracks, frame["track.genres_all"], root_of)
    root_titles = [titles[root] for root in sorted(set(root_of.values()))]  # in genre_id order
    tracks.fail_where(
        ~frame["track.genre_top"].isin([*root_titles, ""]),
        lambda r: f"genre_top {frame['track.genre_top'][r]!r} is not a top-level genre of genres.csv",
    )

    keep = (rank <= SUBSETS.index(subset)).to_numpy()
    frame, genres_all, official = (x[keep].reset_index(drop=True) for x in (frame, genres_all, official))
    if labels == "top":
        matrix = frame["track.genre_top"].to_numpy()[:, None] == np.asarray(root_titles)[None, :]
    else:
        reached = genres_all.explode().dropna()
        matrix = np.zeros((len(frame), len(root_titles)), dtype=bool)
        root_index = pd.Index(root_titles).get_indexer([titles[root_of[int(i)]] for i in reached])
        matrix[reached.index.to_numpy(), root_index] = True
    present = matrix.any(axis=0)  # a subset need not use every root (fma_small has 8 of 16)
    vocabulary = [title for title, used in zip(root_titles, present) if used]

    track_ids = frame["track_id"].astype("int64")
    artist = frame["artist.id"]
    table = pd.DataFrame(
        {
            "clip_id": frame["track_id"],
            "path": [f"{i // 1000:03d}/{i:06d}.mp3" for i in track_ids],
            "group": artist,
            "track_id": track_ids,
            "title": frame["track.title"],
            "artist_id": artist,
            "artist_name": frame["artist.name"],
            "album_id": frame["album.id"],
            "album_title": frame["album.title"],
            "genre_top": frame["track.genre_top"],
            "genres_all": genres_all,
            "subset": frame["set.subset"],
        }
    )
    clips = Clips(
        dataset="fma",
        source=str(metadata / "tracks.csv"),
        table=table,
        labels=matrix[:, present],
        vocabulary=vocabulary,
        group_by="artist",
        official=official,
        official_method="official:set.split",
        taxonomy=f"fma-genres-{labels}",
        taxonomy_hash=_hierarchy_hash(root_of, titles),
        options={"metadata": str(metadata), "subset": subset, "labels": labels,
                 "split": choice if isinstance(choice, str) else "ratios", "keep_unlabelled": keep_unlabelled},
    )  # fmt: skip
    return assemble(clips, None if isinstance(choice, str) else choice, seed, keep_unlabelled)


def genre_roots(path: Path) -> tuple[dict[int, int], dict[int, str]]:
    """(genre id -> its root genre id, genre id -> title) from genres.csv, checked against `top_level`."""
    table = read_table(path)
    where = table.columns(["genre_id", "#tracks", "parent", "title", "top_level"])
    columns = {name: table.strings(where[name]) for name in ("genre_id", "parent", "title", "top_level")}
    for name in ("genre_id", "parent", "top_level"):
        table.fail_where(
            ~columns[name].str.fullmatch(_ID),
            lambda r, name=name: f"{name} {columns[name][r]!r} is not a whole number",
        )
    ids, parents, tops = (columns[name].astype("int64").tolist() for name in ("genre_id", "parent", "top_level"))
    table.fail_where(  # as numbers: "01" is genre 1 again
        pd.Series(ids).duplicated(), lambda r: f"genre_id {columns['genre_id'][r]!r} appears twice; ids must be unique"
    )
    parent_of = dict(zip(ids, parents))
    table.fail_where(
        [p != 0 and p not in parent_of for p in parents], lambda r: f"parent {parents[r]} is not a genre_id"
    )
    root_of = {}
    for row, genre in enumerate(ids):
        chain = [genre]
        while parent_of[chain[-1]] != 0:
            chain.append(parent_of[chain[-1]])
            if len(chain) > len(ids):
                raise table.error(row, f"genre {genre}: its parents form a cycle")
        root_of[genre] = chain[-1]
        if chain[-1] != tops[row]:
            raise table.error(
                row, f"genre {genre}: top_level {tops[row]} disagrees with its parent chain (root {chain[-1]})"
            )
    titles = columns["title"].where([p == 0 for p in parents])  # NaN except at roots: their titles are labels
    table.fail_where(titles == "", lambda r: f"top-level genre {ids[r]} has an empty title")
    table.fail_where(
        titles.duplicated() & titles.notna(), lambda r: f"title {titles[r]!r} names two top-level genres"
    )
    return root_of, dict(zip(ids, columns["title"]))


def _read_tracks(path: Path) -> tuple[TextTable, pd.DataFrame]:
    """tracks.csv with its 3 header rows checked; the columns this adapter uses, as strings."""
    tracks = read_table(path, header_rows=3)
    group_row, field_row, index_row = tracks.header
    if index_row[0] != "track_id" or any(index_row[1:]) or group_row[0] or field_row[0]:
        raise UserError(
            f"{path}: expected FMA's 3 header rows (column group, field, then 'track_id' alone on the third);"
            " was the file re-saved by another program?"
        )
    names = ["track_id"] + [f"{group}.{field}" for group, field in zip(group_row[1:], field_row[1:])]
    where = tracks.columns(USED, optional=COLUMNS, names=names)
    frame = pd.DataFrame({name: tracks.strings(where[name]) for name in USED})
    ids = frame["track_id"]
    tracks.fail_where(~ids.str.fullmatch(_ID), lambda r: f"track_id {ids[r]!r} is not a whole number")
    numbers = ids.astype("int64")
    tracks.fail_where(numbers.duplicated(), lambda r: f"track_id {ids[r]!r} appears twice; ids must be unique")
    frame["track_id"] = numbers.astype(str)  # "0002" is track 2, as FMA's own loader (pandas) reads it
    return tracks, frame


def _genre_lists(tracks: TextTable, text: pd.Series, root_of: dict[int, int]) -> pd.Series:
    """`[17, 10, 76]` literals -> lists of ints; malformed lists or unknown genre ids are errors."""
    tracks.fail_where(
        ~text.str.fullmatch(_INT_LIST), lambda r: f"track.genres_all {text[r]!r} is not a list like [17, 10]"
    )
    lists = pd.Series([[int(v) for v in item.strip("[] ").split(",") if v.strip()] for item in text], dtype=object)
    tracks.fail_where(
        [any(i not in root_of for i in ids) for ids in lists],
        lambda r: f"track.genres_all {text[r]} names a genre that is not in genres.csv",
    )
    return lists


def _hierarchy_hash(root_of: dict[int, int], titles: dict[int, str]) -> str:
    """Hash of the genre -> root mapping the labels come from."""
    mapping = sorted((genre, titles[genre], root) for genre, root in root_of.items())
    return hashlib.sha256(json.dumps(mapping).encode()).hexdigest()
