"""Sample-level building blocks: oscillators, envelopes, filters, placement on a timeline.

Pure functions on numpy arrays, vectorised so that a whole note (or a whole part) is a
handful of array operations: the corpus must render far faster than real time on one core.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

F32 = np.float32


def midi_hz(note: float | np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def phase(freq: float | np.ndarray, n: int, sr: int, start: float = 0.0) -> np.ndarray:
    """Running phase in cycles (float64, wrapped to [0, 1)), so frequency may vary per sample."""
    if np.ndim(freq) == 0:
        ph = np.arange(n, dtype=np.float64)
        ph *= float(freq) / sr
    else:
        ph = np.cumsum(np.asarray(freq, dtype=np.float64) / sr)
    ph += start
    ph -= np.floor(ph)  # far cheaper than np.mod
    return ph


def saw(freq: float | np.ndarray, n: int, sr: int, start: float = 0.0) -> np.ndarray:
    """PolyBLEP sawtooth: a bright lead/pad source without the aliasing of a naive ramp."""
    ph = phase(freq, n, sr, start)
    dt = np.broadcast_to(np.asarray(freq, dtype=np.float64) / sr, ph.shape)
    y = (2.0 * ph - 1.0).astype(F32)
    lo = ph < dt
    t = ph[lo] / dt[lo]
    y[lo] -= 2.0 * t - t * t - 1.0
    hi = ph > 1.0 - dt
    t = (ph[hi] - 1.0) / dt[hi]
    y[hi] -= t * t + 2.0 * t + 1.0
    return y


def sine(freq: float | np.ndarray, n: int, sr: int, start: float = 0.0) -> np.ndarray:
    return np.sin(F32(2.0 * np.pi) * phase(freq, n, sr, start).astype(F32))


def fm(freq: float, n: int, sr: int, ratio: float, index: np.ndarray | float) -> np.ndarray:
    """Two-operator FM: ratio 1 gives electric-piano tones, non-integer ratios give bells."""
    mod = F32(1.0 / (2.0 * np.pi)) * np.asarray(index, dtype=F32) * sine(freq * ratio, n, sr)
    return np.sin(F32(2.0 * np.pi) * (phase(freq, n, sr).astype(F32) + mod))


def decay(n: int, sr: int, seconds: float) -> np.ndarray:
    """Exponential decay reaching -60 dB after `seconds`."""
    return np.exp(np.arange(n, dtype=F32) * F32(-6.9078 / (seconds * sr)))


def adsr(n: int, sr: int, attack: float, release: float, sustain: float = 1.0, decay_s: float = 0.0) -> np.ndarray:
    """Linear attack, optional decay to `sustain`, linear release over the note's last `release` seconds."""
    env = np.full(n, sustain, dtype=F32)
    a = min(n, max(1, int(attack * sr)))
    env[:a] = np.linspace(0.0, 1.0, a, dtype=F32)
    if decay_s > 0 and a < n:
        d = min(n - a, int(decay_s * sr))
        env[a : a + d] = np.linspace(1.0, sustain, d, dtype=F32)
    r = min(n, max(1, int(release * sr)))
    env[n - r :] *= np.linspace(1.0, 0.0, r, dtype=F32)
    return env


@lru_cache(maxsize=256)
def _sos(kind: str, cutoff: float | tuple[float, float], sr: int, order: int) -> np.ndarray:
    nyq = sr / 2.0
    wn = np.clip(np.asarray(cutoff, dtype=np.float64) / nyq, 1e-4, 0.99)
    return signal.butter(order, wn, btype=kind, output="sos")


def lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("lowpass", float(cutoff), sr, order), x).astype(F32)


def highpass(x: np.ndarray, cutoff: float, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("highpass", float(cutoff), sr, order), x).astype(F32)


def bandpass(x: np.ndarray, low: float, high: float, sr: int, order: int = 2) -> np.ndarray:
    return signal.sosfilt(_sos("bandpass", (float(low), float(high)), sr, order), x).astype(F32)


def pluck(
    freq: float, seconds: float, sr: int, rng: np.random.Generator, *, bright: float = 0.5, sustain: float = 1.5
) -> np.ndarray:
    """Karplus-Strong string, computed one period at a time in the frequency domain.

    The KS loop (delay line + two-point average) multiplies the k-th harmonic of the
    excitation by ``g·cos(πk/N)`` per period; applying those factors to the spectrum of one
    noise period and inverse-transforming all periods at once gives the same plucked sound
    (high partials dying first) without a per-sample Python loop.
    """
    period = max(2, int(round(sr / freq)))
    n_periods = int(np.ceil(seconds * sr / period))
    burst = rng.uniform(-1.0, 1.0, period)
    if bright < 1.0:  # a darker pluck: smooth the excitation (finger vs pick)
        burst = signal.lfilter([1.0 - bright], [1.0, -bright], np.tile(burst, 2))[period:]
    spectrum = np.fft.rfft(burst - burst.mean())
    k = np.arange(spectrum.size)
    g = 10.0 ** (-3.0 / (sustain * sr / period))  # fundamental reaches -60 dB after `sustain` s
    per_period = np.log(g * np.maximum(np.abs(np.cos(np.pi * k / period)), 1e-6))
    frames = spectrum[None, :] * np.exp(np.arange(n_periods)[:, None] * per_period[None, :])
    y = np.fft.irfft(frames, n=period, axis=1).ravel()[: int(seconds * sr)]
    y /= np.max(np.abs(y[:period])) + 1e-9
    fade = min(y.size, int(0.01 * sr))
    y[y.size - fade :] *= np.linspace(1.0, 0.0, fade)
    return y.astype(F32)


def soft_clip(x: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """Leave samples below `threshold` untouched, bend the rest smoothly so |y| < 1."""
    mag = np.abs(x)
    over = mag > threshold
    if not over.any():
        return x
    head = 1.0 - threshold
    y = x.copy()
    y[over] = np.sign(x[over]) * (threshold + head * np.tanh((mag[over] - threshold) / head))
    return y


def reverb_ir(sr: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A room as decaying, darkening noise, scaled to unit energy."""
    n = int(seconds * sr)
    ir = lowpass(rng.standard_normal(n, dtype=F32) * decay(n, sr, seconds), 6000.0, sr, order=1)
    return ir / np.sqrt(np.sum(np.square(ir)))


class Timeline:
    """One part's mono buffer; notes and hits are added at times in seconds and cut at the end."""

    def __init__(self, n: int, sr: int):
        self.sr = sr
        self.buf = np.zeros(n, dtype=F32)

    def add(self, at: float, sound: np.ndarray, gain: float = 1.0) -> None:
        start = int(round(at * self.sr))
        if start >= self.buf.size or start + sound.size <= 0:
            return
        lo = max(0, -start)
        hi = min(sound.size, self.buf.size - start)
        self.buf[start + lo : start + hi] += sound[lo:hi] * F32(gain)
