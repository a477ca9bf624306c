"""Turn one decoded clip into the arrays the store keeps for it.

Built once per worker process, then called once per clip on the build's hot path. Each array's
feature computes its own values (`featurestore.features`); they share a per-clip cache, so a
log-mel is computed once for every array that needs it and the MFCCs are taken from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from featurestore.environment import COMPILING, compiling
from featurestore.errors import AudioError
from featurestore.spec import FeatureSpec
from featurestore.stages import lap

FLOAT16_MAX = float(np.finfo(np.float16).max)


class FeatureExtractor:
    """`extractor(samples) -> {array: float32 values}` for the arrays `names` of `spec` (default: all).

    Shapes are each feature's `clip_shape()`. Values are finite and, for float16-stored
    features, clamped to float16's range; a clip whose features are not finite raises
    `AudioError`. Torch's thread count is the caller's business (one per worker in a build).
    The first call of an extractor whose features use librosa holds `environment.compiling()`:
    that is when librosa compiles, and two processes compiling at once corrupt numba's cache.
    """

    def __init__(self, spec: FeatureSpec, names: Iterable[str] | None = None):
        self.spec = spec
        self.features = {name: spec.feature(name) for name in (spec.names if names is None else names)}
        self._compiles = any(lib in f.requires for f in self.features.values() for lib in COMPILING)

    def __call__(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        if self._compiles:
            with compiling():
                out = self._compute(samples)
            self._compiles = False
            return out
        return self._compute(samples)

    def _compute(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if samples.shape != (self.spec.n_samples,):
            raise ValueError(f"expected {self.spec.n_samples} samples (the spec's clip), got shape {samples.shape}")
        cache: dict = {}
        out = {}
        for name, feature in self.features.items():
            values = np.ascontiguousarray(feature.compute(samples, cache), dtype=np.float32)
            lap(feature.kind)
            if values.shape != feature.clip_shape():
                raise ValueError(f"feature {name} computed shape {values.shape}, declares {feature.clip_shape()}")
            # min and max propagate NaN and are infinite where any value is: two passes that
            # allocate nothing, where isfinite() and an unconditional clip cost four
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise AudioError(f"non-finite feature values ({name})")
            if feature.dtype == "float16" and max(high, -low) > FLOAT16_MAX:
                np.clip(values, -FLOAT16_MAX, FLOAT16_MAX, out=values)
            out[name] = values
            lap("checks")
        return out
