"""Sub-commands `build`, `info`, `verify`, `upgrade`, `presets`, `export-features` and `doctor`:
argv to the public API.

Only argparse at import time: dask, zarr and torch load inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys

from featurestore.errors import UserError

HELP_ORDER = 20  # after `manifest`, before the trainers' commands

SPEC_OPTIONS = (  # (flag, setting, type, metavar, help): a decoding setting, the codec, or an array kind's
    ("--sample-rate", "sample_rate", int, "HZ", "sample rate"),
    ("--duration", "duration", float, "S", "seconds kept per clip (truncated or zero-padded)"),
    ("--offset", "offset", float, "S", "seconds skipped at the start of each file"),
    ("--max-channels", "max_channels", int, "N", "files with more channels fail, unread (bounds decode memory; "
                                                 "default 16)"),
    ("--max-input-rate", "max_input_rate", int, "HZ", "files sampled faster fail, unread (bounds decode memory; "
                                                      "default 384000)"),
    ("--min-samples", "min_samples", int, "N", "clips with less audio fail as too short (default 2048)"),
    ("--n-fft", "n_fft", int, "N", "FFT size of every log-mel and MFCC array"),
    ("--hop", "hop", int, "N", "hop length in samples of every log-mel and MFCC array"),
    ("--n-mels", "n_mels", int, "N", "mel bands of every log-mel and MFCC array"),
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
    from featurestore.presets import DEFAULT, PRESETS

    b = subparsers.add_parser(
        "build", help="decode audio and build a feature store (Dask, resumable)",
        description="Decode every clip of a manifest once, in parallel, into a sharded Zarr v3 store. "
                    "Re-running the same command resumes an interrupted build; on an existing store, arrays it "
                    "lacks are added and rows appended to the manifest are built.",
    )
    b.add_argument("manifest", metavar="MANIFEST", help="manifest Parquet file (path or URL)")
    b.add_argument("--audio-root", required=True, metavar="DIR", help="folder (or URL) the manifest paths are relative to")
    b.add_argument("--out", required=True, metavar="STORE", help="store to write (path or URL, e.g. s3://bucket/x.zarr)")
    base = b.add_mutually_exclusive_group()
    base.add_argument("--preset", metavar="NAME", choices=list(PRESETS),
                      help="settings to start from (default: those of the store at --out when there is one, else "
                           f"{DEFAULT}): " + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
                           + " (`featurestore presets` lists every setting of each; `featurestore presets NAME` "
                             "prints one as a TOML spec)")
    base.add_argument("--spec", metavar="FILE", help="settings to start from: a TOML spec (decoding, codec, named "
                                                     "arrays with their own settings), as `featurestore info STORE "
                                                     "--spec` or `featurestore presets NAME` print one")
    b.add_argument("--features", metavar="LIST",
                   help="comma-separated arrays to build: those of the spec, or feature kinds (logmel, mfcc, "
                        "waveform, handcrafted or a plug-in's) with their default settings; on an existing store, "
                        "those it lacks are added and the others kept")
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
    b.add_argument("--overwrite", action="store_true", help="replace whatever feature store is at --out")
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
    i.add_argument("--spec", action="store_true",
                   help="print only the store's spec, as TOML (`featurestore build --spec FILE` builds it again)")
    i.set_defaults(func=run_info)

    v = subparsers.add_parser("verify", help="check every shard's hash, finiteness and completeness",
                              description="Recompute each committed shard's content hash and check that "
                                          "values are finite and every clip is done; exit 1 naming bad shards.")
    v.add_argument("store", metavar="STORE")
    v.set_defaults(func=run_verify)

    u = subparsers.add_parser("upgrade", help="rewrite a store of an older format in today's (attributes only)",
                              description="Rewrite the root attributes and commit records of a store written by an "
                                          "older featurestore (format 3) in today's format. No feature is computed "
                                          "again and no array is touched; readers need no upgrade, builds do it "
                                          "themselves.")
    u.add_argument("store", metavar="STORE")
    u.set_defaults(func=run_upgrade)

    p = subparsers.add_parser("presets", help="list the presets, or print one as a TOML spec",
                              description="Without NAME, each preset and what it reproduces; with NAME, its spec "
                                          "as TOML (edit it and build with --spec FILE).")
    p.add_argument("name", metavar="NAME", nargs="?", choices=list(PRESETS))
    p.set_defaults(func=run_presets)

    e = subparsers.add_parser("export-features", help="write the handcrafted descriptors as a GTZAN-style CSV",
                              description="One row per segment of each ok clip: filename, length, the 57 "
                                          "descriptors of features_3_sec.csv, label.")
    e.add_argument("store", metavar="STORE")
    e.add_argument("--csv", required=True, metavar="OUT", help="CSV file to write")
    e.add_argument("--array", default="handcrafted", help="the handcrafted array to export (default handcrafted)")
    e.set_defaults(func=run_export)

    d = subparsers.add_parser("doctor", help="check that the feature libraries load and compute; print versions",
                              description="Print the versions of the libraries the store depends on and check "
                                          "that they import and compute (torch with torchaudio, libsndfile, soxr, "
                                          "Blosc, librosa); exit 2 with the fix when they do not.")
    d.set_defaults(func=run_doctor)


def spec_request(args: argparse.Namespace):  # -> Callable[[FeatureSpec | None], FeatureSpec]
    """What `build` asks for, as a function of the store's current spec (None for a new store):
    `--spec`'s file, `--preset`'s spec, or the store's own (mtat-seed for a new one); then the
    arrays `--features` names, then the settings given as flags. A store's codec is fixed, so a
    store resumed with its --preset keeps the codec it was started with, even where the preset's
    default has changed since."""
    from featurestore import codecs
    from featurestore.presets import DEFAULT, preset
    from featurestore.spec import FeatureSpec

    changes = {name: value for flag, name, *_ in SPEC_OPTIONS
               if (value := getattr(args, flag[2:].replace("-", "_"))) is not None}
    names = [f.strip() for f in (args.features or "").split(",") if f.strip()]
    if "codec" in changes:
        codecs.parse(changes["codec"])  # a bad name is refused before anything is read
    given = FeatureSpec.load(args.spec) if args.spec else None

    def resolve(stored: FeatureSpec | None) -> FeatureSpec:
        if given is not None:
            spec = given
        else:
            spec = preset(args.preset) if args.preset else stored or preset(DEFAULT)
            if stored is not None and "codec" not in changes:
                spec = spec.replace(codec=stored.codec)
        chosen = names or spec.names
        unused = sorted(changes.keys() - spec.setting_names(chosen))
        for name in unused:  # a shared command line (--crop-samples with no waveform array, say)
            print(f"featurestore build: note: --{name.replace('_', '-')} sets nothing in this build's arrays "
                  f"({', '.join(chosen)}): ignored", file=sys.stderr)
        spec = spec.select(chosen, **{k: v for k, v in changes.items() if k not in unused})
        print(f"spec {spec.hash()}: {json.dumps(spec.to_dict())}", flush=True)
        return spec

    return resolve


def _worker_env(pairs: list[str]) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--worker-env {pair!r}: write KEY=VALUE (or KEY= to unset)")
        env[key] = value or None
    return env


def run_build(args: argparse.Namespace) -> int:
    from featurestore.builder import build

    _quiet_client_close_logs()
    report = build(
        args.manifest, audio_root=args.audio_root, out=args.out, spec=spec_request(args),
        workers=args.workers, scheduler=args.scheduler, shard_clips=args.shard_size,
        overwrite=args.overwrite, progress=not args.quiet, worker_env=_worker_env(args.worker_env),
        scheduler_timeout=args.scheduler_timeout, moved_audio=args.moved_audio,
    )
    print(report.summary())
    if args.profile and report.profile is not None:
        print(report.profile.table(report.elapsed))
    return 0 if report.complete else 1


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
    from featurestore.store import FAILED, OK, PENDING, open_store
    from featurestore.store.inspect import footprint

    store = open_store(args.store)
    if args.spec:
        print(store.spec.to_toml(), end="")
        return 0
    status = store.status
    counts = {name: int((status == value).sum()) for name, value in (("ok", OK), ("failed", FAILED), ("pending", PENDING))}
    print(f"store      {store.url}")
    if store.build_state != "complete":
        state = (f"INCOMPLETE ({store.build_state}): {_completeness(store)}; counts include committed shards "
                 "only; finish it by re-running its `featurestore build` command")
    elif counts["pending"]:
        state = (f"DAMAGED: marked complete, but {counts['pending']} clips are in shards whose files or commit "
                 f"records no longer match; see `featurestore verify {args.store}`, re-run its build to rebuild them")
    else:
        state = "complete"
    if store.state.upgraded_from is not None:
        state += (f" (store format {store.state.upgraded_from}, read as today's; `featurestore upgrade "
                  f"{args.store}` rewrites its attributes)")
    print("state      " + state)
    print(f"dataset    {store.attrs.dataset}, {store.n_clips} clips: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"spec       {store.spec.hash()} (`featurestore info {args.store} --spec` prints it as TOML)")
    decoding = ", ".join(f"{k} {v}" for k, v in store.spec.to_dict()["decoding"].items())
    print(f"decoding   {decoding}")
    print(f"layout     chunks of {store.chunk_clips} clips in shards of {store.shard_clips} clips "
          f"({store.layout.n_shards} shards), codec {store.spec.codec}")
    _print_table([["array", "kind", "settings", "hash", "clips committed", "added"]] + [
        [name, array.kind, ", ".join(f"{k} {v}" for k, v in array.to_dict().items() if k != "kind") or "-",
         store.attrs.arrays[name].hash, f"{committed(store, name):,} of {store.n_clips:,}",
         store.attrs.arrays[name].added]
        for name, array in store.spec.arrays.items()])
    rows = footprint(store, status)
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


def _completeness(store) -> str:
    """Which arrays lack clips: '32 of 192 clips pending in waveform (logmel, mfcc complete)'."""
    pending = {name: store.n_clips - committed(store, name) for name in store.spec.names}
    missing = [f"{n:,} of {store.n_clips:,} clips pending in {name}" for name, n in pending.items() if n]
    complete = [name for name, n in pending.items() if not n]
    if not missing:
        return f"every array's clips committed, {store.n_pending:,} clips pending"
    return "; ".join(missing) + (f" ({', '.join(complete)} complete)" if complete else "")


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
    from featurestore.store import open_store
    from featurestore.store.inspect import verify

    store = open_store(args.store)
    checked, problems = verify(store)
    for p in problems:
        print(p)
    if problems:
        print(f"{store.url}: {len(problems)} problem(s) in {checked} shard(s) checked", file=sys.stderr)
        return 1
    print(f"{store.url}: ok ({checked} shards, {store.n_clips} clips: hashes match, values finite, build complete)")
    return 0


def run_upgrade(args: argparse.Namespace) -> int:
    from featurestore.builder.apply import upgrade

    before, records = upgrade(args.store)
    if before is None:
        print(f"{args.store}: already in today's format; nothing written")
    else:
        print(f"{args.store}: upgraded from store format {before}: {records} commit record(s) and the root "
              "attributes rewritten, every array kept")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from featurestore.presets import PRESETS, preset

    if args.name:
        print(f"# preset {args.name}: {PRESETS[args.name].description}")
        print(preset(args.name).to_toml(), end="")
        return 0
    for p in PRESETS.values():
        print(f"{p.name}: {p.description}")
        for line in settings_lines(p.spec):
            print(f"    {line}")
    return 0


def settings_lines(spec) -> list[str]:
    """Every setting of a spec, one line for its decoding and one per array."""
    def shown(values: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in values.items())

    document = spec.to_dict()
    return [f"decoding: {shown(document['decoding'])}; codec {document['codec']}",
            *(f"{name}: {shown(array)}" for name, array in document["arrays"].items())]


def run_export(args: argparse.Namespace) -> int:
    import numpy as np

    from featurestore.locations import write_bytes
    from featurestore.store import OK, open_store

    store = open_store(args.store)
    if args.array not in store.spec.arrays or store.spec.arrays[args.array].kind != "handcrafted":
        raise UserError(f"store {store.url} has no handcrafted array {args.array!r}: build it with --preset "
                        "handcrafted or --features handcrafted")
    ok = np.flatnonzero(store.status_for([args.array]) == OK)
    manifest = store.manifest.iloc[ok]
    values = store.array(args.array).take(ok) if len(ok) else store.array(args.array)[:0]
    table = store.spec.feature(args.array).table(values, manifest["path"].tolist(), manifest["labels"].tolist())
    write_bytes(args.csv, table.to_csv(index=False).encode())
    print(f"{args.csv}: {len(table)} rows (segments of the ok clips)")
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    import platform

    from featurestore import environment
    from featurestore.features import available

    print(f"{'python':14s} {platform.python_version()}")
    for name, version in environment.versions().items():
        print(f"{name:14s} {version}")
    required = [m for kind in available().values() for m in kind.requires]
    environment.require(tuple(dict.fromkeys([*environment.FEATURE_LIBRARIES, *required])))
    print("ok: the feature libraries import and compute")
    return 0
