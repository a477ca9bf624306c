"""A plain folder tree: `<root>/<label>/<any sub-folders>/<audio file>` -> single-label manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from manifests.errors import UserError
from manifests.assemble import Clips, SplitArg, assemble, split_choice
from manifests.paths import scan_audio
from manifests.schema import Manifest


def folder(root: str | Path, *, split: SplitArg = None, seed: int = 0) -> Manifest:
    """One label per sub-folder of `root`; audio files of any format libsndfile reads.

    `split` is ratios such as (0.7, 0.15, 0.15) or "70/15/15", stratified by label; each clip
    is its own group. Paths are relative to `root`, which is the audio root for the store.
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
    vocabulary = sorted(label.unique())
    dropped = {name: count for name, count in (("not audio", skipped), ("outside label folders", outside)) if count}
    clips = Clips(
        dataset=root.name,
        source=str(root),
        table=pd.DataFrame({"clip_id": clip_ids, "path": paths, "group": clip_ids}),
        labels=label.to_numpy()[:, None] == np.asarray(vocabulary)[None, :],
        vocabulary=vocabulary,
        group_by="none",
        dropped=dropped,
        options={"root": str(root)},
    )
    return assemble(clips, ratios, seed, keep_unlabelled=False)
