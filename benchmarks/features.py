"""Float32 features straight from the project's per-clip maths, before any storage codec.

The footprint benchmark needs the values a store *would* hold, unrounded, to measure what each
codec costs in bytes and in error; it takes them from the same decode and extractor the build uses.
"""

from __future__ import annotations

import numpy as np

from featurestore.spec import FeatureSpec


def float32_features(paths: list[str], spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Stacked (clip, ...) float32 arrays for every feature of `spec`."""
    from featurestore.audio import decode
    from featurestore.features.extract import FeatureExtractor

    extract = FeatureExtractor(spec)
    per_clip = [extract(decode(p, spec.decoding).samples) for p in paths]
    return {name: np.stack([c[name] for c in per_clip]).astype(np.float32) for name in spec.names}
