"""What the forkserver of local build workers imports once, so each worker it forks starts with
it loaded instead of importing it itself (torch and torchaudio alone are seconds of CPU per
process): the task code, the feature libraries and the decoder's compiled callbacks.

Nothing here starts a thread or computes, so forking stays safe. A library that fails to load
is left for the workers' own check (`builder.cluster.check_workers`), which names it in one line.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os

SERVER = "FEATURESTORE_FORKSERVER"  # set only while the forkserver is launched (`builder.cluster`)

if os.environ.pop(SERVER, None):  # in the forkserver itself, not in what it forks
    # It exits when the program that launched it does; tearing torch down would take a second,
    # during which it still holds the program's stdout and stderr (a pipe reading them waits).
    atexit.register(os._exit, 0)

for _name in ("distributed", "numpy", "torch", "torchaudio", "soundfile", "soxr", "zarr", "numcodecs",
              "featurestore.builder.task", "featurestore.features.builtin"):
    with contextlib.suppress(Exception):
        importlib.import_module(_name)

with contextlib.suppress(Exception):
    from featurestore.audio.decoder import _in_memory

    _in_memory()  # loads (or compiles, under the compile lock) the in-memory MP3 reader's callbacks
