"""The four built-in feature kinds: log-mel, MFCC, waveform crops, the GTZAN descriptors.

The maths lives in `featurestore.maths` (torch modules shared with predict, and librosa for the
descriptors); each class here says what its array is, which settings it takes, and calls it.
Torch modules are built once per process and setting, and librosa is imported only by processes
that compute or read the descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Annotated, Any

import numpy as np

from featurestore.errors import UserError
from featurestore.features.base import Feature, frames
from featurestore.settings import FORBID, Field

@dataclass(frozen=True)
class MelSettings:
    """A log-mel spectrogram's settings (librosa's conventions): FFT size and hop in samples,
    mel bands, and the band edges in Hz (f_max None: the Nyquist frequency)."""

    __pydantic_config__ = FORBID
    n_fft: Annotated[int, Field(ge=16, le=2**16)] = 2048
    hop: Annotated[int, Field(ge=1, le=2**16)] = 1024
    n_mels: Annotated[int, Field(ge=1, le=1024)] = 80
    f_min: Annotated[float, Field(ge=0.0)] = 0.0
    f_max: Annotated[float, Field(gt=0.0)] | None = None


@dataclass(frozen=True)
class MFCCSettings(MelSettings):
    """The log-mel's settings and the number of coefficients kept."""

    n_mfcc: Annotated[int, Field(ge=1, le=1024)] = 20


@dataclass(frozen=True)
class WaveformSettings:
    """`crops` windows of `crop_samples` samples, evenly spaced over the clip."""

    __pydantic_config__ = FORBID
    crop_samples: Annotated[int, Field(ge=1, le=2**27)] = 2**16
    crops: Annotated[int, Field(ge=1, le=256)] = 1


@dataclass(frozen=True)
class SegmentSettings:
    """The descriptors' segment length in seconds."""

    __pydantic_config__ = FORBID
    segment_seconds: Annotated[float, Field(gt=0.0, le=3600.0)] = 3.0


def mel_part(settings: MelSettings) -> MelSettings:
    """The log-mel settings inside any mel-based kind's settings (what its log-mel depends on)."""
    if type(settings) is MelSettings:
        return settings
    return MelSettings(**{f.name: getattr(settings, f.name) for f in fields(MelSettings)})


def check_mel(settings: MelSettings, decoding) -> None:
    nyquist = decoding.sample_rate / 2
    if settings.f_max is not None and not settings.f_min < settings.f_max <= nyquist:
        raise UserError(f"f_max {settings.f_max:g} Hz must lie in (f_min {settings.f_min:g}, {nyquist:g}] Hz")
    if settings.f_min >= nyquist:
        raise UserError(f"f_min {settings.f_min:g} Hz must lie below the Nyquist frequency ({nyquist:g} Hz)")


@cache
def _logmel_module(sample_rate: int, mel: MelSettings):
    """One log-mel module per process and setting (it holds the window and the filterbank)."""
    from featurestore.maths.mel import LogMel

    return LogMel(sample_rate, mel.n_fft, mel.hop, mel.n_mels, mel.f_min, mel.f_max).eval()


def _logmel(feature: Feature, samples: np.ndarray, cache: dict[Any, Any]):
    """The clip's log-mel tensor for the feature's mel settings, computed once per clip whichever
    array asks first."""
    mel = mel_part(feature.settings)
    key = ("logmel", feature.decoding.sample_rate, mel)
    if key not in cache:
        import torch

        with torch.inference_mode():
            cache[key] = _logmel_module(feature.decoding.sample_rate, mel)(torch.from_numpy(samples))
    return cache[key]


class LogMel(Feature):
    """Log-mel power spectrogram in dB, librosa's conventions (see featurestore.maths.mel)."""

    kind = "logmel"
    Settings = MelSettings
    dims = ("mel", "frame")
    long_name = "log-mel power spectrogram (librosa power_to_db: 10 log10 of power, floor -100 dB)"
    units = "dB"
    stats_dim = "mel"
    codec_step = 0
    max_magnitude = 400.0  # audio in [-1, 1] stays within about -100..+70 dB

    @classmethod
    def check(cls, settings: MelSettings, decoding) -> None:
        check_mel(settings, decoding)

    def clip_shape(self) -> tuple[int, ...]:
        return (self.settings.n_mels, frames(self.decoding.n_samples, self.settings.hop))

    def compute(self, samples: np.ndarray, cache: dict[Any, Any]) -> np.ndarray:
        return _logmel(self, samples, cache).numpy()

    def module(self) -> Any:
        from featurestore.maths.mel import LogMel as Module

        s = self.settings
        return Module(self.decoding.sample_rate, s.n_fft, s.hop, s.n_mels, s.f_min, s.f_max)


