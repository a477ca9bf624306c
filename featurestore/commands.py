"""Sub-commands `build`, `info`, `verify` and `export-features`.

Only argparse at import time: dask, zarr and torch load inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys

from featurestore.errors import UserError

SPEC_OPTIONS = (  # (flag, FeatureSpec field, type, metavar, help)
    ("--sample-rate", "sample_rate", int, "HZ", "sample rate"),
    ("--duration", "duration", float, "S", "seconds kept per clip (truncated or zero-padded)"),
    ("--offset", "offset", float, "S", "seconds skipped at the start of each file"),
    ("--max-channels", "max_channels", int, "N", "files with more channels fail, unread (bounds decode memory; "
                                                 "default 16)"),
    ("--max-input-rate", "max_input_rate", int, "HZ", "files sampled faster fail, unread (bounds decode memory; "
                                                      "default 384000)"),
    ("--n-fft", "n_fft", int, "N", "FFT size"),
    ("--hop", "hop", int, "N", "hop length in samples"),
    ("--n-mels", "n_mels", int, "N", "mel bands"),
    ("--f-min", "f_min", float, "HZ", "lowest mel frequency"),
    ("--f-max", "f_max", float, "HZ", "highest mel frequency (default: Nyquist)"),
    ("--n-mfcc", "n_mfcc", int, "N", "MFCC coefficients"),
    ("--crop-samples", "crop_samples", int, "N", "samples per waveform crop"),
    ("--crops", "crops", int, "N", "waveform crops per clip, evenly spaced"),
    ("--segment-seconds", "segment_seconds", float, "S", "segment length of the handcrafted descriptors"),
    ("--codec", "codec", str, "NAME", "storage codec: blosc-zstd:2 (default: Blosc level 2, zstd, byte shuffle), "
                                      "blosc-zstd[:LEVEL] (Blosc level 1-9; 3 without one), zstd, "
                                      "blosc-zstd-bitshuffle, none, or quantized:STEP[:MFCC_STEP] (bounded error, "
                                      "e.g. quantized:0.0625); a store keeps the codec it was started with"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    b = subparsers.add_parser(
        "build", help="decode audio and build a feature store (Dask, resumable)",
        description="Decode every clip of a manifest once, in parallel, into a sharded Zarr v3 store. "
                    "Re-running the same command resumes an interrupted build.",
    )
    b.add_argument("manifest", metavar="MANIFEST", help="manifest Parquet file (path or URL)")
    b.add_argument("--audio-root", required=True, metavar="DIR", help="folder (or URL) the manifest paths are relative to")
    b.add_argument("--out", required=True, metavar="STORE", help="store to write (path or URL, e.g. s3://bucket/x.zarr)")
    b.add_argument("--preset", metavar="NAME",
                   help="feature settings to start from: mtat-seed, gtzan, fma, handcrafted (default: the settings "
                        "of the store at --out when there is one, else mtat-seed)")
    b.add_argument("--features", metavar="LIST",
                   help="comma-separated features to build: logmel, mfcc, waveform, handcrafted or a plug-in's; "
                        "on an existing store, those it lacks are added and the others kept")
    for flag, _, kind, metavar, text in SPEC_OPTIONS:
        b.add_argument(flag, type=kind, metavar=metavar, help=text)
    where = b.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask cluster, e.g. tcp://host:8786")
    b.add_argument("--shard-size", type=int, metavar="CLIPS",
                   help="clips per shard, a multiple of 8 (default: from the manifest size)")
    b.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment local workers start with (KEY= unsets it). The build fixes glibc's "
                        "MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ (Dask's default trim setting slowed "
                        "tasks up to 3x here)")
    b.add_argument("--scheduler-timeout", type=float, metavar="S",
                   help="stop when the Dask scheduler has not answered for S seconds (default 60)")
    b.add_argument("--overwrite", action="store_true", help="replace whatever is at --out")
    b.add_argument("--moved-audio", action="store_true",
                   help="resume or grow a store whose audio moved: the same files now live under --audio-root")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--profile", action="store_true",
                   help="print where the time went: ms per clip of every stage (decode, STFT, compression, ...), "
                        "Dask's gaps and the driver's phases")
    b.set_defaults(func=run_build)

    i = subparsers.add_parser("info", help="describe a store: spec, clip counts, per-array footprint",
                              description="Spec, clip counts and, per array, shape, dtype, chunks, shards, "
                                          "codec, stored bytes, bytes per clip, compression ratio.")
    i.add_argument("store", metavar="STORE")
    i.add_argument("--scale-to", type=int, metavar="N", help="also show the footprint scaled to N clips (e.g. 25863)")
    i.set_defaults(func=run_info)

    v = subparsers.add_parser("verify", help="check every shard's hash, finiteness and completeness",
                              description="Recompute each committed shard's content hash and check that "
                                          "values are finite and every clip is done; exit 1 naming bad shards.")
    v.add_argument("store", metavar="STORE")
    v.set_defaults(func=run_verify)

    e = subparsers.add_parser("export-features", help="write the handcrafted descriptors as a GTZAN-style CSV",
                              description="One row per segment of each ok clip: filename, length, the 57 "
                                          "descriptors of features_3_sec.csv, label.")
    e.add_argument("store", metavar="STORE")
    e.add_argument("--csv", required=True, metavar="OUT", help="CSV file to write")
    e.set_defaults(func=run_export)

    d = subparsers.add_parser("doctor", help="check that the feature libraries load and compute; print versions",
                              description="Print the versions of the libraries the store depends on and check "
                                          "that they import and compute (torch with torchaudio, libsndfile, soxr, "
                                          "Blosc, librosa); exit 2 with the fix when they do not.")
    d.set_defaults(func=run_doctor)


def resolve_spec(args: argparse.Namespace):  # -> FeatureSpec
    """The preset's settings, or those of the store being grown, changed by the options given.
    A store's codec is fixed, so resuming it with its --preset keeps the codec it was started
    with, even where the preset's default has changed since."""
    from featurestore.spec import preset

    existing = None if args.overwrite else _store_spec(args.out)
    base = preset(args.preset) if args.preset else existing or preset("mtat-seed")
    if existing is not None:
        base = base.replace(codec=existing.codec)
    changes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, field, *_ in SPEC_OPTIONS}
    if args.features:
        changes["features"] = tuple(f.strip() for f in args.features.split(",") if f.strip())
    return base.replace(**changes)


