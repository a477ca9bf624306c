"""Real-sounding test audio for the feature-maths tests: no pure sines, no all-zeros."""

from __future__ import annotations

import numpy as np


def music(seconds: float, sr: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A short synthetic mix: decaying harmonic notes over a bass line, kick- and hat-like
    transients and a noise floor, at a typical level (peak ~0.5). Shape (n,) or (n, channels)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    y = np.zeros(n)
    beat = 0.5  # 120 bpm
    for k, onset in enumerate(np.arange(0.0, seconds, beat)):
        i = int(onset * sr)
        tt = t[i:] - onset
        f0 = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        env = np.exp(-tt * 3.0) * (1 - np.exp(-tt * 200.0))
        note = sum((0.6 / h) * np.sin(2 * np.pi * h * f0 * tt + rng.uniform(0, 2 * np.pi)) for h in range(1, 7))
        y[i:] += 0.25 * env * note
        y[i:] += 0.4 * np.exp(-tt * 25.0) * np.sin(2 * np.pi * 55.0 * tt * np.exp(-tt * 8.0))  # kick
        j = int((onset + beat / 2) * sr)
        if j < n:  # off-beat hat: short burst of high-passed noise
            burst = np.diff(rng.standard_normal(min(n - j, int(0.05 * sr)) + 1))
            y[j : j + len(burst)] += 0.05 * burst * np.exp(-np.arange(len(burst)) / sr * 60.0)
    y += 0.1 * np.sin(2 * np.pi * 55.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))  # bass
    y += 0.003 * rng.standard_normal(n)
    y *= 0.5 / np.max(np.abs(y))
    if channels == 1:
        return y.astype(np.float32)
    pans = np.linspace(0.6, 1.0, channels)
    return (y[:, None] * pans[None, :] + 0.002 * rng.standard_normal((n, channels))).astype(np.float32)
