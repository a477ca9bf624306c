"""What one stored array is: the one class the store, the build, the statistics, the loaders and
the model zoo ask about it.

A feature kind is a subclass of `Feature` with a unique `kind` and a frozen dataclass `Settings`
of its own (`NoSettings` when it has none): the settings a spec gives each array of that kind,
validated, hashed and recorded with the array. An instance is one array of a spec: its `name`,
its `settings` and the spec's `decoding`. It says how each clip's array is shaped and named,
which dtype it is stored in, along which dimension normalisation statistics are kept (None: not
normalised), how a model sees it (`layout`), and computes one clip's values from the decoded
samples. The built-in kinds live in `featurestore.features.builtin`; others plug in through an
entry point (`featurestore.features.registry`) and can be checked with `featurestore.testing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from featurestore.settings import FORBID

if TYPE_CHECKING:
    from featurestore.audio.settings import Decoding

# How trainers read a feature: (bands, frames) images cropped along frames; (crops, samples)
# waveforms cropped along samples; (segments, values) rows, one per segment (a sample each, or
# flattened), those past the decoded audio left out.
LAYOUTS = ("spectrogram", "waveform", "segments")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a kind that has none."""

    __pydantic_config__ = FORBID


class Feature:
    kind: ClassVar[str]
    Settings: ClassVar[type] = NoSettings  # a frozen dataclass; FORBID refuses unknown keys
    dims: ClassVar[tuple[str, ...]]  # of one clip's array (the store prepends "clip")
    dtype: ClassVar[str] = "float16"  # stored dtype; float16 values are clamped to its range
    stats_dim: ClassVar[str | None] = None  # normalisation statistics keep this dimension
    layout: ClassVar[str] = "spectrogram"
    requires: ClassVar[tuple[str, ...]] = ()  # modules it imports: checked on every worker before a build
    long_name: ClassVar[str] = ""  # CF attributes of the stored array (xarray shows them)
    units: ClassVar[str | None] = None  # UDUNITS string; None where the values mix units
    # Quantizable kinds (`--codec quantized:STEP[:STEP2]`): the position of this kind's step in the
    # codec name, and the largest magnitude its values can take (which sizes the stored integers).
    codec_step: ClassVar[int | None] = None
    max_magnitude: ClassVar[float] = math.inf

    def __init__(self, name: str, settings: Any, decoding: Decoding):
        self.name, self.settings, self.decoding = name, settings, decoding

    @classmethod
    def check(cls, settings: Any, decoding: Decoding) -> None:
        """Raise a UserError when `settings` cannot make this feature from clips decoded with `decoding`."""

    def clip_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def compute(self, samples: np.ndarray, cache: dict[Any, Any]) -> np.ndarray:
        """One clip's values, float32, shaped `clip_shape()`, from its `decoding.n_samples` float32 samples.

        `cache` is shared by the arrays of one clip, so that one can reuse another's work (the
        MFCCs take the log-mel computed for a log-mel array with the same settings): key entries
        by what they depend on.
        """
        raise NotImplementedError

    def module(self) -> Any:
        """A `torch.nn.Module` computing the values from a (..., samples) waveform tensor on any
        device (the store computes with `compute`; `featurestore.testing` checks they agree), or
        None where the kind has none."""
        return None

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.settings!r})"


def frames(n_samples: int, hop: int) -> int:
    """Frames of a centred STFT over `n_samples` (librosa's and torchaudio's convention)."""
    return 1 + n_samples // hop
