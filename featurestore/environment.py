"""Can this process compute features? One line naming the library, its error and the fix.

A broken install (torchaudio built for another torch, a missing libsndfile or Blosc) otherwise
surfaces as the same exception in every shard task, or as a traceback from deep inside an import.
Every command that needs the feature libraries asks `problem()` first, on the driver and, for a
build, on each Dask worker (a cluster's workers may run another environment than the driver).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import os
import sys
import tempfile
from typing import Iterator

# What decoding, feature maths and the store import, in the order their failures are reported
# (each feature kind adds what it `requires`, e.g. librosa for the handcrafted descriptors).
# numba: MP3s decode from memory through callbacks it compiles (featurestore.audio.memory).
FEATURE_LIBRARIES = ("numpy", "torch", "torchaudio", "soundfile", "soxr", "numba", "zarr", "numcodecs")
# The one list of versions: what `featurestore doctor` and CI print, and what a store records
# of the build that wrote it.
REPORTED = ("featurestore", "torch", "torchaudio", "numpy", "zarr", "numcodecs", "dask", "distributed", "librosa",
            "numba", "soundfile", "soxr", "pyarrow", "pandas", "scikit-learn")
FIX = "reinstall the tested set: pip install -c constraints.txt -e . (README, Install)"
MAX_ERROR_CHARS = 300
# Libraries that compile numba kernels into the shared cache when first used.
COMPILING = ("librosa", "numba")
COMPILE_LOCK = ".featurestore-compile.lock"


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def versions(names: tuple[str, ...] = REPORTED) -> dict[str, str]:
    return {name: version(name) for name in names}


def problem(libraries: tuple[str, ...] = FEATURE_LIBRARIES) -> str | None:
    """None when every library imports and torch/torchaudio compute a spectrogram; else one line."""
    for name in libraries:
        try:
            module = importlib.import_module(name)
            if name == "torchaudio":
                _smoke_torchaudio(module)
        except Exception as exc:  # noqa: BLE001 - whatever breaks an import is the finding
            return _describe(name, exc)
    return None


def require(libraries: tuple[str, ...] = FEATURE_LIBRARIES) -> None:
    """Raise a UserError (exit 2, one line) when `problem` finds one."""
    from featurestore.errors import UserError

    found = problem(libraries)
    if found:
        raise UserError(found)


def _smoke_torchaudio(torchaudio) -> None:
    """A wheel that imports may still fail on first use, when it loads its compiled library."""
    import torch

    torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_fft=64, n_mels=4)(torch.zeros(256))
    torchaudio.functional.resample(torch.zeros(64), 8000, 4000)


def _describe(name: str, exc: BaseException) -> str:
    error = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    if name == "torchaudio" and "torch" in sys.modules:
        return (f"torchaudio {version('torchaudio')} cannot load with torch {version('torch')} ({error}): "
                f"install a matching pair; {FIX}")
    return f"cannot use {name} {version(name)} ({error}): {FIX}"


@contextlib.contextmanager
def compiling() -> Iterator[None]:
    """Hold this while a process may compile numba kernels: librosa's first use in a process
    (librosa loads its modules lazily, each compiling its kernels as it loads, into NUMBA_CACHE_DIR
    or else `__pycache__` beside librosa's sources: one cache for every process).

    numba's cache is not safe across processes: each picks the next free entry number of a
    function for its own signature, so two compiling at once can each write entry N for another
    signature, and the index then points at the wrong machine code (every later process that loads
    it segfaulted). Under this exclusive lock, kept in the cache folder (or the temporary folder),
    one process compiles and writes; the others wait and then load what it wrote."""
    import fcntl

    cache = os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir()
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, COMPILE_LOCK), "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)
