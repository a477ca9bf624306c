"""A feature kind the package does not have, written as a third party would: chroma from librosa.

`tests/test_feature_plugin.py` installs this file as a plug-in through the `featurestore.features`
entry point group and builds, inspects, verifies and trains on it with the unmodified package.
"""

from __future__ import annotations

import numpy as np

from featurestore.features import Feature


class Chroma(Feature):
    """librosa.feature.chroma_stft: 12 pitch-class energies per frame, frames as the log-mel's."""

    name = "chroma"
    dims = ("pitch_class", "frame")
    settings = ("n_fft", "hop")
    stats_dim = "pitch_class"
    requires = ("librosa",)

    def clip_shape(self) -> tuple[int, ...]:
        return (12, self.spec.n_frames)

    def compute(self, samples: np.ndarray, cache: dict) -> np.ndarray:
        import librosa

        return librosa.feature.chroma_stft(y=samples, sr=self.spec.sample_rate, n_fft=self.spec.n_fft,
                                           hop_length=self.spec.hop)
