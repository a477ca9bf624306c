"""Audio in: one file to the decoding settings' mono, fixed-length float32 clip (libsndfile, soxr).

`decode`, `resolve`, `Decoded` and `AudioError` load on first use, so that importing the package
costs nothing until a clip is decoded.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"decode": "featurestore.audio.decoder", "resolve": "featurestore.audio.decoder",
            "Decoded": "featurestore.audio.decoder", "AudioError": "featurestore.errors"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'featurestore.audio' has no attribute {name!r}")
