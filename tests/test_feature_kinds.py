"""The conformance suite a feature plug-in subclasses (`featurestore.testing.FeatureTests`), run on
every built-in kind, with default and with other settings."""

from __future__ import annotations

from featurestore.features.builtin import (MFCC, Handcrafted, LogMel, MelSettings, MFCCSettings, SegmentSettings,
                                           Waveform, WaveformSettings)
from featurestore.spec import Decoding
from featurestore.testing import FeatureTests


class TestLogMel(FeatureTests):
    feature_class = LogMel


class TestLogMel128(FeatureTests):
    feature_class = LogMel
    settings = MelSettings(n_fft=1024, hop=256, n_mels=128, f_min=30.0, f_max=7000.0)


class TestMFCC(FeatureTests):
    feature_class = MFCC
    settings = MFCCSettings(n_mels=40, n_mfcc=13)


class TestWaveform(FeatureTests):
    feature_class = Waveform
    settings = WaveformSettings(crop_samples=8000, crops=3)


class TestHandcrafted(FeatureTests):
    feature_class = Handcrafted
    settings = SegmentSettings(segment_seconds=1.0)
    decoding = Decoding(sample_rate=22_050, duration=2.0)
