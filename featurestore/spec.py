"""The feature spec: every setting that changes a stored value, frozen and hashed.

A store records its spec and the spec's hash; a build, a resume, a trainer or `predict` refuses
a store whose hash differs from the spec it was asked for, so features computed with other
settings can never be mixed silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from featurestore.codecs import DEFAULT as DEFAULT_CODEC
from featurestore.errors import UserError

# the settings every feature of a store shares (the limits decide which files fail)
DECODING = ("sample_rate", "duration", "offset", "max_channels", "max_input_rate")


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute from each clip, and how.

    Times are in seconds, sizes in samples at `sample_rate`. `duration` is the length every
    clip is truncated or zero-padded to, starting `offset` seconds into the file.
    """

    features: tuple[str, ...] = ("logmel", "mfcc", "waveform")
    sample_rate: int = 16_000
    duration: float = 20.0
    offset: float = 0.0
    # Decode memory is channels x rate x seconds, and libsndfile accepts up to 1024 channels at
    # any rate: a 16-KB sparse WAV declaring 64 channels at 512 kHz would take 5.6 GB for 20 s.
    # These bound it (16 x 384 kHz x 20 s = 0.5 GB of float32) before a sample is read.
    max_channels: int = 16
    max_input_rate: int = 384_000
    n_fft: int = 2048
    hop: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    n_mfcc: int = 20
    crop_samples: int = 2**16
    crops: int = 1
    segment_seconds: float = 3.0  # handcrafted descriptors: one row per segment
    codec: str = DEFAULT_CODEC  # storage of the arrays (featurestore.codecs); "quantized:STEP" is lossy-bounded

    def __post_init__(self) -> None:
        from featurestore.features import available

        kinds = available()
        unknown = [f for f in self.features if f not in kinds]
        if unknown or not self.features:
            raise UserError(
                f"unknown feature(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(kinds)} "
                "(a plug-in's feature needs its package installed where this runs)"
            )
        if len(set(self.features)) != len(self.features):
            raise UserError(f"feature list {','.join(self.features)} names a feature twice")
        positive = {
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "n_mels": self.n_mels,
            "n_mfcc": self.n_mfcc,
            "crop_samples": self.crop_samples,
            "crops": self.crops,
            "segment_seconds": self.segment_seconds,
            "max_channels": self.max_channels,
            "max_input_rate": self.max_input_rate,
        }
        bad = [k for k, v in positive.items() if not v > 0]
        if bad:
            raise UserError(f"spec values must be positive: {', '.join(bad)}")
        if self.offset < 0:
            raise UserError("--offset must be >= 0 seconds")
        nyquist = self.sample_rate / 2
        if self.f_max is not None and not (self.f_min < self.f_max <= nyquist):
            raise UserError(f"--f-max must lie in ({self.f_min}, {nyquist}] Hz")
        for name in self.features:
            kinds[name].check(self)

    # Derived sizes: the store's array shapes follow from these alone.
    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """Frames of a centred STFT over `n_samples` (librosa's and torchaudio's convention)."""
        return 1 + self.n_samples // self.hop

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def n_segments(self) -> int:
        return max(1, self.n_samples // self.segment_samples)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise UserError(f"feature spec has unknown field(s) {', '.join(extra)}: written by a newer version?")
        d = dict(d)
        if "features" in d:
            d["features"] = tuple(d["features"])
        return cls(**d)

    def hash(self) -> str:
        """Stable across processes and Python versions: SHA-256 of the canonical JSON."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "FeatureSpec":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def feature(self, name: str):  # -> featurestore.features.Feature
        """The feature kind `name` made with these settings."""
        from featurestore.features import feature_class

        return feature_class(name)(self)

    def array_settings(self, name: str) -> dict[str, Any]:
        """The settings one feature's values depend on: the shared decoding and its own."""
        cls = self.feature(name)
        return {"feature": name, **{k: getattr(self, k) for k in (*DECODING, *cls.settings)}}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    spec: FeatureSpec = field(default_factory=FeatureSpec)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "mtat-seed",
            "MagnaTagATune report: 16 kHz, first 20 s, n_fft 2048, hop 1024, 80 mels, 20 MFCCs, one waveform crop",
            FeatureSpec(
                features=("logmel", "mfcc", "waveform"),
                sample_rate=16_000, duration=20.0, n_fft=2048, hop=1024, n_mels=80, n_mfcc=20,
                crop_samples=2**16, crops=1,
            ),
        ),
        Preset(
            "gtzan",
            "GTZAN report: 22,050 Hz, 30 s, n_fft 2048, hop 512, 128 mels, 20 MFCCs",
            FeatureSpec(
                features=("logmel", "mfcc"),
                sample_rate=22_050, duration=30.0, n_fft=2048, hop=512, n_mels=128, n_mfcc=20,
            ),
        ),
        Preset(
            "fma",
            "FMA report: 44.1 kHz, 30 s, n_fft 2048, hop 1024, 128 mels, 20 MFCCs, the whole 30-s waveform "
            "(the trainers draw its 2^18-sample crops at random offsets)",
            FeatureSpec(
                features=("logmel", "mfcc", "waveform"),
                sample_rate=44_100, duration=30.0, n_fft=2048, hop=1024, n_mels=128, n_mfcc=20,
                crop_samples=44_100 * 30, crops=1,
            ),
        ),
        Preset(
            "handcrafted",
            "GTZAN features_3_sec table: 57 librosa descriptors per 3-s segment, 22,050 Hz, 30 s",
            FeatureSpec(
                features=("handcrafted",),
                sample_rate=22_050, duration=30.0, n_fft=2048, hop=512, n_mels=128, n_mfcc=20,
                segment_seconds=3.0,
            ),
        ),
    )
}


def preset(name: str) -> FeatureSpec:
    try:
        return PRESETS[name].spec
    except KeyError:
        raise UserError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}") from None
