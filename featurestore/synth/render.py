"""Render one clip: arrange a style, mix its parts, add a room and noise, set the loudness.

Everything random comes from the seed, through independent streams (`SeedSequence.spawn`),
so a clip is the same on every machine and the music does not depend on the sample rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from featurestore.errors import UserError
from featurestore.synth import dsp
from featurestore.synth.styles import STYLE_SPECS, Context

STYLES: tuple[str, ...] = tuple(STYLE_SPECS)

# Every clip's loudness is drawn from this range, whatever its style, so that loudness alone
# says nothing about the label; added noise sits this far below the music.
RMS_DBFS = (-28.0, -16.0)
SNR_DB = (18.0, 45.0)
LEVEL_JITTER_DB = 4.0  # per-part mix variation around the style's balance

_PINK_B = (0.049922035, -0.095993537, 0.050612699, -0.004408786)  # J. O. Smith's 1/f filter
_PINK_A = (1.0, -2.494956002, 2.017265875, -0.522189400)


def style_names(style: str | Sequence[str]) -> tuple[str, ...]:
    names = (style,) if isinstance(style, str) else tuple(style)
    unknown = [s for s in names if s not in STYLE_SPECS]
    if unknown or not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise UserError(
            f"style must be one or two distinct names from {', '.join(STYLES)}; "
            f"got {', '.join(map(str, names)) or 'none'}"
        )
    return names


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def _render_style(name: str, seq: np.random.SeedSequence, n: int, sr: int, channels: int) -> np.ndarray:
    spec = STYLE_SPECS[name]
    decisions, samples = (np.random.default_rng(s) for s in seq.spawn(2))
    tempo = float(decisions.uniform(*spec.tempo))
    ctx = Context(
        sr=sr,
        n=n,
        tempo=tempo,
        tonic=int(decisions.integers(-5, 7)),
        start=float(decisions.uniform(0.0, 8 * 60.0 / tempo)),
        humanise=spec.humanise,
        rng=decisions,
        noise=samples,
    )
    parts = spec.arrange(ctx)
    dry = np.zeros((n, channels), dtype=np.float32)
    send = np.zeros(n, dtype=np.float32)
    for part in parts:
        gain = 10.0 ** ((part.level_db + decisions.uniform(-LEVEL_JITTER_DB, LEVEL_JITTER_DB)) / 20.0)
        angle = (1.0 + part.pan * decisions.uniform(-1.0, 1.0)) * np.pi / 4.0  # constant-power pan
        pan = np.array([np.cos(angle), np.sin(angle)]) * np.sqrt(2.0) if channels == 2 else np.ones(1)
        dry += part.audio[:, None] * (gain * pan).astype(np.float32)
        send += part.audio * np.float32(gain * part.reverb)
    wet = signal.fftconvolve(send, dsp.reverb_ir(sr, float(decisions.uniform(*spec.room)), samples))[:n]
    dry[:, 0] += wet
    if channels == 2:  # the right channel hears the room a little later: width at no extra cost
        lag = int(sr * decisions.uniform(0.007, 0.017))
        dry[lag:, 1] += wet[: n - lag]
    return dry


def render_clip(
    style: str | Sequence[str], seed: int, seconds: float, sample_rate: int, channels: int = 1
) -> np.ndarray:
    """One clip as float32 (frames, channels) in [-1, 1]; two styles give a multi-label mix."""
    names = style_names(style)
    if not seconds > 0 or sample_rate < 8000 or channels not in (1, 2) or seed < 0:
        raise UserError(
            "render_clip needs seconds > 0, sample_rate >= 8000, channels 1 or 2 and seed >= 0; "
            f"got seconds={seconds}, sample_rate={sample_rate}, channels={channels}, seed={seed}"
        )
    n = int(round(seconds * sample_rate))
    mixing, *per_style = np.random.SeedSequence(int(seed)).spawn(1 + len(names))
    rng = np.random.default_rng(mixing)
    mix = np.zeros((n, channels), dtype=np.float32)
    for name, seq in zip(names, per_style, strict=True):
        voice = _render_style(name, seq, n, sample_rate, channels)
        mix += voice * np.float32(10.0 ** (rng.uniform(-3.0, 3.0) / 20.0) / _rms(voice))
    noise = rng.standard_normal((n, channels), dtype=np.float32)
    if rng.random() < 0.5:
        noise = signal.lfilter(_PINK_B, _PINK_A, noise, axis=0).astype(np.float32)
    mix += noise * np.float32(_rms(mix) / _rms(noise) * 10.0 ** (-rng.uniform(*SNR_DB) / 20.0))
    target = 10.0 ** (rng.uniform(*RMS_DBFS) / 20.0)
    return dsp.soft_clip(mix * np.float32(target / _rms(mix)))
