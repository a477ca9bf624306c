"""Write the synthetic corpus to disk as a real, slightly messy dataset.

GTZAN's layout (`genres/<style>/<style>.NNNNN.<ext>`), a deterministic mix of formats, sample
rates and channel counts, and a few deliberately broken files, so that everything downstream
(decoding, failure reporting, resampling) meets the problems real collections have.
`corpus.json`, written last and atomically, makes a re-run with the same settings a no-op.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from featurestore.errors import UserError
from featurestore.locations import TEMPORARY_GLOB, atomic_path
from featurestore.synth.render import STYLES, render_clip

# Bump whenever the generator's output changes, so corpora written by older code are redone.
SYNTH_VERSION = 1
RECORD = "corpus.json"
LABELS_CSV = "labels.csv"
EXTENSIONS = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg", "MP3": "mp3"}
_NOT_AUDIO = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n<body><h1>Not Found</h1></body></html>\n"
)


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. Everything but `root` is recorded in corpus.json and decides reuse."""

    root: Path
    clips_per_style: int = 20
    seconds: float = 10.0
    seed: int = 0
    multilabel: bool = False  # clips mixing two styles (two of every three), plus labels.csv
    n_broken: int = 3  # empty, truncated, not-audio, in turn
    formats: tuple[str, ...] = ("WAV", "FLAC", "OGG", "MP3")
    sample_rates: tuple[int, ...] = (16000, 22050, 32000, 44100)
    channels: tuple[int, ...] = (1, 2)
    styles: tuple[str, ...] = STYLES

    def __post_init__(self) -> None:
        for name in ("sample_rates", "channels", "styles"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "formats", tuple(f.upper() for f in self.formats))
        if self.clips_per_style < 1 or not self.seconds > 0 or self.n_broken < 0 or self.seed < 0:
            raise UserError("corpus needs clips_per_style >= 1, seconds > 0, n_broken >= 0 and seed >= 0")
        missing = [f for f in self.formats if f not in EXTENSIONS or f not in sf.available_formats()]
        if missing or not self.formats:
            raise UserError(
                f"cannot write format(s) {', '.join(missing) or '(none given)'}: this libsndfile "
                f"{sf.__libsndfile_version__} writes {', '.join(f for f in EXTENSIONS if f in sf.available_formats())}"
            )
        if (
            not self.sample_rates
            or min(self.sample_rates) < 8000
            or not set(self.channels) <= {1, 2}
            or not self.channels
        ):
            raise UserError("corpus sample rates must be >= 8000 Hz and channels 1 or 2")
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown or len(set(self.styles)) != len(self.styles) or len(self.styles) < 1 + self.multilabel:
            raise UserError(
                f"corpus styles must be distinct names from {', '.join(STYLES)} (two or more for multilabel); "
                f"got {', '.join(self.styles) or 'none'}"
            )

    def identity(self) -> dict:
        """The settings that determine the files (the root may move without changing them)."""
        fields = dataclasses.asdict(self)
        del fields["root"]
        return {
            "synth_version": SYNTH_VERSION,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
        }


@dataclass(frozen=True)
class ClipFile:
    path: str  # POSIX, relative to the corpus root
    labels: tuple[str, ...]
    format: str
    sample_rate: int
    channels: int
    frames: int  # what a decoder should find; for a broken file, what its header promises (0: none)
    seed: int
    damage: str = ""  # deliberately broken files: "empty", "truncated" or "not-audio"
    problem: str = ""  # ... and what is wrong with it, in words
    bytes: int | None = None  # size once written

    @property
    def broken(self) -> bool:
        return bool(self.damage)

    @property
    def group(self) -> str:
        """The leakage key: every synthetic clip is its own recording."""
        return Path(self.path).name.rsplit(".", 1)[0]


@dataclass(frozen=True)
class CorpusReport:
    root: Path
    config: CorpusConfig
    files: tuple[ClipFile, ...]  # good clips, then the broken ones
    labels_csv: Path | None  # written for the multilabel corpus
    written: int  # audio files written by this call; 0 when an intact corpus was reused
    elapsed: float  # wall time of this call, seconds

    @property
    def folders(self) -> Path:
        """The folder-per-label tree (GTZAN's `genres/`): the root the folder adapter reads."""
        return self.root / "genres"

    @property
    def clips(self) -> tuple[ClipFile, ...]:
        return tuple(f for f in self.files if not f.broken)

    @property
    def broken(self) -> tuple[ClipFile, ...]:
        return tuple(f for f in self.files if f.broken)

    @property
    def reused(self) -> bool:
        return self.written == 0


