"""LogMel and MFCC agree with librosa, batch like torch modules and hold no host-only state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import librosa
import numpy as np
import pytest
import torch

from featurestore.presets import preset
from featurestore.maths.mel import MFCC, LogMel
from helpers_featuremaths import music

PRESETS = ["mtat-seed", "gtzan", "fma"]


@dataclass(frozen=True)
class Mel:
    """A preset's MFCC settings and clip length, as the plain numbers the modules take."""

    sample_rate: int
    duration: float
    n_fft: int
    hop: int
    n_mels: int
    n_mfcc: int
    f_min: float = 0.0
    f_max: float | None = None

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop

    def replace(self, **changes) -> Mel:
        return dataclasses.replace(self, **changes)


def short(name: str, seconds: float = 3.0) -> Mel:
    spec = preset(name)
    m = spec.feature("mfcc").settings
    return Mel(spec.decoding.sample_rate, seconds, m.n_fft, m.hop, m.n_mels, m.n_mfcc, m.f_min, m.f_max)


def logmel(s: Mel) -> LogMel:
    return LogMel(s.sample_rate, s.n_fft, s.hop, s.n_mels, s.f_min, s.f_max)


def mfcc(s: Mel) -> MFCC:
    return MFCC(s.sample_rate, s.n_fft, s.hop, s.n_mels, s.n_mfcc, s.f_min, s.f_max)


def dynamic_music(spec) -> np.ndarray:
    """Music with the quiet parts that stress float32: a 0.25-s hole of digital silence and a
    last second that fades out by 120 dB, so the reference spans -100 dB to its loudest."""
    y = music(spec.duration, spec.sample_rate, seed=11).astype(np.float64)
    sr = spec.sample_rate
    y[int(0.8 * sr) : int(1.05 * sr)] = 0.0
    fade = np.arange(len(y) - 2 * sr, len(y))
    y[fade] *= 10 ** (-6 * (fade - fade[0]) / len(fade))
    return y.astype(np.float32)


def reference_logmel(y: np.ndarray, spec) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels,
        fmin=spec.f_min, fmax=spec.f_max, power=2.0,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


@pytest.mark.parametrize("name", PRESETS)
def test_logmel_matches_librosa(name):
    spec = short(name)
    y = dynamic_music(spec)
    expected = reference_logmel(y, spec)
    with torch.inference_mode():
        got = logmel(spec)(torch.from_numpy(y)).numpy()

    assert got.shape == expected.shape == (spec.n_mels, spec.n_frames)
    loud = expected > -80.0
    assert 0.3 < loud.mean() < 0.95  # the comparison covers loud and (excluded) quiet cells
    assert np.abs(got - expected)[loud].max() < 0.05
    # Below -80 dB both sit on the same floor: digital silence is exactly -100 dB in both.
    silent_frames = np.isclose(expected, -100.0, atol=1e-4).all(axis=0)
    assert silent_frames.sum() >= 1
    np.testing.assert_allclose(got[:, silent_frames], -100.0, atol=1e-4)


@pytest.mark.parametrize("name", PRESETS)
def test_mfcc_is_librosa_dct_of_the_logmel(name):
    spec = short(name)
    y = dynamic_music(spec)
    module = mfcc(spec)
    with torch.inference_mode():
        logmel = module.logmel(torch.from_numpy(y))
        got = module(torch.from_numpy(y)).numpy()
        from_logmel = module.from_logmel(logmel).numpy()
    expected = librosa.feature.mfcc(S=logmel.numpy(), n_mfcc=spec.n_mfcc, dct_type=2, norm="ortho")
    assert got.shape == (spec.n_mfcc, spec.n_frames)
    np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())
    np.testing.assert_array_equal(got, from_logmel)
    # and end to end against librosa's own log-mel
    end_to_end = librosa.feature.mfcc(S=reference_logmel(y, spec), n_mfcc=spec.n_mfcc, dct_type=2, norm="ortho")
    loud_frames = reference_logmel(y, spec).min(axis=0) > -80.0
    assert np.abs(got - end_to_end)[:, loud_frames].max() < 0.05 * np.sqrt(spec.n_mels)


def test_f_min_f_max_are_honoured():
    spec = short("gtzan").replace(f_min=300.0, f_max=8000.0)
    y = dynamic_music(spec)
    expected = reference_logmel(y, spec)
    with torch.inference_mode():
        got = logmel(spec)(torch.from_numpy(y)).numpy()
    loud = expected > -80.0
    assert np.abs(got - expected)[loud].max() < 0.05
    default = logmel(short("gtzan"))(torch.from_numpy(y)).detach().numpy()
    assert np.abs(default - got).max() > 1.0  # the band limits change the features


def test_batches_like_single_clips():
    spec = short("mtat-seed", 1.5)
    clips = np.stack([music(1.5, spec.sample_rate, seed=s) for s in range(6)]).reshape(2, 3, -1)
    module = mfcc(spec)
    with torch.inference_mode():
        batched = module(torch.from_numpy(clips))
        singles = torch.stack([module(torch.from_numpy(c)) for c in clips.reshape(6, -1)]).reshape(batched.shape)
    assert batched.shape == (2, 3, spec.n_mfcc, spec.n_frames)
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-3)


def test_state_is_buffers_so_the_modules_move_between_devices():
    spec = short("mtat-seed", 1.5)
    module = mfcc(spec)
    buffers = dict(module.named_buffers())
    assert set(buffers) == {"dct", "logmel.stft.window", "logmel.mel.fb"}
    assert buffers["logmel.mel.fb"].shape == (spec.n_fft // 2 + 1, spec.n_mels)
    # The forward pass is pure tensor code: it runs on a device without host data ("meta").
    moved = module.to("meta")
    out = moved(torch.zeros(2, spec.n_samples, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, spec.n_mfcc, spec.n_frames)
    assert all(b.device.type == "meta" for b in moved.buffers())


def test_window_is_periodic_hann():
    spec = short("gtzan")
    window = logmel(spec).stft.window.numpy()
    np.testing.assert_allclose(window, librosa.filters.get_window("hann", spec.n_fft, fftbins=True), atol=1e-6)
