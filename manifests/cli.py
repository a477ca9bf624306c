"""`featurestore manifest <source> ... --out FILE.parquet` and `featurestore manifest show FILE`.

Only argparse is imported here; pandas, pyarrow and the adapters load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP_ORDER = 10  # the first stage: metadata to a manifest
SPLIT_HELP = "train/valid/test ratios, stratified over groups (default 70/15/15)"


def add_parser(subparsers) -> None:
    manifest = subparsers.add_parser(
        "manifest",
        help="build a label manifest (Parquet) from dataset metadata, or show one",
        description="Turn a dataset's own metadata into one Parquet row per clip: clip_id, path, labels, "
        "split, group, then source columns.",
    )
    sources = manifest.add_subparsers(dest="source", metavar="SOURCE", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--out", required=True, type=Path, metavar="FILE.parquet", help="manifest to write (atomically)"
    )
    common.add_argument("--seed", type=int, default=0, help="seed of the split's tie-breaks and restarts (default 0)")
    common.add_argument(
        "--check-audio", action="store_true", help="verify that every clip's file exists under the audio root"
    )

    mtat = sources.add_parser(
        "mtat", parents=[common], help="MagnaTagATune annotations_final.csv (+ clip_info_final.csv)",
        description="MagnaTagATune: tags folded into labels by a taxonomy, grouped by artist by default.",
    )  # fmt: skip
    mtat.add_argument("--annotations", required=True, type=Path, help="annotations_final.csv")
    mtat.add_argument(
        "--clip-info", type=Path, help="clip_info_final.csv (artist, album, title; needed to group by artist/album)"
    )
    mtat.add_argument("--audio-root", type=Path, help="folder holding 0/ ... f/ (for --check-audio)")
    mtat.add_argument(
        "--taxonomy", default="mtat-7", help="mtat-7 (default), top50, or a TOML/JSON file: label = [tags]"
    )
    mtat.add_argument(
        "--group", default="artist", choices=["artist", "album", "song", "none"], help="leakage key (default artist)"
    )
    mtat.add_argument("--split", help=f"{SPLIT_HELP}, or musicnn (folders 0-b / c / d-f)")
    mtat.add_argument(
        "--keep-unlabelled", action="store_true", help="keep clips that reach no label (dropped by default)"
    )
    mtat.set_defaults(func=_build, audio_root_arg="audio_root")

    gtzan = sources.add_parser(
        "gtzan", parents=[common], help="GTZAN genres/<genre>/<genre>.000NN.wav tree",
        description="GTZAN: label = genre folder. Paths are relative to --root, the audio root.",
    )  # fmt: skip
    gtzan.add_argument("--root", required=True, type=Path, help="folder holding genres/ (or genres/ itself)")
    gtzan.add_argument(
        "--split", help=f"{SPLIT_HELP}, or filtered (Kereliuk/Sturm fault-filtered, artist-disjoint lists)"
    )
    gtzan.add_argument(
        "--split-lists", type=Path, metavar="DIR", help="folder with train*.txt, valid*.txt, test*.txt lists"
    )
    gtzan.set_defaults(func=_build, audio_root_arg="root")

    fma = sources.add_parser(
        "fma", parents=[common], help="Free Music Archive tracks.csv + genres.csv",
        description="FMA: official set.split by default; group = artist id; path NNN/NNNNNN.mp3.",
    )  # fmt: skip
    fma.add_argument("--metadata", required=True, type=Path, help="folder holding tracks.csv and genres.csv")
    fma.add_argument("--subset", default="small", choices=["small", "medium", "large"], help="(default small)")
    fma.add_argument(
        "--labels", default="top", choices=["top", "all"], help="genre_top, or every root genre of genres_all"
    )
    fma.add_argument("--audio-root", type=Path, help="folder holding 000/ ... 155/ (for --check-audio)")
    fma.add_argument("--split", help=f"official (default) or {SPLIT_HELP}")
    fma.add_argument("--keep-unlabelled", action="store_true", help="keep tracks without a label (dropped by default)")
    fma.set_defaults(func=_build, audio_root_arg="audio_root")

    folder = sources.add_parser(
        "folder", parents=[common], help="a folder with one sub-folder of audio files per label",
        description="Any tree <root>/<label>/.../<audio file> (WAV, FLAC, OGG, MP3, ...); paths relative to --root.",
    )  # fmt: skip
    folder.add_argument("--root", required=True, type=Path, help="folder of label folders (the audio root)")
    folder.add_argument("--split", help=SPLIT_HELP)
    folder.add_argument("--group-regex", metavar="REGEX",
                        help="leakage key from each path below its label folder: the first capture group (or the "
                             "match), e.g. '^([^/]+)/' for a sub-folder per album or '^(.+?) - ' for 'Artist - "
                             "Title.mp3' (default: each file is its own group)")
    folder.set_defaults(func=_build, audio_root_arg="root")

    csv = sources.add_parser(
        "csv", parents=[common], help="a CSV with path and label(s), optional group and split",
        description="Columns: path, label or labels (';'-separated), optional group and split (kept as is).",
    )  # fmt: skip
    csv.add_argument("--file", required=True, type=Path, help="the CSV")
    csv.add_argument("--root", type=Path, help="audio root the paths are relative to (for --check-audio)")
    csv.add_argument("--split", help=f"{SPLIT_HELP}; not allowed when the CSV has a split column")
    csv.add_argument("--keep-unlabelled", action="store_true", help="keep rows without a label (dropped by default)")
    csv.set_defaults(func=_build, audio_root_arg="root")

    show = sources.add_parser("show", help="print a manifest's clips per label per split, groups and provenance")
    show.add_argument("file", metavar="FILE", help="manifest Parquet file or URL")
    show.set_defaults(func=_show)


def _adapter_call(args: argparse.Namespace):
    from manifests import adapters

    if args.source == "mtat":
        return adapters.mtat(
            args.annotations, args.clip_info, taxonomy=args.taxonomy, group=args.group,
            split=args.split, seed=args.seed, keep_unlabelled=args.keep_unlabelled,
        )  # fmt: skip
    if args.source == "gtzan":
        return adapters.gtzan(args.root, split=args.split, split_lists=args.split_lists, seed=args.seed)
    if args.source == "fma":
        return adapters.fma(
            args.metadata, subset=args.subset, labels=args.labels, split=args.split,
            seed=args.seed, keep_unlabelled=args.keep_unlabelled,
        )  # fmt: skip
    if args.source == "folder":
        return adapters.folder(args.root, split=args.split, seed=args.seed, group_regex=args.group_regex)
    return adapters.csv(args.file, split=args.split, seed=args.seed, keep_unlabelled=args.keep_unlabelled)


def _build(args: argparse.Namespace) -> int:
    from manifests.errors import UserError
    from manifests import io, paths, report

    if not args.out.parent.is_dir():
        raise UserError(f"--out {args.out}: folder {args.out.parent} does not exist; create it first")
    audio_root = getattr(args, args.audio_root_arg)
    if args.check_audio and audio_root is None:
        raise UserError(
            f"--check-audio needs --{args.audio_root_arg.replace('_', '-')}, the folder the paths are relative to"
        )
    manifest = _adapter_call(args)
    if args.check_audio:
        missing = paths.missing_files(audio_root, manifest.table["path"].tolist())
        for path in missing[:20]:
            print(f"missing: {path}", file=sys.stderr)
        if missing:
            raise UserError(
                f"{len(missing):,} of {len(manifest.table):,} audio files are missing under {audio_root}"
                f" (first: {missing[0]}); fix the audio root or the metadata"
            )
    io.save(manifest, args.out)
    if args.source == "folder" and args.group_regex is None:
        print("warning: no --group-regex: every file is its own group, so pieces of one song or artist can "
              "land in different splits and inflate test scores", file=sys.stderr)
    print(report.summary(manifest, str(args.out)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from manifests import io, report

    print(report.show(io.load(args.file), args.file))
    return 0
