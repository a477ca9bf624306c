"""FeatureExtractor: the per-clip arrays the store writes, their shapes, order and guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurestore.audio import AudioError
from featurestore.features.extract import FeatureExtractor
from featurestore.features.builtin import crop_starts
from featurestore.maths.descriptors import DESCRIPTOR_NAMES
from featurestore.features.builtin import MelSettings, WaveformSettings
from featurestore.maths.mel import MFCC
from featurestore.presets import preset
from featurestore.spec import ArraySpec, Decoding, FeatureSpec
from helpers_featuremaths import music

RATE = 16_000


def mtat(*arrays: str, **changes) -> FeatureSpec:
    spec = preset("mtat-seed").replace(duration=2.0, crop_samples=8000, **changes)
    return spec.select(arrays) if arrays else spec


def test_keys_shapes_dtypes_follow_the_spec():
    spec = mtat("waveform", "mfcc", "logmel", crops=3)
    features = FeatureExtractor(spec)(music(2.0, RATE))
    assert list(features) == ["waveform", "mfcc", "logmel"]
    assert features["logmel"].shape == (80, 32)  # 1 + 32000 // 1024 frames
    assert features["mfcc"].shape == (20, 32)
    assert features["waveform"].shape == (3, 8000)
    for values in features.values():
        assert values.dtype == np.float32 and values.flags.c_contiguous and np.isfinite(values).all()


def test_arrays_of_one_kind_with_their_own_settings_and_work_shared_where_settings_agree():
    spec = FeatureSpec(Decoding(sample_rate=RATE, duration=2.0), {
        "logmel": ArraySpec("logmel"),
        "logmel128": ArraySpec("logmel", MelSettings(hop=512, n_mels=128)),
        "mfcc": ArraySpec("mfcc"),
    })
    y = music(2.0, RATE, seed=3)
    features = FeatureExtractor(spec)(y)
    assert features["logmel"].shape == (80, 32) and features["logmel128"].shape == (128, 63)
    with torch.inference_mode():
        alone = MFCC(RATE, 2048, 512, 128, 20).logmel(torch.from_numpy(y)).numpy()
    np.testing.assert_array_equal(features["logmel128"], alone)
    cache: dict = {}
    for name in spec.names:
        spec.feature(name).compute(y, cache)
    assert len(cache) == 2  # one log-mel per mel setting: the MFCCs took the 80-band one's


def test_values_are_the_transforms_outputs():
    spec = mtat()
    y = music(2.0, RATE, seed=4)
    features = FeatureExtractor(spec)(y)
    module = MFCC(RATE, 2048, 1024, 80, 20)
    with torch.inference_mode():
        logmel = module.logmel(torch.from_numpy(y))
        mfcc = module.from_logmel(logmel)
    np.testing.assert_array_equal(features["logmel"], logmel.numpy())
    np.testing.assert_array_equal(features["mfcc"], mfcc.numpy())


def test_only_the_requested_features_are_computed():
    spec = mtat()
    extractor = FeatureExtractor(spec, ["logmel"])
    assert list(extractor(music(2.0, RATE))) == ["logmel"]


@pytest.mark.parametrize(
    "n, crop, crops, starts",
    [(100, 40, 1, [30]), (100, 40, 3, [0, 30, 60]), (101, 40, 2, [0, 61]), (100, 100, 4, [0, 0, 0, 0]),
     (10, 3, 4, [0, 2, 5, 7])],
)
def test_crops_are_evenly_spaced_and_a_single_crop_is_centred(n, crop, crops, starts):
    assert crop_starts(WaveformSettings(crop_samples=crop, crops=crops), n).tolist() == starts


def test_waveform_crops_are_slices_of_the_clip():
    spec = mtat("waveform", crops=3)
    y = music(2.0, RATE, seed=5)
    crops = FeatureExtractor(spec)(y)["waveform"]
    starts = spec.feature("waveform").starts()
    for crop, start in zip(crops, starts):
        np.testing.assert_array_equal(crop, y[start : start + 8000])
    assert starts[-1] + 8000 == spec.n_samples  # the last crop ends the clip


def test_silence_sits_on_the_floor():
    spec = mtat()
    features = FeatureExtractor(spec)(np.zeros(spec.n_samples, dtype=np.float32))
    np.testing.assert_allclose(features["logmel"], -100.0, atol=1e-4)
    assert np.isfinite(features["mfcc"]).all()
    assert not features["waveform"].any()


def test_float16_features_are_clamped_to_float16_range():
    spec = mtat("waveform", "logmel")
    y = music(2.0, RATE) * 1e6  # a float WAV can hold any level
    features = FeatureExtractor(spec)(y)
    top = float(np.finfo(np.float16).max)
    assert np.abs(features["waveform"]).max() == top
    assert np.isfinite(features["waveform"].astype(np.float16)).all()
    assert np.isfinite(features["logmel"].astype(np.float16)).all()


def test_non_finite_input_is_an_audio_error_not_a_stored_nan():
    spec = mtat()
    y = music(2.0, RATE)
    y[100] = np.nan
    with pytest.raises(AudioError, match="non-finite feature values"):
        FeatureExtractor(spec)(y)


def test_wrong_length_is_a_programming_error():
    spec = mtat()
    with pytest.raises(ValueError, match="expected 32000 samples"):
        FeatureExtractor(spec)(np.zeros(100, dtype=np.float32))


def test_input_is_not_modified():
    spec = mtat("waveform", "logmel")
    y = music(2.0, RATE) * 1e6
    before = y.copy()
    FeatureExtractor(spec)(y)
    np.testing.assert_array_equal(y, before)


def test_handcrafted_through_the_extractor():
    spec = preset("handcrafted").replace(duration=3.0)
    features = FeatureExtractor(spec)(music(3.0, spec.decoding.sample_rate, seed=6))
    assert list(features) == ["handcrafted"]
    assert features["handcrafted"].shape == (1, len(DESCRIPTOR_NAMES))
    assert features["handcrafted"].dtype == np.float32 and np.isfinite(features["handcrafted"]).all()
