"""FeatureExtractor: the per-clip arrays the store writes, their shapes, order and guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurestore.audio import AudioError
from featurestore.extract import FeatureExtractor
from featurestore.features.builtin import crop_starts
from featurestore.handcrafted import DESCRIPTOR_NAMES
from featurestore.spec import FeatureSpec, preset
from featurestore.transforms import MFCC
from helpers_featuremaths import music


def mtat(**changes) -> FeatureSpec:
    return preset("mtat-seed").replace(duration=2.0, crop_samples=8000, **changes)


def test_keys_shapes_dtypes_follow_the_spec():
    spec = mtat(features=("waveform", "mfcc", "logmel"), crops=3)
    features = FeatureExtractor(spec)(music(2.0, spec.sample_rate))
    assert list(features) == ["waveform", "mfcc", "logmel"]
    assert features["logmel"].shape == (spec.n_mels, spec.n_frames)
    assert features["mfcc"].shape == (spec.n_mfcc, spec.n_frames)
    assert features["waveform"].shape == (3, spec.crop_samples)
    for values in features.values():
        assert values.dtype == np.float32 and values.flags.c_contiguous and np.isfinite(values).all()


def test_values_are_the_transforms_outputs():
    spec = mtat()
    y = music(2.0, spec.sample_rate, seed=4)
    features = FeatureExtractor(spec)(y)
    module = MFCC(spec)
    with torch.inference_mode():
        logmel = module.logmel(torch.from_numpy(y))
        mfcc = module.from_logmel(logmel)
    np.testing.assert_array_equal(features["logmel"], logmel.numpy())
    np.testing.assert_array_equal(features["mfcc"], mfcc.numpy())


def test_only_the_requested_features_are_computed():
    spec = mtat(features=("logmel",))
    extractor = FeatureExtractor(spec)
    assert list(extractor(music(2.0, spec.sample_rate))) == ["logmel"]


@pytest.mark.parametrize(
    "n, crop, crops, starts",
    [(100, 40, 1, [30]), (100, 40, 3, [0, 30, 60]), (101, 40, 2, [0, 61]), (100, 100, 4, [0, 0, 0, 0]),
     (10, 3, 4, [0, 2, 5, 7])],
)
def test_crops_are_evenly_spaced_and_a_single_crop_is_centred(n, crop, crops, starts):
    spec = FeatureSpec(sample_rate=n, duration=1.0, crop_samples=crop, crops=crops)
    assert crop_starts(spec).tolist() == starts


def test_waveform_crops_are_slices_of_the_clip():
    spec = mtat(features=("waveform",), crops=3)
    y = music(2.0, spec.sample_rate, seed=5)
    crops = FeatureExtractor(spec)(y)["waveform"]
    for crop, start in zip(crops, crop_starts(spec)):
        np.testing.assert_array_equal(crop, y[start : start + spec.crop_samples])
    assert crop_starts(spec)[-1] + spec.crop_samples == spec.n_samples  # the last crop ends the clip


def test_silence_sits_on_the_floor():
    spec = mtat()
    features = FeatureExtractor(spec)(np.zeros(spec.n_samples, dtype=np.float32))
    np.testing.assert_allclose(features["logmel"], -100.0, atol=1e-4)
    assert np.isfinite(features["mfcc"]).all()
    assert not features["waveform"].any()


def test_float16_features_are_clamped_to_float16_range():
    spec = mtat(features=("waveform", "logmel"))
    y = music(2.0, spec.sample_rate) * 1e6  # a float WAV can hold any level
    features = FeatureExtractor(spec)(y)
    top = float(np.finfo(np.float16).max)
    assert np.abs(features["waveform"]).max() == top
    assert np.isfinite(features["waveform"].astype(np.float16)).all()
    assert np.isfinite(features["logmel"].astype(np.float16)).all()


def test_non_finite_input_is_an_audio_error_not_a_stored_nan():
    spec = mtat()
    y = music(2.0, spec.sample_rate)
    y[100] = np.nan
    with pytest.raises(AudioError, match="non-finite feature values"):
        FeatureExtractor(spec)(y)


def test_wrong_length_is_a_programming_error():
    spec = mtat()
    with pytest.raises(ValueError, match="expected 32000 samples"):
        FeatureExtractor(spec)(np.zeros(100, dtype=np.float32))


def test_input_is_not_modified():
    spec = mtat(features=("waveform", "logmel"))
    y = music(2.0, spec.sample_rate) * 1e6
    before = y.copy()
    FeatureExtractor(spec)(y)
    np.testing.assert_array_equal(y, before)


def test_handcrafted_through_the_extractor():
    spec = preset("handcrafted").replace(duration=3.0)
    features = FeatureExtractor(spec)(music(3.0, spec.sample_rate, seed=6))
    assert list(features) == ["handcrafted"]
    assert features["handcrafted"].shape == (1, len(DESCRIPTOR_NAMES))
    assert features["handcrafted"].dtype == np.float32 and np.isfinite(features["handcrafted"]).all()
