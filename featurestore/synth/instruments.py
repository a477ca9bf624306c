"""Instrument voices: one function per sound, returning a mono float32 note or hit.

Drums are synthesised the classic analogue way (kick: a decaying sine sweep; snare, hats,
shakers: filtered noise bursts); pitched voices cover the timbre families that separate
genres: plucked strings (Karplus-Strong), sustained detuned-saw pads, bright saw leads and
basses, and FM electric pianos and bells.
"""

from __future__ import annotations

import numpy as np

from featurestore.synth import dsp
from featurestore.synth.dsp import F32


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n, dtype=F32)


def kick(sr: int, *, low: float = 50.0, high: float = 160.0, seconds: float = 0.35, sweep: float = 0.04) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n, dtype=np.float64) / sr
    freq = low + (high - low) * np.exp(-t / sweep)
    body = dsp.sine(freq, n, sr) * dsp.decay(n, sr, seconds)
    click = np.zeros(n, dtype=F32)
    click[: int(0.002 * sr)] = 0.5
    return body + click


def boom(sr: int, *, low: float = 45.0, seconds: float = 0.9) -> np.ndarray:
    """The long, slightly overdriven 808 kick of hip-hop."""
    return np.tanh(1.8 * kick(sr, low=low, high=130.0, seconds=seconds, sweep=0.03)).astype(F32)


def snare(sr: int, rng: np.random.Generator, *, tone: float = 190.0, seconds: float = 0.2) -> np.ndarray:
    n = int(seconds * sr)
    rattle = dsp.bandpass(_noise(n, rng), 1200.0, min(9000.0, 0.45 * sr), sr) * dsp.decay(n, sr, seconds)
    body = dsp.sine(tone, n, sr) * dsp.decay(n, sr, seconds * 0.4)
    return 0.8 * rattle + 0.5 * body


def clap(sr: int, rng: np.random.Generator, *, seconds: float = 0.25) -> np.ndarray:
    n = int(seconds * sr)
    env = dsp.decay(n, sr, seconds)
    for lag in (0.008, 0.017):  # the smeared onsets of several hands
        k = int(lag * sr)
        env[k:] += dsp.decay(n - k, sr, 0.03) * 0.8
    return dsp.bandpass(_noise(n, rng), 900.0, 3500.0, sr) * env


def hat(sr: int, rng: np.random.Generator, *, open_: bool = False) -> np.ndarray:
    seconds = 0.35 if open_ else 0.06
    n = int(seconds * sr)
    return dsp.highpass(_noise(n, rng), min(7000.0, 0.3 * sr), sr) * dsp.decay(n, sr, seconds)


def ride(sr: int, rng: np.random.Generator, *, seconds: float = 0.9) -> np.ndarray:
    n = int(seconds * sr)
    ping = sum(dsp.sine(f, n, sr) for f in (3127.0, 4291.0, 5387.0)) / 3.0
    wash = dsp.highpass(_noise(n, rng), min(5000.0, 0.3 * sr), sr)
    return (0.6 * ping + 0.4 * wash) * dsp.decay(n, sr, seconds)


def shaker(sr: int, rng: np.random.Generator, *, seconds: float = 0.09) -> np.ndarray:
    n = int(seconds * sr)
    return dsp.bandpass(_noise(n, rng), 3000.0, min(10000.0, 0.45 * sr), sr) * dsp.adsr(
        n, sr, seconds * 0.4, seconds * 0.6
    )


def hand_drum(sr: int, rng: np.random.Generator, *, pitch: float = 220.0, slap: float = 0.3) -> np.ndarray:
    """Tabla/djembe-like: a tuned membrane whose pitch drops as it rings, plus a slap of noise."""
    seconds = 0.3
    n = int(seconds * sr)
    t = np.arange(n, dtype=np.float64) / sr
    tone = dsp.sine(pitch * (1.0 + 0.35 * np.exp(-t / 0.02)), n, sr) * dsp.decay(n, sr, seconds)
    hit = dsp.bandpass(_noise(n, rng), 600.0, 4000.0, sr) * dsp.decay(n, sr, 0.05)
    return tone + F32(slap) * hit


def power_chord(root: float, seconds: float, sr: int, *, palm: bool) -> np.ndarray:
    """Root, fifth and octave of slightly detuned saws; the amp's distortion is applied per part."""
    n = int(seconds * sr)
    voices = sum(dsp.saw(dsp.midi_hz(root + iv) * (1.0 + 0.002 * i), n, sr) for i, iv in enumerate((0, 7, 12)))
    env = dsp.decay(n, sr, 0.25) if palm else dsp.adsr(n, sr, 0.005, 0.05)
    return voices * env


