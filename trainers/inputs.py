"""What a model sees: input kinds, their per-sample shapes, and the device-side batch pipeline.

The loaders hand over the windows the model reads, cut from the stored rows in the loader
workers (`trainers.windows`) and still in the store's dtype (float16 spectrograms and waveforms,
float32 descriptors). Everything numeric happens here, on the training device: normalisation
with the store's statistics, images for the YOLO report's input, augmentation at train time,
and at evaluation the views (crops or segments) whose predictions are averaged per clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from featurestore.errors import UserError
from featurestore.features import Feature
from featurestore.spec import FeatureSpec
from trainers.augment import Augment, AugmentConfig


@dataclass(frozen=True)
class InputConfig:
    """How clips become model inputs.

    `kind` names the store arrays the model reads: one array (`logmel`, `logmel128`, `mfcc`, a
    plug-in's), or two joined by `+` (`waveform+mfcc`).

    `crop_frames` / `crop_samples`: train on random windows of that length (None: the whole
    clip / stored crop); evaluate on `eval_crops` evenly spaced windows (1: the centre one).
    `segments`: handcrafted descriptors as one training sample per segment, evaluated per clip by
    averaging its segments (GTZAN features report); False flattens all segments into one vector.
    `aligned`: for a waveform + spectrogram pair, the spectrogram window starts at the frame of
    the waveform window's first sample, so both cover the same seconds (MixNet), in training and
    evaluation alike. `image_size`: spectrogram windows become S x S three-channel images, each
    scaled to [0, 1] by its own minimum and maximum (a rendered spectrogram, the YOLO report's
    input), instead of being normalised with the store's statistics.
    """

    kind: str
    crop_frames: int | None = None
    crop_samples: int | None = None
    eval_crops: int = 1
    segments: bool = True
    aligned: bool = True  # a waveform + spectrogram pair: both windows cover the same seconds
    image_size: int | None = None  # spectrograms as square images scaled to [0, 1] (the YOLO report)

    @property
    def arrays(self) -> tuple[str, ...]:
        return tuple(self.kind.split("+"))

    def features(self, spec: FeatureSpec) -> tuple[Feature, ...]:
        """The features of the input's arrays in `spec`."""
        return tuple(spec.feature(name) for name in self.arrays)

    def explode_segments(self, spec: FeatureSpec) -> bool:
        """Whether each segment of a clip is a training sample of its own."""
        return self.segments and len(self.arrays) == 1 and spec.feature(self.kind).layout == "segments"

    def validate(self, spec: FeatureSpec, where: str) -> None:
        missing = [a for a in self.arrays if a not in spec.arrays]
        if missing or len(set(self.arrays)) != len(self.arrays):
            raise UserError(
                f"{where} has no {', '.join(missing) or self.kind} array to read (it holds {', '.join(spec.names)}): "
                f"rebuild it with --features including {', '.join(missing) or self.kind}, or pick an --input or a "
                "model for its arrays"
            )
        if self.eval_crops < 1:
            raise UserError("--eval-crops must be >= 1")
        if self.image_size is not None and not 16 <= self.image_size <= 2048:
            raise UserError("--image-size must lie in 16..2048 pixels")
        crops = {"spectrogram": ("--crop-frames", self.crop_frames), "waveform": ("--crop-samples", self.crop_samples)}
        for feature in self.features(spec):
            name = feature.name
            flag, crop = crops.get(feature.layout, ("", None))
            length = feature.clip_shape()[-1]
            if crop is not None and not 0 < crop <= length:
                raise UserError(f"{flag} must lie in 1..{length} ({feature.dims[-1]}s per clip of {name} in {where})")

    def sample_shape(self, spec: FeatureSpec):
        """Per-sample model input shape (a pair of shapes for a pair of features)."""
        picked = tuple(self._shape(feature) for feature in self.features(spec))
        return picked if len(picked) > 1 else picked[0]

    def _shape(self, feature) -> tuple[int, ...]:
        rows, length = feature.clip_shape()
        if feature.layout == "spectrogram":
            return (3, self.image_size, self.image_size) if self.image_size else (1, rows, self.crop_frames or length)
        if feature.layout == "waveform":
            return (1, self.crop_samples or length)
        return (length,) if self.segments else (rows * length,)


def valid_segments(length: np.ndarray, feature: Feature) -> np.ndarray:
    """(clips, segments) bool: segments of a segments-layout feature (its `segment_samples` and
    `n_segments`) that start inside the decoded audio (at least the first)."""
    n = np.clip(np.ceil(np.asarray(length) / feature.segment_samples), 1, feature.n_segments).astype(np.int64)
    return np.arange(feature.n_segments)[None, :] < n[:, None]


class InputPipeline(nn.Module):
    """Windowed batch on the device → model input; holds the normalisation statistics as buffers.

    Its state dict travels in the checkpoints, so `predict` normalises exactly as training did
    without opening the store.
    """

    def __init__(self, spec: FeatureSpec, config: InputConfig, augment: AugmentConfig | None = None):
        super().__init__()
        self.spec, self.config = spec, config
        self.explode = config.explode_segments(spec)
        self.augment = Augment(augment or AugmentConfig.off())
        self.features = {feature.name: feature for feature in config.features(spec)}
        self.layouts = {name: feature.layout for name, feature in self.features.items()}
        for name, feature in self.features.items():
            if feature.normalised:
                self.register_buffer(f"{name}_mean", torch.zeros(feature.stats_size))
                self.register_buffer(f"{name}_std", torch.ones(feature.stats_size))

    def set_stats(self, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for name, (mean, std) in stats.items():
            std = np.where(np.isfinite(std) & (std > 0), std, 1.0)  # a constant band stays constant
            getattr(self, f"{name}_mean").copy_(torch.as_tensor(np.asarray(mean, dtype=np.float32)))
            getattr(self, f"{name}_std").copy_(torch.as_tensor(np.asarray(std, dtype=np.float32)))

    def _normalise(self, name: str, x: torch.Tensor, axis: int) -> torch.Tensor:
        if not hasattr(self, f"{name}_mean"):  # a feature the store keeps no statistics for
            return x.float()
        shape = [1] * x.dim()
        shape[axis] = -1
        mean, std = getattr(self, f"{name}_mean").view(shape), getattr(self, f"{name}_std").view(shape)
        return (x.float() - mean) / std

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        """(b, v, bands, frames) → (b, v, 3, S, S): each window resized, then scaled to [0, 1] by its extremes."""
        b, v = x.shape[:2]
        size = self.config.image_size
        image = nn.functional.interpolate(x.float().reshape(b * v, 1, *x.shape[2:]), size=(size, size),
                                          mode="bilinear", align_corners=False).flatten(1)
        lo, hi = image.amin(-1, keepdim=True), image.amax(-1, keepdim=True)
        image = (image - lo) / (hi - lo).clamp_min(1e-6)
        return image.view(b * v, 1, size, size).expand(-1, 3, -1, -1).reshape(b, v, 3, size, size)

    def _one(self, name: str, x: torch.Tensor, train: bool) -> torch.Tensor:
        """One array of a windowed batch (`trainers.windows`) -> (batch, views, *sample shape)."""
        c = self.config
        if self.layouts[name] == "spectrogram":  # (b, v, bands, frames)
            if c.image_size:
                x = self._image(x)
            else:
                x = self._normalise(name, x, -2).unsqueeze(2)  # (b, v, 1, bands, frames)
            if train:
                x = self.augment.spectrogram(x[:, 0]).unsqueeze(1)
            return x
        if self.layouts[name] == "waveform":  # (b, v, samples)
            x = x.float().unsqueeze(2)
            if train:
                x = self.augment.waveform(x[:, 0]).unsqueeze(1)
            return x
        x = self._normalise(name, x, -1)  # segments: (b, values) per segment or (b, segments, values)
        if c.segments:
            x = x.unsqueeze(1) if train else x
        else:
            x = x.flatten(1).unsqueeze(1)
        if train:
            x = self.augment.vector(x)
        return x

    def forward(self, batch: dict[str, torch.Tensor], train: bool):
        """A windowed batch (`trainers.windows.Windows`) -> (model input, view weights): input rows
        are (batch * views); weights (batch, views)."""
        parts = [self._one(name, batch[name], train) for name in self.config.arrays]
        views = max(p.shape[1] for p in parts)
        parts = [p.expand(-1, views, *p.shape[2:]) if p.shape[1] == 1 else p for p in parts]
        flat = [p.reshape(-1, *p.shape[2:]) for p in parts]
        b = parts[0].shape[0]
        if not train and self.explode:  # a track's views are its decoded segments
            weights = batch["valid"].float()
        else:
            weights = torch.ones(b, views, device=flat[0].device)
        return (tuple(flat) if len(flat) > 1 else flat[0]), weights


def average_views(probabilities: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(batch * views, classes) probabilities → (batch, classes), weighted over each clip's views."""
    b, v = weights.shape
    p = probabilities.view(b, v, -1)
    return (p * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-12)
