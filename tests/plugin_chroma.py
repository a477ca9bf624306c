"""A feature kind the package does not have, written as a third party would: chroma from librosa,
with a setting of its own (`n_chroma`).

`tests/test_feature_plugin.py` installs this file as a plug-in through the `featurestore.features`
entry point group, checks it with the conformance suite `featurestore.testing.FeatureTests`, and
builds, inspects, verifies and trains on it with the unmodified package.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from featurestore.features import Feature, frames
from featurestore.settings import FORBID, Field


@dataclass(frozen=True)
class ChromaSettings:
    __pydantic_config__ = FORBID
    n_fft: Annotated[int, Field(ge=16, le=2**16)] = 2048
    hop: Annotated[int, Field(ge=1, le=2**16)] = 1024
    n_chroma: Annotated[int, Field(ge=1, le=96)] = 12  # pitch classes per octave


class Chroma(Feature):
    """librosa.feature.chroma_stft: `n_chroma` pitch-class energies per frame, frames as the log-mel's."""

    kind = "chroma"
    Settings = ChromaSettings
    dims = ("pitch_class", "frame")
    stats_dim = "pitch_class"
    requires = ("librosa",)

    def clip_shape(self) -> tuple[int, ...]:
        return (self.settings.n_chroma, frames(self.decoding.n_samples, self.settings.hop))

    def compute(self, samples: np.ndarray, cache: dict) -> np.ndarray:
        import librosa

        with warnings.catch_warnings():  # silence has no pitch to estimate the tuning from; its chroma is 0
            warnings.filterwarnings("ignore", message="Trying to estimate tuning from empty frequency set")
            return librosa.feature.chroma_stft(y=samples, sr=self.decoding.sample_rate, n_fft=self.settings.n_fft,
                                               hop_length=self.settings.hop, n_chroma=self.settings.n_chroma)