def write_clip(
    path: str | Path, samples: np.ndarray, sample_rate: int, format: str, subtype: str | None = None
) -> Path:
    """soundfile.write, made atomic: a killed writer never leaves a half-written clip behind."""
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(tmp, samples, sample_rate, format=format.upper(), subtype=subtype)
    return path


def clip_seed(seed: int, style: str, index: int) -> int:
    """Per-clip seed, independent of which other styles or how many clips a corpus has."""
    return int(np.random.SeedSequence([seed, STYLES.index(style), index]).generate_state(1)[0])


def plan(config: CorpusConfig) -> list[ClipFile]:
    """Every file the corpus holds, in order: a pure function of the config."""
    styles, fmts, rates, chans = config.styles, config.formats, config.sample_rates, config.channels
    files = []
    for s, style in enumerate(styles):
        for k in range(config.clips_per_style):
            labels: tuple[str, ...] = (style,)
            if config.multilabel and k % 3:
                labels += (styles[(s + 1 + k % (len(styles) - 1)) % len(styles)],)
            # Each attribute cycles on its own, shifted per style, so none of them hints at the label.
            i = k + 3 * s
            fmt, rate, ch = (
                fmts[i % len(fmts)],
                rates[(i + i // len(fmts)) % len(rates)],
                chans[(i // 2 + i // 8) % len(chans)],
            )
            frames = int(round(config.seconds * rate))
            path = f"genres/{style}/{style}.{k:05d}.{EXTENSIONS[fmt]}"
            files.append(ClipFile(path, labels, fmt, rate, ch, frames, clip_seed(config.seed, style, k)))
    for j in range(config.n_broken):
        style = styles[j % len(styles)]
        k = config.clips_per_style + j // len(styles)
        stem = f"genres/{style}/{style}.{k:05d}"
        kind = j % 3
        if kind == 0:
            fmt = "WAV" if "WAV" in fmts else fmts[0]
            files.append(
                ClipFile(f"{stem}.{EXTENSIONS[fmt]}", (style,), fmt, 0, 0, 0, 0, "empty", "empty file (0 bytes)")
            )
        elif kind == 1:
            fmt = "MP3" if "MP3" in fmts else fmts[-1]
            rate = rates[j % len(rates)]
            frames = int(round(config.seconds * rate))
            problem = f"truncated {fmt}: cut to 40% of its bytes, header promises {frames} frames"
            seed = clip_seed(config.seed, style, k)
            files.append(
                ClipFile(f"{stem}.{EXTENSIONS[fmt]}", (style,), fmt, rate, 1, frames, seed, "truncated", problem)
            )
        else:
            fmt = "OGG" if "OGG" in fmts else fmts[0]
            problem = f"not audio: an HTML error page saved as .{EXTENSIONS[fmt]}"
            files.append(ClipFile(f"{stem}.{EXTENSIONS[fmt]}", (style,), fmt, 0, 0, 0, 0, "not-audio", problem))
    return files


def _write(root: Path, f: ClipFile, seconds: float) -> None:
    path = root / f.path
    if not f.broken:
        write_clip(path, render_clip(f.labels, f.seed, seconds, f.sample_rate, f.channels), f.sample_rate, f.format)
        return
    with atomic_path(path) as tmp:
        if f.damage == "empty":
            tmp.write_bytes(b"")
        elif f.damage == "not-audio":
            tmp.write_bytes(_NOT_AUDIO)
        else:  # truncated: a complete file cut short, as an interrupted download leaves it
            sf.write(
                tmp, render_clip(f.labels, f.seed, seconds, f.sample_rate, f.channels), f.sample_rate, format=f.format
            )
            with open(tmp, "r+b") as fh:
                fh.truncate(int(tmp.stat().st_size * 0.4))


def _read_record(root: Path) -> dict | None:
    try:
        record = json.loads((root / RECORD).read_text())
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in files):
        return None
    return record


def _write_record(root: Path, config: CorpusConfig, files: Sequence[ClipFile], state: str, labels_csv: bool) -> None:
    record = {
        "generator": "featurestore.synth",
        "state": state,
        "config": config.identity(),
        "labels_csv": LABELS_CSV if labels_csv else None,
        "files": [dataclasses.asdict(f) for f in files],
    }
    with atomic_path(root / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _reusable(root: Path, record: dict | None, config: CorpusConfig, files: list[ClipFile]) -> list[ClipFile] | None:
    """The planned files, if a finished run with these settings wrote them all and none has changed size."""
    if record is None or record.get("config") != config.identity() or record.get("state") != "complete":
        return None
    sizes = {f["path"]: f.get("bytes") for f in record["files"]}
    if set(sizes) != {f.path for f in files} or (config.multilabel and not (root / LABELS_CSV).is_file()):
        return None
    if not all((root / f.path).is_file() and (root / f.path).stat().st_size == sizes[f.path] for f in files):
        return None
    return [dataclasses.replace(f, bytes=sizes[f.path]) for f in files]


def _write_labels_csv(root: Path, files: Sequence[ClipFile]) -> Path:
    path = root / LABELS_CSV
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "labels", "group"])
        writer.writerows([f.path, ";".join(f.labels), f.group] for f in files)
    return path


def _inside(root: Path, rel: str) -> Path | None:
    path = root / rel
    return path if rel and not Path(rel).is_absolute() and ".." not in Path(rel).parts else None


def _clear(root: Path, record: dict | None, config: CorpusConfig, keep: set[str]) -> None:
    """Delete what must not survive into this run.

    With other settings, everything the earlier corpus listed goes (a same-named file from
    other settings must not pass as this run's). With the same settings, a killed run's files
    are complete (writes are atomic) and stay, unless a finished run recorded another size.
    """
    same = record is not None and record.get("config") == config.identity()
    for f in record["files"] if record else []:
        path = _inside(root, f["path"])
        if (
            path is not None
            and path.is_file()
            and (not same or f["path"] not in keep or f["bytes"] not in (None, path.stat().st_size))
        ):
            path.unlink()
    old_csv = _inside(root, (record or {}).get("labels_csv") or "")
    if old_csv is not None:
        old_csv.unlink(missing_ok=True)
    for tmp in (root / "genres").glob(f"*/{TEMPORARY_GLOB}"):  # temp files of a writer that was killed
        tmp.unlink(missing_ok=True)


def generate_corpus(
    config: CorpusConfig, progress: Callable[[int, int], None] | None = None, *, workers: int = 1
) -> CorpusReport:
    """Write the corpus under `config.root` (or reuse it), calling `progress(done, total)` per file.

    `workers` > 1 renders and encodes in that many processes (MP3 and Vorbis encoding cost
    as much as the synthesis); the files are the same whatever the number of workers.
    """
    start = time.perf_counter()
    root = config.root
    files = plan(config)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create corpus folder {root}: {e.strerror}; choose another --out") from None
    record = _read_record(root)
    labels_csv = root / LABELS_CSV if config.multilabel else None
    reusable = _reusable(root, record, config, files)
    if reusable is not None:
        return CorpusReport(root, config, tuple(reusable), labels_csv, 0, time.perf_counter() - start)

    try:
        _clear(root, record, config, {f.path for f in files})
        _write_record(root, config, files, "generating", config.multilabel)
        todo = [f for f in files if not (root / f.path).is_file()]
        done = len(files) - len(todo)
        for _ in _run(_write, [(root, f, config.seconds) for f in todo], workers):
            done += 1
            if progress is not None:
                progress(done, len(files))
        files = [dataclasses.replace(f, bytes=(root / f.path).stat().st_size) for f in files]
        if labels_csv is not None:
            _write_labels_csv(root, files)
        _write_record(root, config, files, "complete", config.multilabel)
    except OSError as e:
        raise UserError(f"cannot write the corpus under {root}: {e}; free some space or choose another --out") from None
    return CorpusReport(root, config, tuple(files), labels_csv, len(todo), time.perf_counter() - start)


def _run(fn: Callable, calls: Sequence[tuple], workers: int) -> Iterator[None]:
    """Call `fn(*args)` for each call, in `workers` processes when that helps; yield as each ends."""
    if workers <= 1 or len(calls) <= 1:
        for args in calls:
            fn(*args)
            yield None
        return
    # spawn, not fork: the caller may already hold threads (torch, Dask) that fork would copy mid-state
    pool = ProcessPoolExecutor(min(workers, len(calls)), mp_context=multiprocessing.get_context("spawn"))
    try:
        for future in as_completed([pool.submit(fn, *args) for args in calls]):
            future.result()
            yield None
    finally:  # on failure, do not sit through the queued files
        pool.shutdown(wait=True, cancel_futures=True)
