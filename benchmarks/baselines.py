"""The baselines, written plainly, the way a user of these libraries would write them.

(a) `librosa_loop`: one process, librosa.load → melspectrogram → power_to_db → mfcc → the crops,
    one `.npy` per clip and feature (the source reports' layout); `librosa_clip` is one clip of
    it, for a `multiprocessing.Pool` of processes (the first parallel version a user would try).
(b) `decode_chunk`: the decode-only ceiling, soundfile + soxr and nothing else, opened by path
    as a user would, so "fraction of (b)" says how much the features cost; `store_decode_chunk` is
    the store's own decoder alone (MP3s read from memory, every check), the floor the build stands on.
`NpyClips`: a map-style Dataset over one `.npy` file per clip, local or through fsspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurestore.spec import FeatureSpec


@dataclass(frozen=True)
class Plain:
    """A preset's settings as the plain numbers a librosa script uses (its log-mel's mel settings,
    its MFCC count, its waveform crops), picklable for a process pool."""

    features: tuple[str, ...]
    sample_rate: int
    duration: float
    offset: float
    n_samples: int
    n_fft: int = 2048
    hop: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    n_mfcc: int = 20
    crop_samples: int = 0
    crop_starts: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: FeatureSpec) -> Plain:
        d, mel = spec.decoding, {}
        if "mfcc" in spec.arrays:
            mel = {k: getattr(spec.feature("mfcc").settings, k) for k in ("n_fft", "hop", "n_mels", "f_min", "f_max",
                                                                          "n_mfcc")}
        wave = {}
        if "waveform" in spec.arrays:
            w = spec.feature("waveform")
            wave = {"crop_samples": w.settings.crop_samples, "crop_starts": tuple(int(s) for s in w.starts())}
        return cls(spec.names, d.sample_rate, d.duration, d.offset, d.n_samples, **mel, **wave)


def librosa_features(path: str, spec: Plain) -> dict[str, np.ndarray]:
    """The spec's log-mel, MFCC and waveform crops (those of them it has), by librosa."""
    import librosa

    y, sr = librosa.load(path, sr=spec.sample_rate, mono=True, offset=spec.offset, duration=spec.duration)
    y = librosa.util.fix_length(y, size=spec.n_samples)
    power = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=spec.n_fft, hop_length=spec.hop, n_mels=spec.n_mels, fmin=spec.f_min, fmax=spec.f_max
    )
    logmel = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    out = {"logmel": logmel, "mfcc": librosa.feature.mfcc(S=logmel, n_mfcc=spec.n_mfcc)}
    if "waveform" in spec.features:
        out["waveform"] = np.stack([y[s : s + spec.crop_samples] for s in spec.crop_starts])
    return {k: v for k, v in out.items() if k in spec.features}


def librosa_clip(job: tuple[int, str], spec: Plain, out_dir: str) -> int:
    """One clip of baseline (a): its features, one float16 `.npy` each."""
    i, path = job
    for feature, value in librosa_features(path, spec).items():
        folder = Path(out_dir) / feature
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:06d}.npy", value.astype(np.float16))
    return 1


def prepare(one_thread: bool = False) -> None:
    """Initializer of the baseline processes. librosa compiles numba kernels on first use, into
    the cache every process shares, and processes compiling at once corrupt it (see
    `featurestore.environment.compiling`): each process first runs the baselines' librosa calls
    on noise under the store's compile lock, so one compiles and the others load. With
    `one_thread`, NumPy's BLAS and numba's pool get one thread per process, as in the build's
    workers, so that two processes do not oversubscribe two cores."""
    import librosa
    from threadpoolctl import threadpool_limits

    from featurestore.environment import compiling

    if one_thread:
        threadpool_limits(1)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 22_050).astype(np.float32)
    with compiling():
        librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(y=noise, sr=22_050)))
        librosa_descriptors(noise, 22_050)


def librosa_loop(paths: list[str], spec: FeatureSpec, out_dir: str) -> int:
    """Baseline (a), single process; returns the number of clips written."""
    return sum(librosa_clip(job, spec, out_dir) for job in enumerate(paths))


def librosa_descriptors(segment: np.ndarray, sr: int) -> np.ndarray:
    """The 57 GTZAN descriptors of one segment the way the public table computes them: each
    `librosa.feature.*` called on the samples (each takes its own STFT), HPSS by
    `librosa.effects.hpss`. Columns in `featurestore.maths.descriptors.DESCRIPTOR_NAMES` order."""
    import librosa

    y = segment
    harmonic, percussive = librosa.effects.hpss(y)
    frames = (
        librosa.feature.chroma_stft(y=y, sr=sr),
        librosa.feature.rms(y=y),
        librosa.feature.spectral_centroid(y=y, sr=sr),
        librosa.feature.spectral_bandwidth(y=y, sr=sr),
        librosa.feature.spectral_rolloff(y=y, sr=sr),
        librosa.feature.zero_crossing_rate(y),
        harmonic,
        percussive,
    )
    row = [stat for values in frames for stat in (np.mean(values), np.var(values))]
    row.append(float(librosa.feature.tempo(y=y, sr=sr)[0]))
    row.extend(stat for c in librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20) for stat in (np.mean(c), np.var(c)))
    return np.asarray(row, dtype=np.float32)


def decode(path: str, spec: Plain) -> np.ndarray:
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


def decode_chunk(paths: list[str], spec: Plain) -> int:
    """Baseline (b), one task's worth: decode and resample, keep nothing."""
    for path in paths:
        decode(path, spec)
    return len(paths)


def store_decode_chunk(paths: list[str], spec: FeatureSpec) -> int:
    """(b) with the store's decoder, `featurestore.audio.decoder`, instead of plain soundfile."""
    from featurestore.audio import decode as store_decode

    for path in paths:
        store_decode(path, spec.decoding)
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
