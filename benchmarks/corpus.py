"""Input audio for the benchmarks: real files in the three published formats, generated once, cached.

Each flavour is one corpus written by `featurestore.synth.corpus.generate_corpus` (real-sounding
music in 8 styles, GTZAN's folder layout, encoded by soundfile; reused as long as its settings
and the synth version are unchanged). A benchmark asks for n clips and gets a folder of n hard
links cycling through that corpus, plus a manifest: decode and feature costs do not depend on
which clip a file is, so a 3,200-clip run needs only a few hundred renders. Copies of one render
share its group and split, so no split ever sees another split's audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmarks.context import Context


@dataclass(frozen=True)
class Flavour:
    name: str
    format: str
    sample_rate: int
    channels: int
    seconds: float
    per_style: int  # distinct renders per style in a full run
    quick_per_style: int = 1  # ... and with --quick (3-s clips)


FLAVOURS = {
    f.name: f
    for f in (
        # MagnaTagATune: 29.1-s clips, 16 kHz mono MP3 (32 kbit/s in the real download).
        Flavour("mtat", "MP3", 16_000, 1, 29.1, per_style=64, quick_per_style=3),  # 3: a train, valid and test clip
        # The same clips from fewer renders, for runs where only the clip count matters (growth).
        Flavour("mtat-growth", "MP3", 16_000, 1, 29.1, per_style=4, quick_per_style=3),
        # FMA: 30-s clips, 44.1 kHz stereo MP3.
        Flavour("fma", "MP3", 44_100, 2, 30.0, per_style=4, quick_per_style=3),
        # GTZAN: 30-s clips, 22,050 Hz mono 16-bit WAV.
        Flavour("gtzan", "WAV", 22_050, 1, 30.0, per_style=4, quick_per_style=3),
    )
}
QUICK_SECONDS = 3.0
# Split of a style's k-th render by k mod 10: 7 train, 1 valid, 2 test, each split reached early.
SPLIT_CYCLE = ("train", "valid", "test", "train", "train", "test", "train", "train", "train", "train")


@dataclass(frozen=True)
class Corpus:
    root: Path  # one sub-folder per style, exactly the chosen clips
    paths: list[str]  # absolute paths, in manifest order
    manifest: Path


def renders(ctx: Context, flavour: Flavour) -> list[tuple[Path, str, int]]:
    """The flavour's cached corpus: (file, style, k) with the k-th clip of every style in turn."""
    from featurestore.synth.corpus import CorpusConfig, generate_corpus

    per_style, seconds = (flavour.quick_per_style, QUICK_SECONDS) if ctx.quick else (flavour.per_style, flavour.seconds)
    config = CorpusConfig(
        root=ctx.cache / "audio" / f"{flavour.name}-{per_style}x8-{seconds:g}s", clips_per_style=per_style,
        seconds=seconds, n_broken=0, formats=(flavour.format,), sample_rates=(flavour.sample_rate,),
        channels=(flavour.channels,),
    )

    def progress(done: int, total: int) -> None:
        if done % 64 == 0 or done == total:
            ctx.log(f"  {flavour.name} audio: {done}/{total} clips of {seconds:g} s in {config.root} (kept for next time)")

    report = generate_corpus(config, progress, workers=os.cpu_count() or 1)
    by_style: dict[str, list[Path]] = {}
    for clip in report.clips:
        by_style.setdefault(clip.labels[0], []).append(report.root / clip.path)
    return [(files[k], style, k) for k in range(per_style) for style, files in by_style.items()]


def corpus(ctx: Context, flavour: str, n: int) -> Corpus:
    """A folder of exactly `n` clips of a flavour (hard links into the cache) and its manifest."""
    import manifests
    import pandas as pd
    from featurestore.synth import STYLES

    base = renders(ctx, FLAVOURS[flavour])
    root = ctx.scratch(f"audio-{flavour}-{n}")
    paths, rows = [], []
    for i in range(n):
        src, style, k = base[i % len(base)]
        rel = f"{style}/{style}.{i:05d}{src.suffix}"
        if not (root / rel).exists():
            (root / style).mkdir(exist_ok=True)
            os.link(src, root / rel)
        paths.append(str(root / rel))
        rows.append({"clip_id": f"{flavour}-{i:05d}", "path": rel, "labels": [style],
                     "split": SPLIT_CYCLE[k % len(SPLIT_CYCLE)], "group": src.stem})
    meta = manifests.ManifestMeta(dataset=f"benchmark-{flavour}", labels=list(STYLES),
                                  split_method="by render: 7/1/2 of every 10 renders per style")
    manifest = root.parent / f"{root.name}.parquet"
    manifests.save(manifests.Manifest(pd.DataFrame(rows), meta), manifest)
    return Corpus(root=root, paths=paths, manifest=manifest)


def distinct(ctx: Context, flavour: str) -> int:
    """How many different renders stand behind a flavour's clips in this run."""
    f = FLAVOURS[flavour]
    return (f.quick_per_style if ctx.quick else f.per_style) * 8


def seconds(ctx: Context, flavour: str) -> float:
    return QUICK_SECONDS if ctx.quick else FLAVOURS[flavour].seconds
