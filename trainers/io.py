"""Atomic writes for everything a run directory holds: a crash never leaves half a file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.locations import atomic_path


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become Python ones, NaN becomes null."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and x != x:
        return None
    return x


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
