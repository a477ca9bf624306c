"""Turn one decoded clip into the arrays the store keeps for it.

Built once per worker process (the torch modules hold their windows, filterbanks and DCT), then
called once per clip on the build's hot path. The log-mel is computed once per clip and the
MFCCs are taken from it; the whole clip goes through the STFT in one call.
"""

from __future__ import annotations

import numpy as np
import torch

from featurestore.audio import AudioError
from featurestore.spec import FeatureSpec
from featurestore.transforms import MFCC, LogMel

FLOAT16_MAX = float(np.finfo(np.float16).max)
FLOAT16_FEATURES = frozenset({"logmel", "mfcc", "waveform"})  # stored as float16: clamp to its range


def crop_starts(spec: FeatureSpec) -> np.ndarray:
    """First sample of each waveform crop: `crops` crops evenly spaced from the clip's start to
    its end (start_i = round(i·(n_samples − crop_samples)/(crops − 1))); a single crop is the
    centre crop, the one the trainers evaluate on."""
    room = spec.n_samples - spec.crop_samples
    if spec.crops == 1:
        return np.array([room // 2])
    return np.array([round(i * room / (spec.crops - 1)) for i in range(spec.crops)])


class FeatureExtractor:
    """`extractor(samples) -> {feature: float32 array}` for the features in `spec`, in its order.

    Shapes: logmel (n_mels, n_frames), mfcc (n_mfcc, n_frames), waveform (crops, crop_samples),
    handcrafted (n_segments, 57). Values are finite and, for the float16-stored features,
    clamped to float16's range; a clip whose features are not finite raises `AudioError`.
    Torch's thread count is the caller's business (one per worker in a build).
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        wanted = set(spec.features)
        self._mfcc = MFCC(spec).eval() if "mfcc" in wanted else None
        if self._mfcc is not None:
            self._logmel: LogMel | None = self._mfcc.logmel
        else:
            self._logmel = LogMel(spec).eval() if "logmel" in wanted else None
        self._crop_starts = crop_starts(spec) if "waveform" in wanted else None
        if "handcrafted" in wanted:
            from featurestore import handcrafted  # librosa: imported only by workers that need it

            self._describe = handcrafted.describe

    def __call__(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        spec = self.spec
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if samples.shape != (spec.n_samples,):
            raise ValueError(f"expected {spec.n_samples} samples (the spec's clip), got shape {samples.shape}")
        out: dict[str, np.ndarray] = {}
        if self._logmel is not None:
            with torch.inference_mode():
                logmel = self._logmel(torch.from_numpy(samples))
                if self._mfcc is not None:
                    out["mfcc"] = self._mfcc.from_logmel(logmel).numpy()
                out["logmel"] = logmel.numpy()
        if self._crop_starts is not None:
            out["waveform"] = np.stack([samples[s : s + spec.crop_samples] for s in self._crop_starts])
        if "handcrafted" in spec.features:
            out["handcrafted"] = self._describe(samples, spec)

        features = {}
        for name in spec.features:
            values = np.ascontiguousarray(out[name], dtype=np.float32)
            if not np.isfinite(values).all():
                raise AudioError(f"non-finite feature values ({name})")
            if name in FLOAT16_FEATURES:
                np.clip(values, -FLOAT16_MAX, FLOAT16_MAX, out=values)
            features[name] = values
        return features
