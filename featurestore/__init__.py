"""Feature store: decode audio once, in parallel, into a sharded float16 Zarr v3 store."""

import importlib.metadata as _metadata

__version__ = _metadata.version("featurestore")  # pyproject.toml is the one source

import os as _os

# librosa compiles with numba on first use; workers and CI need a writable cache to reuse it.
_os.environ.setdefault("NUMBA_CACHE_DIR", _os.path.join(_os.path.expanduser("~"), ".cache", "featurestore", "numba"))
