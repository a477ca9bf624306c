"""Where a model's windows lie in a clip, and cutting them out where the rows are read.

The loader workers cut the windows (crop before the copy): a batch carries the bytes the model
reads, not whole clips, so the copy to the device and the transfer between processes shrink with
the crop (gtzan-cnn3's 130-frame windows are a tenth of a 1,292-frame clip). A windowed batch
holds, per spectrogram or waveform array, `(batch, views, ..., length)`; segment arrays pass
through whole.

A window is a (crop, offset) pair over the stored crops laid end to end (a spectrogram is one
crop). Training draws one window per clip at random from the generator it is given; evaluation
takes `eval_crops` evenly spaced windows (the centre one for 1). An aligned waveform + spectrogram
pair (MixNet) cuts the spectrogram at the frame where the waveform window starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from featurestore.spec import FeatureSpec
from trainers.inputs import InputConfig

WINDOWED = ("spectrogram", "waveform")


def window_starts(n_positions: int, batch: int, views: int, rng: np.random.Generator | None) -> np.ndarray:
    """(batch, views) window numbers in 0..n_positions-1: one at random per clip with `rng`
    (training), else `views` evenly spaced ones (the centre one for a single view)."""
    if rng is not None:
        return rng.integers(0, n_positions, (batch, 1))
    if views == 1 or n_positions == 1:
        return np.full((batch, 1), (n_positions - 1) // 2, dtype=np.int64)
    spaced = np.round(np.linspace(0, n_positions - 1, views)).astype(np.int64)
    return np.broadcast_to(spaced, (batch, views))


def _crops(row: np.ndarray, layout: str) -> np.ndarray:
    """A row as (crops, ..., time): a spectrogram is one crop."""
    return row[None] if layout == "spectrogram" else row


class Windows:
    """Raw store rows of one batch -> the windows the model reads, as tensors (see the module doc)."""

    def __init__(self, spec: FeatureSpec, config: InputConfig):
        self.config = config
        self.features = {f.name: f for f in config.features(spec)}
        self.lengths = {"spectrogram": config.crop_frames, "waveform": config.crop_samples}
        self.aligned = self._aligned_pair()

    def _aligned_pair(self) -> tuple[str, str] | None:
        """(waveform, spectrogram) names of an aligned pair of built-in arrays, else None."""
        layouts = {f.layout: name for name, f in self.features.items()}
        if not self.config.aligned or len(self.features) != 2 or set(layouts) != set(WINDOWED):
            return None
        wave, spectro = layouts["waveform"], layouts["spectrogram"]
        if not hasattr(self.features[spectro].settings, "hop") or not hasattr(self.features[wave], "starts"):
            return None  # a plug-in's arrays: no frame grid to align on
        return wave, spectro

    def length(self, name: str, row_length: int) -> int:
        return self.lengths[self.features[name].layout] or row_length

    def positions(self, rows: dict[str, Sequence[np.ndarray]], train: bool,
                  rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """(batch, views) window numbers per windowed array; `rng` draws the training windows."""
        views, out = self.config.eval_crops, {}
        draw = rng if train else None
        for name, feature in self.features.items():
            if feature.layout in WINDOWED:
                crops, t = _crops(rows[name][0], feature.layout).shape[0], rows[name][0].shape[-1]
                out[name] = window_starts(crops * (t - self.length(name, t) + 1), len(rows[name]), views, draw)
        if self.aligned:
            wave, spectro = self.aligned
            t, frames = rows[wave][0].shape[-1], rows[spectro][0].shape[-1]
            per_crop = t - self.length(wave, t) + 1
            first_sample = self.features[wave].starts()[out[wave] // per_crop] + out[wave] % per_crop
            hop = self.features[spectro].settings.hop
            room = frames - self.length(spectro, frames)
            out[spectro] = np.clip((first_sample + hop // 2) // hop, 0, room)
        return out

    def __call__(self, rows: dict[str, Sequence[np.ndarray]], train: bool,
                 rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each array's rows (one per sample) -> a tensor: windows `(batch, views, ..., length)`,
        or the stacked rows of a segment array. Inside a DataLoader worker the tensors are
        written straight into shared memory (`default_collate`)."""
        positions = self.positions(rows, train, rng)
        out = {}
        for name, samples in rows.items():
            if name not in positions:
                out[name] = default_collate([torch.from_numpy(np.asarray(r)) for r in samples])
                continue
            layout, where = self.features[name].layout, positions[name]
            t = samples[0].shape[-1]
            length = self.length(name, t)
            per_crop = t - length + 1
            cut = [_crops(row, layout)[g // per_crop, ..., g % per_crop:g % per_crop + length]
                   for row, gs in zip(samples, where) for g in gs]
            stacked = default_collate([torch.from_numpy(w) for w in cut])
            out[name] = stacked.view(len(samples), where.shape[1], *stacked.shape[1:])
        return out
