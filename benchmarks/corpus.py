"""Input audio for the benchmarks: real files in the three published formats, cached.

Clips are rendered by `featurestore.synth` (real-sounding music, not noise: compression ratios
and MP3 decode costs depend on the signal) and written by soundfile in the GTZAN layout (one
sub-folder per style). The cache is keyed by a hash of the synth source, so a changed
generator never serves stale audio.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.context import Context


@dataclass(frozen=True)
class Flavour:
    name: str
    sample_rate: int
    channels: int
    seconds: float
    format: str
    subtype: str
    ext: str


FLAVOURS = {
    f.name: f
    for f in (
        # MagnaTagATune: 29.1-s clips, 16 kHz mono MP3 (32 kbit/s in the real download).
        Flavour("mtat", 16_000, 1, 29.1, "MP3", "MPEG_LAYER_III", "mp3"),
        # GTZAN: 30-s clips, 22,050 Hz mono 16-bit WAV.
        Flavour("gtzan", 22_050, 1, 30.0, "WAV", "PCM_16", "wav"),
        # FMA: 30-s clips, 44.1 kHz stereo MP3.
        Flavour("fma", 44_100, 2, 30.0, "MP3", "MPEG_LAYER_III", "mp3"),
    )
}


@dataclass(frozen=True)
class Corpus:
    root: Path  # one sub-folder per style, exactly the chosen clips
    paths: list[str]  # absolute paths, in generation order
    manifest: Path


def synth_fingerprint() -> str:
    import featurestore.synth as synth

    h = hashlib.sha256()
    for p in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _render(args: tuple[Flavour, float, str, int, str]) -> None:
    import soundfile as sf

    from featurestore.synth import render_clip

    flavour, seconds, style, seed, path = args
    audio = render_clip(style, seed, seconds, flavour.sample_rate, flavour.channels)
    tmp = f"{path}.tmp.{os.getpid()}"
    sf.write(tmp, audio, flavour.sample_rate, format=flavour.format, subtype=flavour.subtype)
    os.replace(tmp, path)


def clip_files(ctx: Context, flavour: Flavour, n: int, seconds: float | None = None) -> list[Path]:
    """Clips 0..n-1 of a flavour (clip i: style i mod 8, seed i), rendering those not cached yet."""
    from featurestore.synth import STYLES

    seconds = seconds or flavour.seconds
    base = ctx.cache / "audio" / f"{flavour.name}-{seconds:g}s-{synth_fingerprint()}"
    files, todo = [], []
    for i in range(n):
        style = STYLES[i % len(STYLES)]
        path = base / style / f"{style}.{i:05d}.{flavour.ext}"
        files.append(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            todo.append((flavour, seconds, style, i, str(path)))
    if todo:
        ctx.log(f"rendering {len(todo)} {flavour.name} clips of {seconds:g} s into {base} (cached for next time)")
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            for _ in pool.map(_render, todo, chunksize=4):
                pass
    return files


def corpus(ctx: Context, flavour: str, n: int, seconds: float | None = None, *, distinct: int | None = None) -> Corpus:
    """A folder of exactly `n` clips, hard links into the cache, and its manifest.

    With `distinct` < n, clip i is a link to rendered clip i mod `distinct` (keep it a multiple of
    the 8 styles so a copy keeps its style): decode and feature costs do not depend on which clip
    it is, and a 3,200-clip scaling run then needs only `distinct` renders. Copies of one render
    share its group and split (70 / 10 / 20 by render), so no split ever sees another's audio.
    """
    import manifests
    import pandas as pd
    from featurestore.synth import STYLES

    f = FLAVOURS[flavour]
    distinct = min(n, distinct or n)
    files = clip_files(ctx, f, distinct, seconds)
    root = ctx.scratch(f"audio-{flavour}-{n}-{distinct}-{seconds or f.seconds:g}s")
    paths, rows = [], []
    for i in range(n):
        src = files[i % distinct]
        rel = f"{src.parent.name}/{src.parent.name}.{i:05d}.{f.ext}"
        dst = root / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
        paths.append(str(dst))
        render = i % distinct
        split = "train" if render % 10 < 7 else "valid" if render % 10 == 7 else "test"
        rows.append({"clip_id": f"{flavour}-{i:05d}", "path": rel, "labels": [src.parent.name], "split": split,
                     "group": f"render-{render:05d}"})
    meta = manifests.ManifestMeta(dataset=f"bench-{flavour}", labels=list(STYLES), split_method="by render, 70/10/20")
    manifest_path = root.parent / f"{root.name}.parquet"
    manifests.save(manifests.Manifest(pd.DataFrame(rows), meta), manifest_path)
    return Corpus(root=root, paths=paths, manifest=manifest_path)
