"""Named specs: the settings of the published setups this toolkit reproduces.

A preset is a spec like any other (`featurestore presets NAME` prints it as TOML, which
`featurestore build --spec` takes back). Each is built on first use, so that listing the names
and descriptions (as `--help` does) imports no feature code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from featurestore.errors import UserError

if TYPE_CHECKING:
    from featurestore.spec import FeatureSpec


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[], FeatureSpec]

    @property
    def spec(self) -> FeatureSpec:
        return _built(self.name)


def _mtat_seed() -> FeatureSpec:
    from featurestore.spec import ArraySpec, Decoding, FeatureSpec
    from featurestore.features.builtin import MelSettings, MFCCSettings, WaveformSettings

    return FeatureSpec(Decoding(sample_rate=16_000, duration=20.0), {
        "logmel": ArraySpec("logmel", MelSettings(n_fft=2048, hop=1024, n_mels=80)),
        "mfcc": ArraySpec("mfcc", MFCCSettings(n_fft=2048, hop=1024, n_mels=80, n_mfcc=20)),
        "waveform": ArraySpec("waveform", WaveformSettings(crop_samples=2**16, crops=1)),
    })


def _gtzan() -> FeatureSpec:
    from featurestore.spec import ArraySpec, Decoding, FeatureSpec
    from featurestore.features.builtin import MelSettings, MFCCSettings

    return FeatureSpec(Decoding(sample_rate=22_050, duration=30.0), {
        "logmel": ArraySpec("logmel", MelSettings(n_fft=2048, hop=512, n_mels=128)),
        "mfcc": ArraySpec("mfcc", MFCCSettings(n_fft=2048, hop=512, n_mels=128, n_mfcc=20)),
    })


def _fma() -> FeatureSpec:
    from featurestore.spec import ArraySpec, Decoding, FeatureSpec
    from featurestore.features.builtin import MelSettings, MFCCSettings, WaveformSettings

    return FeatureSpec(Decoding(sample_rate=44_100, duration=30.0), {
        "logmel": ArraySpec("logmel", MelSettings(n_fft=2048, hop=1024, n_mels=128)),
        "mfcc": ArraySpec("mfcc", MFCCSettings(n_fft=2048, hop=1024, n_mels=128, n_mfcc=20)),
        "waveform": ArraySpec("waveform", WaveformSettings(crop_samples=44_100 * 30, crops=1)),
    })


def _handcrafted() -> FeatureSpec:
    from featurestore.spec import ArraySpec, Decoding, FeatureSpec
    from featurestore.features.builtin import SegmentSettings

    return FeatureSpec(Decoding(sample_rate=22_050, duration=30.0),
                       {"handcrafted": ArraySpec("handcrafted", SegmentSettings(segment_seconds=3.0))})


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mtat-seed", "the MagnaTagATune report: the first 20 s at 16 kHz, 80-band log-mel and 20 MFCCs "
                        "(hop 1024), one centred 2^16-sample waveform crop", _mtat_seed),
    Preset("gtzan", "the GTZAN report: 30 s at 22,050 Hz, 128-band log-mel and 20 MFCCs (hop 512)", _gtzan),
    Preset("fma", "the FMA report: 30 s at 44.1 kHz, 128-band log-mel and 20 MFCCs (hop 1024), the whole "
                  "waveform (the trainers draw its 2^18-sample crops at random offsets)", _fma),
    Preset("handcrafted", "GTZAN's features_3_sec table: 57 librosa descriptors per 3-s segment of 30 s at "
                          "22,050 Hz", _handcrafted),
)}
DEFAULT = "mtat-seed"


@cache
def _built(name: str) -> FeatureSpec:
    return PRESETS[name].make()


def preset(name: str) -> FeatureSpec:
    """The spec of preset `name`; a UserError lists the presets otherwise."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
    return _built(name)
