"""Label manifests: dataset metadata -> one Parquet row per clip with labels, split and group.

`load`, `save`, `Manifest`, `ManifestMeta` and `adapters` load on first use, so that
importing the package (as the CLI does for `--help`) stays free of pandas and pyarrow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load": "manifests.io",
    "save": "manifests.io",
    "Manifest": "manifests.schema",
    "ManifestMeta": "manifests.schema",
    "SPLITS": "manifests.schema",
}

__all__ = [*_EXPORTS, "adapters"]


def __getattr__(name: str):
    if name == "adapters":
        return importlib.import_module("manifests.adapters")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'manifests' has no attribute {name!r}")
