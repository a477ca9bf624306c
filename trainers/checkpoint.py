"""Checkpoints: plain dicts of state dicts, tensors and numbers, loadable with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from featurestore.errors import UserError
from trainers.io import atomic_path

BEST, LAST = "best.pt", "last.pt"


def save(path: Path, state: dict[str, Any]) -> None:
    """Whole or not at all (temp file + rename); a full disk is the user's to fix, in one line."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as RuntimeError
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise UserError(f"cannot write the checkpoint {path} ({why}); the previous one, if any, is intact: free "
                        "space or choose another --out, then resume with --resume") from None


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there: was the run trained to the end of an epoch?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: the user's to fix, not a bug
        raise UserError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}): retrain or restore the file"
        ) from None
