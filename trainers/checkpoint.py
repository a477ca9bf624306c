"""Checkpoints: plain dicts of state dicts, tensors and numbers, loadable with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from featurestore.errors import UserError
from trainers.io import atomic_path

BEST, LAST = "best.pt", "last.pt"


def save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there: was the run trained to the end of an epoch?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: the user's to fix, not a bug
        raise UserError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}): retrain or restore the file"
        ) from None
