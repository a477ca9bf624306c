"""The synthetic styles: deterministic, loudness-normalised, and different the way genres are."""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featurestore.errors import UserError
from featurestore.synth import STYLES, render_clip
from featurestore.synth.render import RMS_DBFS
from featurestore.synth.styles import STYLE_SPECS

SR = 16_000
SECONDS = 4.0
PER_STYLE = 8
N_FFT, HOP = 1024, 256


@dataclass(frozen=True)
class Analysis:
    """What the style checks measure on one clip, computed once from one STFT."""

    dbfs: float
    logmel: np.ndarray  # (mel, frame)
    onset: np.ndarray  # onset strength envelope, one value per frame
    centroid: float  # mean spectral centroid, Hz


def _dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64)))))


@pytest.fixture(scope="module")
def clips() -> dict[str, list[np.ndarray]]:
    """A small corpus in memory: PER_STYLE mono clips of every style."""
    return {s: [render_clip(s, 100 + k, SECONDS, SR)[:, 0] for k in range(PER_STYLE)] for s in STYLES}


@pytest.fixture(scope="module")
def analysed(clips) -> dict[str, list[Analysis]]:
    mel = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=64)

    def analyse(x: np.ndarray) -> Analysis:
        magnitude = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP))
        logmel = librosa.power_to_db(mel @ magnitude**2)
        onset = librosa.onset.onset_strength(S=logmel, sr=SR, hop_length=HOP)
        centroid = float(librosa.feature.spectral_centroid(S=magnitude, sr=SR, n_fft=N_FFT).mean())
        return Analysis(_dbfs(x), logmel, onset, centroid)

    return {s: [analyse(x) for x in xs] for s, xs in clips.items()}


def _pulse_clarity(onset: np.ndarray) -> float:
    """Peak autocorrelation of the onset envelope at beat periods of 50-200 bpm: high with drums."""
    ac = librosa.autocorrelate(onset - onset.mean())
    fps = SR / HOP
    return float(ac[int(fps * 60 / 200) : int(fps * 60 / 50)].max() / ac[0])


def test_same_seed_same_clip_other_seed_other_clip():
    a = render_clip("jazz_blues", 3, 1.5, SR)
    assert a.dtype == np.float32 and a.shape == (int(1.5 * SR), 1)
    assert np.array_equal(a, render_clip("jazz_blues", 3, 1.5, SR))
    b = render_clip("jazz_blues", 4, 1.5, SR)
    assert np.corrcoef(a[:, 0], b[:, 0])[0, 1] < 0.5


def test_stereo_and_two_style_mix():
    x = render_clip(("rock", "ambient"), 5, 1.0, 22_050, channels=2)
    assert x.shape == (22_050, 2) and x.dtype == np.float32
    assert np.abs(x).max() < 1.0
    assert not np.allclose(x[:, 0], x[:, 1])  # parts are panned, the room is wide
    assert not np.allclose(x, render_clip("rock", 5, 1.0, 22_050, channels=2))


def test_unknown_style_and_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="polka"):
        render_clip("polka", 0, 1.0, SR)
    with pytest.raises(UserError):
        render_clip(("rock", "rock"), 0, 1.0, SR)
    with pytest.raises(UserError):
        render_clip("rock", 0, 1.0, SR, channels=3)


def test_loudness_is_normalised_whatever_the_style(clips, analysed):
    low, high = RMS_DBFS
    for style, results in analysed.items():
        levels = [a.dbfs for a in results]
        # the soft limiter may shave a fraction of a dB off the loudest targets
        assert all(low - 0.5 <= d <= high + 0.1 for d in levels), (style, levels)
        assert max(levels) - min(levels) > 3.0  # targets are drawn per clip, not per style
        assert all(np.abs(x).max() < 1.0 for x in clips[style])


def test_drum_styles_have_a_pulse_and_drumless_styles_do_not(analysed):
    clarity = {
        s: [_pulse_clarity(a.onset) for a in analysed[s]]
        for s in ("ambient", "classical", "electronic", "rock", "jazz_blues")
    }
    drumless = max(clarity["ambient"] + clarity["classical"])
    drums = min(clarity["electronic"] + clarity["rock"] + clarity["jazz_blues"])
    assert drumless < 0.3 < 0.45 < drums, clarity


@pytest.mark.parametrize("style", ["electronic", "hiphop"])
def test_estimated_tempo_lies_in_the_style_range(analysed, style):
    low, high = STYLE_SPECS[style].tempo
    tempi = [float(librosa.feature.tempo(onset_envelope=a.onset, sr=SR, hop_length=HOP)[0]) for a in analysed[style]]
    # the tempogram's lag grid is coarse (about 2% per step at this hop)
    assert all(0.97 * low <= t <= 1.03 * high for t in tempi), tempi


def test_ride_cymbals_make_jazz_brighter_than_lofi_hiphop_and_ambient_pads(analysed):
    bright = min(a.centroid for a in analysed["jazz_blues"])
    dark = max(a.centroid for s in ("hiphop", "ambient") for a in analysed[s])
    assert bright > 1.5 * dark, (bright, dark)


def test_styles_are_learnable_from_spectra_but_not_from_loudness(analysed):
    """The corpus is a real task: log-mel statistics separate the styles, the level does not."""
    spectral, loudness, labels = [], [], []
    for label, style in enumerate(STYLES):
        for a in analysed[style]:
            spectral.append(np.r_[a.logmel.mean(axis=1), a.logmel.std(axis=1)])
            loudness.append([a.dbfs])
            labels.append(label)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    spectral_acc = cross_val_score(model, np.array(spectral), labels, cv=folds).mean()
    loudness_acc = cross_val_score(model, np.array(loudness), labels, cv=folds).mean()
    chance = 1 / len(STYLES)
    assert spectral_acc >= 0.75, spectral_acc
    assert loudness_acc <= chance + 0.2, loudness_acc