def pad_voice(
    note: float, seconds: float, sr: int, *, attack: float, release: float, vibrato: float = 0.0
) -> np.ndarray:
    """Two detuned saws with a slow attack: strings/synth pads (filtered per part)."""
    n = int(seconds * sr)
    f0 = dsp.midi_hz(note)
    freq = f0 * (1.0 + vibrato * np.sin(2.0 * np.pi * 5.0 * np.arange(n) / sr)) if vibrato else f0
    tone = dsp.saw(freq * 0.997, n, sr) + dsp.saw(freq * 1.003, n, sr, start=0.37)
    return 0.5 * tone * dsp.adsr(n, sr, attack, release)


def soft_pad(note: float, seconds: float, sr: int, *, attack: float, release: float) -> np.ndarray:
    """Near-sine pad (fundamental and a quiet octave): the dark, smooth layer of ambient music."""
    n = int(seconds * sr)
    f0 = float(dsp.midi_hz(note))
    tone = dsp.sine(f0 * 1.002, n, sr) + 0.6 * dsp.sine(f0 * 0.998, n, sr, start=0.25) + 0.2 * dsp.sine(2 * f0, n, sr)
    return tone * dsp.adsr(n, sr, attack, release)


def lead(note: float, seconds: float, sr: int, *, cutoff: float, vibrato: float = 0.0) -> np.ndarray:
    n = int(seconds * sr)
    f0 = dsp.midi_hz(note)
    freq = f0 * (1.0 + vibrato * np.sin(2.0 * np.pi * 5.5 * np.arange(n) / sr)) if vibrato else f0
    return dsp.lowpass(dsp.saw(freq, n, sr), cutoff, sr) * dsp.adsr(n, sr, 0.01, 0.05, 0.7, 0.1)


def saw_bass(note: float, seconds: float, sr: int, *, cutoff: float) -> np.ndarray:
    """Filter-envelope bass: a bright attack fading into its low-passed body."""
    n = int(seconds * sr)
    raw = dsp.saw(dsp.midi_hz(note), n, sr)
    body = dsp.lowpass(raw, cutoff, sr)
    return (body + raw * dsp.decay(n, sr, 0.12)) * dsp.adsr(n, sr, 0.003, 0.02)


def sub_bass(note: float, seconds: float, sr: int) -> np.ndarray:
    n = int(seconds * sr)
    f0 = float(dsp.midi_hz(note))
    return (dsp.sine(f0, n, sr) + 0.15 * dsp.sine(2 * f0, n, sr)) * dsp.adsr(n, sr, 0.01, 0.08)


def epiano(note: float, seconds: float, sr: int) -> np.ndarray:
    """FM at ratio 1 with a decaying index: the bark of a Rhodes that mellows as it rings."""
    n = int(seconds * sr)
    index = 1.8 * dsp.decay(n, sr, 0.5)
    return (
        dsp.fm(float(dsp.midi_hz(note)), n, sr, 1.0, index)
        * dsp.decay(n, sr, max(seconds * 1.5, 0.8))
        * dsp.adsr(n, sr, 0.003, 0.05)
    )


def bell(note: float, seconds: float, sr: int) -> np.ndarray:
    """FM at an inharmonic ratio: metallic partials that ring long."""
    n = int(seconds * sr)
    index = 3.0 * dsp.decay(n, sr, seconds * 0.6)
    return (
        dsp.fm(float(dsp.midi_hz(note)), n, sr, 3.5, index) * dsp.decay(n, sr, seconds) * dsp.adsr(n, sr, 0.002, 0.05)
    )


def flute(note: float, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    f0 = dsp.midi_hz(note) * (1.0 + 0.006 * np.sin(2.0 * np.pi * 5.0 * np.arange(n) / sr))
    breath = dsp.bandpass(_noise(n, rng), 1500.0, min(6000.0, 0.45 * sr), sr) * F32(0.12)
    tone = dsp.sine(f0, n, sr) + 0.25 * dsp.sine(2 * f0, n, sr) + 0.08 * dsp.sine(3 * f0, n, sr)
    return (tone + breath) * dsp.adsr(n, sr, 0.06, 0.08, 0.85, 0.1)


def drone(root: float, n: int, sr: int) -> np.ndarray:
    """Tanpura-like root + fifth + octave; the buzzing bridge keeps upper partials alive."""
    tone = sum(
        dsp.saw(dsp.midi_hz(root + iv) * (1.0 + 0.001 * i), n, sr, start=0.2 * i)
        for i, iv in enumerate((0, 7, 12, -12))
    )
    shimmer = 1.0 + 0.3 * np.sin(2.0 * np.pi * 0.25 * np.arange(n) / sr)
    return dsp.lowpass(tone, 2500.0, sr) * shimmer.astype(F32)
