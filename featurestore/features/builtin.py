"""The four built-in feature kinds: log-mel, MFCC, waveform crops, the GTZAN descriptors.

The maths lives in `featurestore.transforms` (torch modules shared with predict and the GPU
path) and `featurestore.handcrafted` (librosa); each class here says what its array is and
calls it. Torch modules are built once per process and setting, and librosa is imported only
by processes that compute or read the descriptors.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from featurestore.errors import UserError
from featurestore.features.base import Feature

MEL_SETTINGS = ("n_fft", "hop", "n_mels", "f_min", "f_max")


@cache
def _logmel_module(spec):
    """One log-mel module per process and spec (it holds the window and the filterbank)."""
    from featurestore.transforms import LogMel

    return LogMel(spec).eval()


@cache
def _dct(n_mfcc: int, n_mels: int):
    """(n_mels, n_mfcc): the same matrix as scipy.fft.dct(type=2, norm="ortho"), first n_mfcc rows."""
    import torchaudio

    return torchaudio.functional.create_dct(n_mfcc, n_mels, norm="ortho")


def _logmel(spec, samples: np.ndarray, cache: dict[str, Any]):
    """The clip's log-mel tensor, computed once per clip whichever feature asks first."""
    if "logmel" not in cache:
        import torch

        with torch.inference_mode():
            cache["logmel"] = _logmel_module(spec)(torch.from_numpy(samples))
    return cache["logmel"]


class LogMel(Feature):
    """Log-mel power spectrogram in dB, librosa's conventions (see featurestore.transforms)."""

    name = "logmel"
    dims = ("mel", "frame")
    long_name = "log-mel power spectrogram (librosa power_to_db: 10 log10 of power, floor -100 dB)"
    units = "dB"
    settings = MEL_SETTINGS
    stats_dim = "mel"

    def clip_shape(self) -> tuple[int, ...]:
        return (self.spec.n_mels, self.spec.n_frames)

    def compute(self, samples: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
        return _logmel(self.spec, samples, cache).numpy()


class MFCC(Feature):
    """Orthonormal DCT-II of the log-mel (the MFCC axis is "coefficient": xarray would make an
    array named like its own dimension a coordinate)."""

    name = "mfcc"
    dims = ("coefficient", "frame")
    long_name = "MFCC: orthonormal DCT-II of the log-mel"
    units = "dB"
    settings = (*MEL_SETTINGS, "n_mfcc")
    stats_dim = "coefficient"

    @classmethod
    def check(cls, spec) -> None:
        if spec.n_mfcc > spec.n_mels:
            raise UserError(f"--n-mfcc {spec.n_mfcc} exceeds --n-mels {spec.n_mels}: MFCCs are a DCT of the mel bands")

    def clip_shape(self) -> tuple[int, ...]:
        return (self.spec.n_mfcc, self.spec.n_frames)

    def compute(self, samples: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.matmul(_dct(self.spec.n_mfcc, self.spec.n_mels).T, _logmel(self.spec, samples, cache)).numpy()


def crop_starts(spec) -> np.ndarray:
    """First sample of each waveform crop: `crops` crops evenly spaced from the clip's start to
    its end (start_i = round(i·(n_samples − crop_samples)/(crops − 1))); a single crop is the
    centre crop, the one the trainers evaluate on."""
    room = spec.n_samples - spec.crop_samples
    if spec.crops == 1:
        return np.array([room // 2])
    return np.array([round(i * room / (spec.crops - 1)) for i in range(spec.crops)])


class Waveform(Feature):
    """`crops` windows of `crop_samples` samples, evenly spaced over the clip."""

    name = "waveform"
    dims = ("crop", "sample")
    long_name = "waveform crops, mono, at the store's sample rate (full scale 1)"
    units = "1"
    settings = ("crop_samples", "crops")
    layout = "waveform"

    @classmethod
    def check(cls, spec) -> None:
        if spec.crop_samples > spec.n_samples:
            raise UserError(f"--crop-samples {spec.crop_samples} is longer than the clip ({spec.n_samples} samples "
                            f"at {spec.sample_rate} Hz for {spec.duration} s)")

    def clip_shape(self) -> tuple[int, ...]:
        return (self.spec.crops, self.spec.crop_samples)

    def compute(self, samples: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
        return np.stack([samples[s : s + self.spec.crop_samples] for s in crop_starts(self.spec)])


class Handcrafted(Feature):
    """The 57 descriptors of GTZAN's features_3_sec table, per `segment_seconds` segment."""

    name = "handcrafted"
    dims = ("segment", "descriptor")
    long_name = "handcrafted descriptors per segment (GTZAN features_3_sec; units per descriptor)"
    dtype = "float32"
    settings = ("segment_seconds",)
    stats_dim = "descriptor"
    layout = "segments"
    requires = ("librosa",)

    def clip_shape(self) -> tuple[int, ...]:
        return (self.spec.n_segments, len(self.coordinates()["descriptor"]))

    def coordinates(self) -> dict[str, list[str]]:
        from featurestore.handcrafted import DESCRIPTOR_NAMES  # imports librosa: only where needed

        return {"descriptor": list(DESCRIPTOR_NAMES)}

    def compute(self, samples: np.ndarray, cache: dict[str, Any]) -> np.ndarray:
        from featurestore.handcrafted import describe

        return describe(samples, self.spec)


BUILTIN = (LogMel, MFCC, Waveform, Handcrafted)