def _store_spec(url: str):  # -> FeatureSpec | None
    """The settings of the store at `url`, if there is one (its features: a re-run resumes it)."""
    from featurestore.store import is_store, open_store

    try:
        return open_store(url).spec if is_store(url) else None
    except (UserError, OSError, ValueError):
        return None


def _worker_env(pairs: list[str]) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--worker-env {pair!r}: write KEY=VALUE (or KEY= to unset)")
        env[key] = value or None
    return env


def run_build(args: argparse.Namespace) -> int:
    from featurestore.build import build_store

    _quiet_client_close_logs()
    spec = resolve_spec(args)
    print(f"spec {spec.hash()}: {json.dumps(spec.to_dict())}")
    report = build_store(
        args.manifest, args.audio_root, args.out, spec,
        workers=args.workers, scheduler=args.scheduler, shard_clips=args.shard_size,
        overwrite=args.overwrite, progress=not args.quiet, worker_env=_worker_env(args.worker_env),
        scheduler_timeout=args.scheduler_timeout, moved_audio=args.moved_audio,
    )
    print(report.summary())
    if args.profile and report.profile is not None:
        print(report.profile.table(report.elapsed))
    return 0 if report.pending == 0 else 1


def _quiet_client_close_logs() -> None:
    """A Dask client that loses its scheduler logs tracebacks of its own cancelled shutdown (from its
    event-loop thread, even after the build has returned); the build then says in one line what
    happened and what to do, so this program drops those records."""
    import asyncio
    import logging

    def keep(record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))

    logging.getLogger("distributed.client").addFilter(keep)


