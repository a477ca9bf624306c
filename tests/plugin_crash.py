"""A feature kind with a native bug, installed as a third party's plug-in would be: it
segfaults its process (a real SIGSEGV, through ctypes) on a silent clip and computes the RMS of
any other. `tests/test_faults.py` builds a shard holding one silent clip with it."""

from __future__ import annotations

import ctypes

import numpy as np

from featurestore.features import Feature


class Crashy(Feature):
    kind = "crashy"
    dims = ("value",)
    long_name = "RMS, or a segmentation fault on silence"

    def clip_shape(self) -> tuple[int, ...]:
        return (1,)

    def compute(self, samples: np.ndarray, cache: dict) -> np.ndarray:
        if not np.any(samples):
            ctypes.string_at(0)  # reads address 0: the process dies of SIGSEGV
        return np.array([np.sqrt(np.mean(samples.astype(np.float64) ** 2))], dtype=np.float32)
