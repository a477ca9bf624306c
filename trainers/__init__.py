"""Trainers: stream a feature store into PyTorch models.

The public API (everything else may change between versions):

- `StoreDataset(store, split=..., feature=..., crop_frames=...)`: a map-style torch Dataset of
  `(x, y)` over one split's usable clips (`trainers.datasets`).
- `StreamingStoreDataset(...)`: the same as an iterable for stores larger than memory;
  epoch-seeded, split across DataLoader workers and distributed ranks.
- `StoreDataModule(...)`: the splits as a PyTorch Lightning data module (`trainers.lightning`).

The `featurestore train`, `evaluate`, `predict`, `tune` and `explore` commands are built on them.
Names load on first use, so that importing the package stays instant.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StoreDataset": "trainers.datasets",
    "StreamingStoreDataset": "trainers.datasets",
    "StoreDataModule": "trainers.lightning",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")
