"""Broken installs made for real: a package on PYTHONPATH that shadows the installed one and
fails to import the way the real failure does."""

from __future__ import annotations

from pathlib import Path

# What each library raises when its compiled part cannot load, as measured on broken installs:
# torchaudio 2.11.1 under torch 2.11.0-2.13.0, and soundfile without libsndfile.
IMPORT_ERRORS = {
    "torchaudio": "Could not load this library: {site}/torchaudio/lib/libtorchaudio.so",
    "soundfile": "cannot load library 'libsndfile.so': libsndfile.so: cannot open shared object file: "
                 "No such file or directory",
}


def broken_package(folder: Path, name: str) -> Path:
    """A folder to put first on PYTHONPATH: `import NAME` raises the OSError the real break raises."""
    package = folder / name
    package.mkdir(parents=True)
    message = IMPORT_ERRORS[name].format(site=folder)
    (package / "__init__.py").write_text(f"raise OSError({message!r})\n")
    return folder
