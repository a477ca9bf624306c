"""What the numbers were measured on: a speed figure means nothing without the machine and versions."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata

import psutil

LIBRARIES = (
    "featurestore", "numpy", "torch", "torchaudio", "librosa", "soundfile", "soxr", "zarr", "numcodecs",
    "dask", "distributed", "pyarrow", "pandas", "fsspec", "s3fs", "moto", "psutil",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str]:
    import soundfile

    load1, load5, load15 = os.getloadavg()
    return {
        "CPU": cpu_model(),
        "cores (logical / physical)": f"{psutil.cpu_count()} / {psutil.cpu_count(logical=False)}",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "libsndfile": soundfile.__libsndfile_version__,
        "load average at start (1 / 5 / 15 min)": f"{load1:.2f} / {load5:.2f} / {load15:.2f}",
    }


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
