"""Paths and URLs: a local path or any fsspec URL (s3://, memory://, ...), read and written alike.

Writes are atomic everywhere: a local file is written to a hidden temporary sibling and renamed
onto its name (a crash or a kill never leaves half a file under its final name); an object
store writes whole objects. Local paths are made absolute (`location`), since Dask workers may
run in another directory, and resolved through symlinks for the one writer lock of a store
(`canonical`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Temporaries are hidden siblings named `.NAME.HEX.tmpSUFFIX`; a killed writer's leftovers match this,
# as do zarr's LocalStore's, `KEY.HEX.partial`, written before it renames them to KEY.
TEMPORARY_GLOB = ".*.tmp*"
_TEMPORARY = re.compile(r"^\.(?P<ours>.+)\.[0-9a-f]{32}\.tmp.*$|^(?P<zarrs>.+)\.[0-9a-f]{32}\.partial$")


def location(path_or_url: str | os.PathLike[str]) -> str:
    """URLs as given; local paths absolute."""
    s = os.fspath(path_or_url)
    return s if "://" in s else os.path.abspath(s)


def canonical(path_or_url: str | os.PathLike[str]) -> str:
    """One name per place: local paths resolved through symlinks, `..` and `.`; URLs with `..`,
    `.`, repeated and trailing slashes normalised away (an object store has no symlinks)."""
    s = os.fspath(path_or_url)
    if "://" not in s:
        return os.path.realpath(s)
    protocol, rest = s.split("://", 1)
    return f"{protocol}://{posixpath.normpath(rest)}" if rest.strip("/") else s


def join(url: str, *parts: str) -> str:
    return "/".join([url.rstrip("/"), *parts])


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path within it)."""
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def zarr_store(url: str, *, read_only: bool) -> Any:
    """LocalStore for paths (atomic file writes), FsspecStore for anything else (s3://, memory://)."""
    from zarr.storage import FsspecStore, LocalStore

    fs, path = filesystem(url)
    if is_local(fs):
        return LocalStore(path, read_only=read_only)
    return FsspecStore.from_url(url, read_only=read_only)


def final_name(path: str) -> str:
    """The file a temporary stands for (its own path otherwise): what an error message should name."""
    head, name = os.path.split(path)
    match = _TEMPORARY.match(name)
    return os.path.join(head, match["ours"] or match["zarrs"]) if match else path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of local `path`, renamed onto it only if the block succeeds.

    The temporary ends with `path`'s suffix (writers such as savefig read the format from it) and
    is created by the writer itself, so it gets the usual umask permissions, not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(url: str, data: bytes) -> None:
    """Atomic on local disks (temp file + rename) and object stores (one PUT)."""
    fs, path = filesystem(url)
    if not is_local(fs):
        fs.pipe_file(path, data)
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_bytes(url: str) -> bytes | None:
    """The object's bytes; None when there is none."""
    fs, path = filesystem(url)
    try:
        return fs.cat_file(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def list_names(url: str) -> list[str]:
    """Names directly under a folder (empty when it does not exist)."""
    fs, path = filesystem(url)
    try:
        # refresh: object-store listings are cached per process, and another process may have written
        return sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False, refresh=True))
    except (FileNotFoundError, NotADirectoryError):
        return []


def sizes_under(url: str) -> dict[str, int]:
    """Size of every file below a folder, by its path relative to it (one recursive listing)."""
    fs, path = filesystem(url)
    prefix = path.rstrip("/") + "/"
    fs.invalidate_cache(path.rstrip("/"))
    try:
        found = fs.find(path.rstrip("/"), detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {key[len(prefix):]: int(info["size"]) for key, info in found.items() if key.startswith(prefix)}


def size(url: str) -> int | None:
    fs, path = filesystem(url)
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return None


def remove_object(url: str) -> None:
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def remove_tree(url: str) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def is_temporary(key: str) -> bool:
    """Whether a file (path or key) is a writer's temporary: zarr's `KEY.HEX.partial` or this
    package's hidden `.NAME.HEX.tmpSUFFIX`."""
    return _TEMPORARY.match(key.rsplit("/", 1)[-1]) is not None


def remove_files(url: str, keys: list[str]) -> None:
    """Delete files below `url` by their relative keys (those already gone are fine)."""
    for key in keys:
        remove_object(join(url, key))
