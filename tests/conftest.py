"""Shared fixtures: the real reference metadata and small audio made on the fly."""

from __future__ import annotations

import hashlib
import lzma
import shutil
from pathlib import Path

import pytest

SHIPPED = Path(__file__).resolve().parent / "reference"  # see its README.md


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """The shipped reference metadata, unpacked (`X.xz` -> `X`) and checked against SHA256SUMS."""
    root = tmp_path_factory.mktemp("reference")
    for source in SHIPPED.rglob("*"):
        if source.is_file() and source.parent != SHIPPED:
            target = root / source.relative_to(SHIPPED)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.suffix == ".xz":
                target.with_suffix("").write_bytes(lzma.decompress(source.read_bytes()))
            else:
                shutil.copyfile(source, target)
    for line in (SHIPPED / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, f"{name} differs from SHA256SUMS"
    return root
