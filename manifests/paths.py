"""Paths in a manifest are POSIX and relative to an audio root that the user names later."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from manifests.errors import UserError

# absolute (POSIX, Windows drive or home), or with a `..` part that climbs out of the root
_INVALID = r"^(?:/|~|[A-Za-z]:[/\\])|(?:^|/)\.\.(?:/|$)|^$"
_INVALID_PATTERN = re.compile(_INVALID)


def stays_inside(path: str) -> bool:
    """Whether one manifest path is relative and never climbs out of the root (by its text alone)."""
    return _INVALID_PATTERN.search(path) is None


def first_invalid_path(paths: pd.Series) -> int | None:
    """Position of the first path that is empty, absolute or leaves the root, or None."""
    bad = paths.astype(str).str.contains(_INVALID, regex=True).to_numpy()
    return int(bad.argmax()) if bad.any() else None


def missing_files(root: str | Path, paths: list[str], workers: int = 32) -> list[str]:
    """Paths (in the given order) that are not a file under root; stat calls overlap in threads."""
    root = os.fspath(root)
    chunks = [paths[i : i + 256] for i in range(0, len(paths), 256)]

    def absent(chunk: list[str]) -> list[str]:
        return [path for path in chunk if not os.path.isfile(os.path.join(root, path))]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [path for missing in pool.map(absent, chunks) for path in missing]


def audio_extensions() -> frozenset[str]:
    """File extensions of the formats this machine's libsndfile decodes (headerless RAW excluded)."""
    import soundfile

    formats = {name.lower() for name in soundfile.available_formats()} - {"raw", "wavex", "mat4", "mat5"}
    aliases = {"aiff": {"aif", "aifc"}, "au": {"snd"}, "ogg": {"oga", "opus"}, "wav": {"wave"}}
    return frozenset(formats | {alias for name in formats for alias in aliases.get(name, ())})


def scan_audio(folder: Path) -> tuple[list[str], int]:
    """Sorted POSIX paths (relative to folder) of audio files below it, and how many other files were skipped.

    Hidden files and folders (.DS_Store, .git) are not data and are not counted. An audio file
    whose name is not UTF-8 (say Latin-1 from an old archive), or whose path would read as
    absolute (a folder named `~` or `C:`), cannot be a manifest path: an error.
    """
    extensions = audio_extensions()
    found, skipped = [], 0
    for directory, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        base = Path(directory).relative_to(folder)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.rsplit(".", 1)[-1].lower() in extensions and "." in name:
                path = (base / name).as_posix()
                try:
                    path.encode("utf-8")
                except UnicodeEncodeError:  # os.walk hands undecodable bytes over as lone surrogates
                    shown = os.fsencode(folder / path).decode("utf-8", "backslashreplace")
                    raise UserError(f"{shown}: file or folder name is not UTF-8; rename it") from None
                if not stays_inside(path):  # a folder named "~" or "C:" is legal; a manifest path must not look absolute
                    raise UserError(f"{folder / path}: a path starting with '~' or a drive letter reads as absolute;"
                                    " rename the file or folder")
                found.append(path)
            else:
                skipped += 1
    return sorted(found), skipped
