"""What one stored feature is: the one class the store, the build, the statistics, the loaders
and the model zoo ask about it.

A feature kind is a subclass of `Feature` with a unique `name`, made with the build's
`FeatureSpec` (it reads the settings it names in `settings`). It says how each clip's array is
shaped and named, which dtype it is stored in, along which dimension normalisation statistics
are kept (None: not normalised), how a model sees it (`layout`), and computes one clip's values
from the decoded samples. The built-in kinds live in `featurestore.features.builtin`; others
plug in through an entry point (see `featurestore.features.registry`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from featurestore.spec import FeatureSpec

# How trainers read a feature: (bands, frames) images cropped along frames; (crops, samples)
# waveforms cropped along samples; (segments, values) rows, one per `spec.segment_seconds` segment
# (a sample each, or flattened), those past the decoded audio left out.
LAYOUTS = ("spectrogram", "waveform", "segments")


class Feature:
    name: ClassVar[str]
    dims: ClassVar[tuple[str, ...]]  # of one clip's array (the store prepends "clip")
    dtype: ClassVar[str] = "float16"  # stored dtype; float16 values are clamped to its range
    settings: ClassVar[tuple[str, ...]] = ()  # FeatureSpec fields the values depend on, besides decoding
    stats_dim: ClassVar[str | None] = None  # normalisation statistics keep this dimension
    layout: ClassVar[str] = "spectrogram"
    requires: ClassVar[tuple[str, ...]] = ()  # modules it imports: checked on every worker before a build
    long_name: ClassVar[str] = ""  # CF attributes of the stored array (xarray shows them)
    units: ClassVar[str | None] = None  # UDUNITS string; None where the values mix units

    def __init__(self, spec: FeatureSpec):
        self.spec = spec

    @classmethod
    def check(cls, spec: FeatureSpec) -> None:
        """Raise a UserError when `spec` cannot make this feature (called by FeatureSpec itself)."""

    def clip_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def compute(self, samples: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
        """One clip's values, float32, shaped `clip_shape()`, from its `spec.n_samples` float32 samples.

        `cache` is shared by the features of one clip, so that one can reuse another's work (the
        MFCCs take the log-mel computed for the log-mel array).
        """
        raise NotImplementedError

    def coordinates(self) -> dict[str, list[str]]:
        """Names along a dimension, where it has them (the 57 descriptor names): kept in the store."""
        return {}

    # --- derived -------------------------------------------------------------------------------

    @property
    def normalised(self) -> bool:
        return self.stats_dim is not None

    @property
    def stats_axis(self) -> int:
        """Axis of the stored (clip, *dims) array that the statistics keep."""
        return 1 + self.dims.index(self.stats_dim)

    @property
    def stats_size(self) -> int:
        return self.clip_shape()[self.stats_axis - 1]

    @property
    def clip_bytes(self) -> int:
        return math.prod(self.clip_shape()) * np.dtype(self.dtype).itemsize
