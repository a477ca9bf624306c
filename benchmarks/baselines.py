"""The baselines, written plainly, the way a user of these libraries would write them.

(a) `librosa_loop`: one process, librosa.load → melspectrogram → power_to_db → mfcc → one crop,
    one `.npy` per clip and feature (the source reports' layout).
(b) `decode_chunk`: the decode-only ceiling, soundfile + soxr and nothing else; the build can
    never beat it on the same workers, so "fraction of (b)" says how much the features cost.
`NpyClips`: a map-style Dataset over one `.npy` file per clip, local or through fsspec.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featurestore.spec import FeatureSpec


def centre_crop_start(n_samples: int, crop_samples: int) -> int:
    return (n_samples - crop_samples) // 2


def librosa_features(path: str, spec: FeatureSpec) -> dict[str, np.ndarray]:
    import librosa

    y, sr = librosa.load(path, sr=spec.sample_rate, mono=True, offset=spec.offset, duration=spec.duration)
    y = librosa.util.fix_length(y, size=spec.n_samples)
    power = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels, fmin=spec.f_min, fmax=spec.f_max
    )
    logmel = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=spec.n_mfcc)
    start = centre_crop_start(spec.n_samples, spec.crop_samples)
    return {"logmel": logmel, "mfcc": mfcc, "waveform": y[start : start + spec.crop_samples]}


def librosa_loop(paths: list[str], spec: FeatureSpec, out_dir: str) -> int:
    """Baseline (a). Runs in one process; returns the number of clips written."""
    out = Path(out_dir)
    for feature in ("logmel", "mfcc", "waveform"):
        (out / feature).mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        for feature, value in librosa_features(path, spec).items():
            np.save(out / feature / f"{i:06d}.npy", value.astype(np.float16))
    return len(paths)


def decode(path: str, spec: FeatureSpec) -> np.ndarray:
    import soundfile as sf
    import soxr

    with sf.SoundFile(path) as f:
        if spec.offset:
            f.seek(int(spec.offset * f.samplerate))
        frames = int(np.ceil(spec.duration * f.samplerate))
        x = f.read(frames, dtype="float32", always_2d=True).mean(axis=1)
        rate = f.samplerate
    if rate != spec.sample_rate:
        x = soxr.resample(x, rate, spec.sample_rate, quality="HQ")
    out = np.zeros(spec.n_samples, np.float32)
    out[: min(len(x), spec.n_samples)] = x[: spec.n_samples]
    return out


def decode_chunk(paths: list[str], spec: FeatureSpec) -> int:
    """Baseline (b), one task's worth: decode and resample, keep nothing."""
    for path in paths:
        decode(path, spec)
    return len(paths)


class NpyClips:
    """Map-style Dataset: one `.npy` file per clip (local path or fsspec URL) and its target row."""

    def __init__(self, paths: list[str], targets: np.ndarray):
        self.paths, self.targets = paths, targets

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        if "://" in path:
            import fsspec

            with fsspec.open(path, "rb") as f:
                x = np.load(f)
        else:
            x = np.load(path)
        return {"logmel": x, "y": self.targets[i]}
