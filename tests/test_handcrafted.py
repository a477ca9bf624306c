"""The GTZAN features_3_sec descriptor: its columns, and values equal to direct librosa calls."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.ndimage

from featurestore.maths.descriptors import DESCRIPTOR_NAMES, describe, hpss, median_filter, segments
from featurestore.presets import preset
from helpers_featuremaths import music

# The public table's header, between `filename, length` and `label`, spelled out in full.
TABLE_COLUMNS = (
    "chroma_stft_mean chroma_stft_var rms_mean rms_var spectral_centroid_mean spectral_centroid_var "
    "spectral_bandwidth_mean spectral_bandwidth_var rolloff_mean rolloff_var zero_crossing_rate_mean "
    "zero_crossing_rate_var harmony_mean harmony_var perceptr_mean perceptr_var tempo "
    + " ".join(f"mfcc{i}_mean mfcc{i}_var" for i in range(1, 21))
).split()


@pytest.fixture(scope="module")
def clip():
    spec = preset("handcrafted").replace(duration=6.5)
    y = music(6.5, 22_050, seed=21)
    feature = spec.feature("handcrafted")
    return feature, y, describe(y, 22_050, feature.segment_samples)


def test_names_are_the_public_tables_columns_in_order():
    assert DESCRIPTOR_NAMES == tuple(TABLE_COLUMNS)
    assert len(DESCRIPTOR_NAMES) == 57 and len(set(DESCRIPTOR_NAMES)) == 57


def test_one_row_per_whole_segment(clip):
    spec, y, table = clip
    assert spec.n_segments == 2  # 6.5 s in 3-s segments: the half segment left over is dropped
    assert table.shape == (2, 57) and table.dtype == np.float32
    assert np.isfinite(table).all()
    assert not np.allclose(table[0], table[1])


def test_values_equal_direct_librosa_calls_on_the_segment(clip):
    spec, y, table = clip
    sr = spec.decoding.sample_rate
    row = dict(zip(DESCRIPTOR_NAMES, table[1]))
    segment = y[spec.segment_samples : 2 * spec.segment_samples]
    harmonic, percussive = librosa.effects.hpss(segment)
    mfcc = librosa.feature.mfcc(y=segment, sr=sr, n_mfcc=20)
    expected = {
        "chroma_stft_mean": np.mean(librosa.feature.chroma_stft(y=segment, sr=sr)),
        "rms_var": np.var(librosa.feature.rms(y=segment)),
        "spectral_centroid_mean": np.mean(librosa.feature.spectral_centroid(y=segment, sr=sr)),
        "spectral_bandwidth_var": np.var(librosa.feature.spectral_bandwidth(y=segment, sr=sr)),
        "rolloff_mean": np.mean(librosa.feature.spectral_rolloff(y=segment, sr=sr)),
        "zero_crossing_rate_mean": np.mean(librosa.feature.zero_crossing_rate(segment)),
        "harmony_var": np.var(harmonic),
        "perceptr_mean": np.mean(percussive),
        "tempo": librosa.feature.tempo(y=segment, sr=sr)[0],
        "mfcc1_mean": np.mean(mfcc[0]),
        "mfcc13_var": np.var(mfcc[12]),
        "mfcc20_mean": np.mean(mfcc[19]),
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert 100 < row["tempo"] < 140  # the synthetic mix is at 120 bpm


def test_harmonic_percussive_split_is_librosas_bit_for_bit(clip):
    spec, y, _ = clip
    stft = librosa.stft(y[: spec.segment_samples], n_fft=2048, hop_length=512)
    for ours, theirs in zip(hpss(stft), librosa.decompose.hpss(stft)):
        np.testing.assert_array_equal(ours, theirs)


def test_median_filter_is_scipys_for_every_axis_length():
    rng = np.random.default_rng(0)
    for n in range(1, 40):  # shorter, equal and longer than the kernel, both axes
        for x in (rng.random((n, 5), dtype=np.float32), rng.random((5, n), dtype=np.float32)):
            for axis, size in ((-1, (1, 31)), (-2, (31, 1))):
                np.testing.assert_array_equal(median_filter(x, axis=axis),
                                              scipy.ndimage.median_filter(x, size=size, mode="reflect"))


def test_silence_gives_finite_values():
    spec = preset("handcrafted").replace(duration=3.0)
    table = describe(np.zeros(spec.n_samples, dtype=np.float32), 22_050, spec.feature("handcrafted").segment_samples)
    assert table.shape == (1, 57) and np.isfinite(table).all()
    row = dict(zip(DESCRIPTOR_NAMES, table[0]))
    assert row["rms_mean"] == 0.0 and row["zero_crossing_rate_mean"] == 0.0
    assert row["mfcc1_mean"] < -1000  # librosa's floor


def test_a_clip_shorter_than_a_segment_is_one_segment():
    spec = preset("handcrafted").replace(duration=1.0)
    y = music(1.0, 22_050, seed=2)
    size = spec.feature("handcrafted").segment_samples
    assert [len(s) for s in segments(y, size)] == [spec.n_samples]
    assert describe(y, 22_050, size).shape == (1, 57)
