"""How `format3-23b2951.tar.xz` was made: a store written by featurestore at commit 23b2951
(store format 3), kept so that the tests can check that later versions open, upgrade, train on
and grow a store built before them without computing its features again.

    git checkout 23b2951 && python tests/reference/stores/make_format3.py OUT_DIR

The audio is not kept: `audio_files()` renders it again (the test checks it against the SHA-256
sums recorded in `format3-audio.json`), so the tarball holds only the store and its manifest.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

CLIPS = 12  # the first STORED rows; the manifest `grown.parquet` appends GROWN more
GROWN = 4
SECONDS = 1.5
RATE = 16_000
EMPTY = 5  # row 5 is an empty file: a failed clip with its reason


def audio_files(root: Path, n: int) -> dict[str, str]:
    """Render clips 0..n-1 under `root`; returns path -> SHA-256 of the file."""
    import soundfile as sf

    from featurestore.synth import STYLES, render_clip

    sums = {}
    for i in range(n):
        path = f"{STYLES[i % len(STYLES)]}/{i:03d}.wav"
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if i == EMPTY:
            target.write_bytes(b"")
        else:
            sf.write(target, render_clip(STYLES[i % len(STYLES)], i, SECONDS, RATE), RATE, subtype="PCM_16")
        sums[path] = hashlib.sha256(target.read_bytes()).hexdigest()
    return sums


def manifest(path: Path, n: int) -> None:
    import pandas as pd

    import manifests
    from featurestore.synth import STYLES

    rows = [{"clip_id": f"c{i:03d}", "path": f"{STYLES[i % len(STYLES)]}/{i:03d}.wav",
             "labels": [STYLES[i % len(STYLES)]], "split": ("train", "train", "valid", "test")[i % 4],
             "group": f"g{i}"} for i in range(n)]
    meta = manifests.ManifestMeta(dataset="format3-fixture", labels=list(STYLES))
    manifests.save(manifests.Manifest(pd.DataFrame(rows), meta), path)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sums = audio_files(out / "audio", CLIPS + GROWN)
    manifest(out / "manifest.parquet", CLIPS)
    manifest(out / "grown.parquet", CLIPS + GROWN)
    subprocess.run(["featurestore", "build", str(out / "manifest.parquet"), "--audio-root", str(out / "audio"),
                    "--out", str(out / "store.zarr"), "--preset", "mtat-seed", "--duration", "1",
                    "--crop-samples", "4096", "--workers", "1", "--shard-size", "8", "--quiet"], check=False)
    with tarfile.open(out / "format3-23b2951.tar.xz", "w:xz") as tar:
        for name in ("store.zarr", "manifest.parquet", "grown.parquet"):
            tar.add(out / name, arcname=name)
    (out / "format3-audio.json").write_text(json.dumps(
        {"clips": CLIPS, "grown": GROWN, "seconds": SECONDS, "rate": RATE, "empty_row": EMPTY, "sha256": sums},
        indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