class MFCC(Feature):
    """Orthonormal DCT-II of the log-mel (the MFCC axis is "coefficient": xarray would make an
    array named like its own dimension a coordinate)."""

    kind = "mfcc"
    Settings = MFCCSettings
    dims = ("coefficient", "frame")
    long_name = "MFCC: orthonormal DCT-II of the log-mel"
    units = "dB"
    stats_dim = "coefficient"
    codec_step = 1
    max_magnitude = 200.0 * 16  # an orthonormal DCT keeps a frame's L2 norm: sqrt(256 bands) x 200 dB

    @classmethod
    def check(cls, settings: MFCCSettings, decoding) -> None:
        check_mel(settings, decoding)
        if settings.n_mfcc > settings.n_mels:
            raise UserError(f"n_mfcc {settings.n_mfcc} exceeds n_mels {settings.n_mels}: MFCCs are a DCT of the "
                            "mel bands")

    def clip_shape(self) -> tuple[int, ...]:
        return (self.settings.n_mfcc, frames(self.decoding.n_samples, self.settings.hop))

    def compute(self, samples: np.ndarray, cache: dict[Any, Any]) -> np.ndarray:
        import torch

        from featurestore.maths.mel import dct_matrix, mfcc_from_logmel

        with torch.inference_mode():
            dct = dct_matrix(self.settings.n_mfcc, self.settings.n_mels)
            return mfcc_from_logmel(dct, _logmel(self, samples, cache)).numpy()

    def module(self) -> Any:
        from featurestore.maths.mel import MFCC as Module

        s = self.settings
        return Module(self.decoding.sample_rate, s.n_fft, s.hop, s.n_mels, s.n_mfcc, s.f_min, s.f_max)


def crop_starts(settings: WaveformSettings, n_samples: int) -> np.ndarray:
    """First sample of each waveform crop: `crops` crops evenly spaced from the clip's start to
    its end (start_i = round(i·(n_samples − crop_samples)/(crops − 1))); a single crop is the
    centre crop, the one the trainers evaluate on."""
    room = n_samples - settings.crop_samples
    if settings.crops == 1:
        return np.array([room // 2])
    return np.array([round(i * room / (settings.crops - 1)) for i in range(settings.crops)])


class Waveform(Feature):
    """`crops` windows of `crop_samples` samples, evenly spaced over the clip."""

    kind = "waveform"
    Settings = WaveformSettings
    dims = ("crop", "sample")
    long_name = "waveform crops, mono, at the store's sample rate (full scale 1)"
    units = "1"
    layout = "waveform"

    @classmethod
    def check(cls, settings: WaveformSettings, decoding) -> None:
        if settings.crop_samples > decoding.n_samples:
            raise UserError(f"crop_samples {settings.crop_samples} is longer than the clip ({decoding.n_samples} "
                            f"samples at {decoding.sample_rate} Hz for {decoding.duration} s)")

    def clip_shape(self) -> tuple[int, ...]:
        return (self.settings.crops, self.settings.crop_samples)

    def starts(self) -> np.ndarray:
        return crop_starts(self.settings, self.decoding.n_samples)

    def compute(self, samples: np.ndarray, cache: dict[Any, Any]) -> np.ndarray:
        return np.stack([samples[s : s + self.settings.crop_samples] for s in self.starts()])


class Handcrafted(Feature):
    """The 57 descriptors of GTZAN's features_3_sec table, per `segment_seconds` segment."""

    kind = "handcrafted"
    Settings = SegmentSettings
    dims = ("segment", "descriptor")
    long_name = "handcrafted descriptors per segment (GTZAN features_3_sec; units per descriptor)"
    dtype = "float32"
    stats_dim = "descriptor"
    layout = "segments"
    requires = ("librosa",)

    @property
    def segment_samples(self) -> int:
        return int(round(self.settings.segment_seconds * self.decoding.sample_rate))

    @property
    def n_segments(self) -> int:
        from featurestore.maths.descriptors import n_segments

        return n_segments(self.decoding.n_samples, self.segment_samples)

    def clip_shape(self) -> tuple[int, ...]:
        return (self.n_segments, len(self.coordinates()["descriptor"]))

    def coordinates(self) -> dict[str, list[str]]:
        from featurestore.maths.descriptors import DESCRIPTOR_NAMES  # imports librosa: only where needed

        return {"descriptor": list(DESCRIPTOR_NAMES)}

    def compute(self, samples: np.ndarray, cache: dict[Any, Any]) -> np.ndarray:
        from featurestore.maths.descriptors import describe

        return describe(samples, self.decoding.sample_rate, self.segment_samples)

    def table(self, values: np.ndarray, paths: list[str], labels: list[list[str]]) -> Any:
        """GTZAN's features_3_sec table: one row per segment of each clip of `values` (clips,
        segments, descriptors), named `<stem>.<segment><ext>` after its file."""
        import posixpath

        import pandas as pd

        names = self.coordinates()["descriptor"]
        n_seg = values.shape[1]
        files = [posixpath.splitext(posixpath.basename(p)) for p in paths]  # blues.00000.wav ->
        table = pd.DataFrame(values.reshape(-1, len(names)), columns=names)
        table.insert(0, "filename", [f"{stem}.{j}{ext}" for stem, ext in files for j in range(n_seg)])
        table.insert(1, "length", self.segment_samples)
        table["label"] = np.repeat([";".join(clip) for clip in labels], n_seg)
        return table


BUILTIN = (LogMel, MFCC, Waveform, Handcrafted)
