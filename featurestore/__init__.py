"""Feature store: decode audio once, in parallel, into a sharded, compressed Zarr v3 store.

The public API (everything else may change between versions):

    import featurestore
    report = featurestore.build("m.parquet", audio_root="audio", out="s.zarr",
                                spec=featurestore.preset("mtat-seed"))       # -> BuildReport
    store = featurestore.open_store("s.zarr")  # arrays, manifest, statistics, spec, status

- `build`, `BuildReport`: build, resume or grow a store (`featurestore.builder`).
- `open_store`, `Store`: read one (`featurestore.store`).
- `FeatureSpec`, `ArraySpec`, `Decoding`: what to compute; `preset(name)`, `PRESETS`.
- `UserError`, `StoreFormatError`: what a user can cause, one line each.
- `featurestore.features.Feature`, `featurestore.features.register`: feature kinds as plug-ins
  (also the entry-point group `featurestore.features`); `featurestore.testing` checks one.

Names load on first use, so that `import featurestore` (and `featurestore --help`) stays instant.
"""

from __future__ import annotations

import importlib
import importlib.metadata as _metadata
import os as _os

__version__ = _metadata.version("featurestore")  # pyproject.toml is the one source

# librosa compiles with numba on first use; workers and CI need a writable cache to reuse it.
_os.environ.setdefault("NUMBA_CACHE_DIR", _os.path.join(_os.path.expanduser("~"), ".cache", "featurestore", "numba"))

_EXPORTS = {
    "build": "featurestore.builder",
    "BuildReport": "featurestore.builder",
    "open_store": "featurestore.store",
    "Store": "featurestore.store",
    "FeatureSpec": "featurestore.spec",
    "ArraySpec": "featurestore.spec",
    "Decoding": "featurestore.spec",
    "preset": "featurestore.presets",
    "PRESETS": "featurestore.presets",
    "UserError": "featurestore.errors",
    "StoreFormatError": "featurestore.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
