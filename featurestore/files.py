"""Atomic local writes: a crash or a kill never leaves half a file under its final name."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

# Temporaries are hidden siblings named `.NAME.HEX.tmpSUFFIX`; a killed writer's leftovers match this.
TEMPORARY_GLOB = ".*.tmp*"
# ... and zarr's LocalStore writes `KEY.HEX.partial` before renaming it to KEY.
ZARR_TEMPORARY_GLOB = "*.partial"
_TEMPORARY = re.compile(r"^\.(?P<ours>.+)\.[0-9a-f]{32}\.tmp.*$|^(?P<zarrs>.+)\.[0-9a-f]{32}\.partial$")


def final_name(path: str) -> str:
    """The file a temporary stands for (its own path otherwise): what an error message should name."""
    head, name = os.path.split(path)
    match = _TEMPORARY.match(name)
    return os.path.join(head, match["ours"] or match["zarrs"]) if match else path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of `path`, renamed onto it only if the block succeeds.

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
