"""A plain folder tree: `<root>/<label>/<any sub-folders>/<audio file>` -> single-label manifest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, split_choice
from manifests.paths import scan_audio
from manifests.schema import Manifest


def folder(root: str | Path, *, split: SplitArg = None, seed: int = 0, group_regex: str | None = None) -> Manifest:
    """One label per sub-folder of `root`; audio files of any format libsndfile reads.

    `split` is ratios such as (0.7, 0.15, 0.15) or "70/15/15", stratified by label over groups.
    `group_regex` is searched in each path below its label folder (`Artist - Song/03.mp3`,
    `artist_song_03.wav`); the first capture group, or the whole match, is the clip's group, so
    the pieces of one song or artist stay in one split. Without it each clip is its own group.
    Paths are relative to `root`, which is the audio root for the store.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; expected <root>/<label>/<audio files>")
    ratios = split_choice(split, ())
    files, skipped = scan_audio(root)
    paths = pd.Series([path for path in files if "/" in path], dtype="str")
    outside = len(files) - len(paths)
    if not len(paths):
        raise UserError(f"no audio files in label folders under {root}; expected <root>/<label>/<audio files>")
    clip_ids = paths.str.rsplit(".", n=1).str[0]
    duplicated = clip_ids.duplicated()
    if duplicated.any():
        raise UserError(f"{root}: two audio files for clip {clip_ids[duplicated].iloc[0]!r} (same name, other format)")
    label = paths.str.split("/").str[0]
    group = clip_ids if group_regex is None else _groups(paths.str.split("/", n=1).str[1], group_regex, root)
    vocabulary = sorted(label.unique())
    dropped = {name: count for name, count in (("not audio", skipped), ("outside label folders", outside)) if count}
    clips = Clips(
        dataset=root.name,
        source=str(root),
        table=pd.DataFrame({"clip_id": clip_ids, "path": paths, "group": group}),
        labels=label.to_numpy()[:, None] == np.asarray(vocabulary)[None, :],
        vocabulary=vocabulary,
        group_by="none" if group_regex is None else f"regex:{group_regex}",
        dropped=dropped,
        options={"root": str(root), **({"group_regex": group_regex} if group_regex is not None else {})},
    )
    return assemble(clips, ratios, seed, keep_unlabelled=False)


def _groups(names: pd.Series, pattern: str, root: Path) -> pd.Series:
    """The group key of each path below its label folder; every path must match."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--group-regex {pattern!r} is not a valid regular expression: {exc}") from None
    found = names.str.extract(pattern if regex.groups else f"({pattern})", expand=True)[0]
    unmatched = found.isna() | (found == "")
    if unmatched.any():
        first = names[unmatched].index[0]
        raise UserError(f"{root}: {int(unmatched.sum())} of {len(names)} files do not match --group-regex {pattern!r} "
                        f"(first: {names[first]}); fix the pattern so that every file name yields its group")
    return found