def run_info(args: argparse.Namespace) -> int:
    from featurestore.spec import DECODING
    from featurestore.store import FAILED, OK, PENDING, footprint, open_store

    store = open_store(args.store)
    status = store.status
    counts = {name: int((status == value).sum()) for name, value in (("ok", OK), ("failed", FAILED), ("pending", PENDING))}
    print(f"store      {store.url}")
    if store.build_state != "complete":
        state = (f"INCOMPLETE ({store.build_state}): {counts['pending']} clips pending, counts include committed "
                 "shards only; finish it by re-running its `featurestore build` command")
    elif counts["pending"]:
        state = (f"DAMAGED: marked complete, but {counts['pending']} clips are in shards whose files or commit "
                 f"records no longer match; see `featurestore verify {args.store}`, re-run its build to rebuild them")
    else:
        state = "complete"
    print("state      " + state)
    print(f"dataset    {store.attrs.get('dataset')}, {store.n_clips} clips: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"spec       {store.attrs['spec_hash']}: {json.dumps(store.spec.to_dict())}")
    print(f"layout     chunks of {store.chunk_clips} clips in shards of {store.shard_clips} clips "
          f"({store.layout.n_shards} shards), codec {store.spec.codec}")
    _print_table([["feature", "settings (besides decoding)", "hash", "clips committed", "added"]] + [
        [name, ", ".join(f"{k} {v}" for k, v in info["settings"].items() if k not in ("feature", *DECODING)) or "-",
         info["hash"], f"{committed(store, name):,} of {store.n_clips:,}", info["added"]]
        for name, info in store.attrs["arrays"].items()])
    rows = footprint(store)
    header = ["array", "shape", "dtype", "chunks", "shards", "codec", "stored", "bytes/clip", "ratio"]
    if args.scale_to:
        header.append(f"x {args.scale_to} clips")
    table = [header]
    for r in rows:
        line = [r.name, _tuple(r.shape), r.dtype, _tuple(r.chunks), _tuple(r.shards), r.codec,
                _bytes(r.stored), f"{r.bytes_per_clip:,.0f}" if r.bytes_per_clip is not None else "-",
                f"{r.ratio:.2f}" if r.ratio else "-"]
        if args.scale_to:
            line.append(_bytes(r.bytes_per_clip * args.scale_to) if r.bytes_per_clip is not None else "-")
        table.append(line)
    _print_table(table, right_from=6)
    return 0


def committed(store, name: str) -> int:
    """Clips whose values of array `name` are committed."""
    return sum(b - a for a, b in map(store.layout.shard_range, store.committed([name])))


def _print_table(rows: list[list[str]], right_from: int | None = None) -> None:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) if right_from is not None and c >= right_from else cell.ljust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _tuple(t: tuple[int, ...] | None) -> str:
    return "-" if t is None else "(" + ", ".join(str(x) for x in t) + ")"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def run_verify(args: argparse.Namespace) -> int:
    from featurestore.store import open_store, verify

    store = open_store(args.store)
    checked, problems = verify(store)
    for p in problems:
        print(p)
    if problems:
        print(f"{store.url}: {len(problems)} problem(s) in {checked} shard(s) checked", file=sys.stderr)
        return 1
    print(f"{store.url}: ok ({checked} shards, {store.n_clips} clips: hashes match, values finite, build complete)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from featurestore.store import export_features, open_store, write_bytes

    table = export_features(open_store(args.store))
    write_bytes(args.csv, table.to_csv(index=False).encode())
    print(f"{args.csv}: {len(table)} rows (segments of the ok clips)")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    import platform

    from featurestore import environment

    print(f"{'python':14s} {platform.python_version()}")
    for name, version in environment.versions().items():
        print(f"{name:14s} {version}")
    from featurestore.features import available

    required = [m for kind in available().values() for m in kind.requires]
    environment.require(tuple(dict.fromkeys([*environment.FEATURE_LIBRARIES, *required])))
    print("ok: the feature libraries import and compute")
    return 0
