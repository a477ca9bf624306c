"""Train-time augmentation on whole device batches, each transform applied per sample with a probability.

Defaults are the FMA report's recipes: Gaussian noise on waveforms (p=0.5, amplitude 0.001–0.015),
waveform time masks of 10–15 % of the crop, SpecAugment masks of up to 30 time bins and 2
frequency (MFCC) bins, Gaussian noise of sigma 0.015 on normalised features. Randomness comes
from torch's global generator, which the training loop seeds per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.transforms as T
from torch import nn

from featurestore.errors import UserError


@dataclass(frozen=True)
class AugmentConfig:
    wave_noise_p: float = 0.5
    wave_noise_amplitude: tuple[float, float] = (0.001, 0.015)
    wave_mask_p: float = 0.5
    wave_mask_fraction: tuple[float, float] = (0.10, 0.15)
    time_mask_p: float = 0.5
    time_mask_bins: int = 30
    freq_mask_p: float = 0.5
    freq_mask_bins: int = 2
    feature_noise_p: float = 0.5
    feature_noise_sigma: float = 0.015

    def __post_init__(self) -> None:
        probabilities = (self.wave_noise_p, self.wave_mask_p, self.time_mask_p, self.freq_mask_p, self.feature_noise_p)
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise UserError("augmentation probabilities (--aug-prob) must lie in [0, 1]")

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(wave_noise_p=0.0, wave_mask_p=0.0, time_mask_p=0.0, freq_mask_p=0.0, feature_noise_p=0.0)


def _chosen(x: torch.Tensor, p: float) -> torch.Tensor:
    """Per-sample Bernoulli(p) mask, shaped to broadcast over `x`'s non-batch axes."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, *([1] * (x.dim() - 1)))


class Augment(nn.Module):
    def __init__(self, config: AugmentConfig):
        super().__init__()
        self.config = config

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, bands, frames), normalised: SpecAugment masks (to the mean, 0) and feature noise."""
        c = self.config
        if c.time_mask_p > 0:
            masked = T.TimeMasking(min(c.time_mask_bins, x.shape[-1]), iid_masks=True)(x)
            x = torch.where(_chosen(x, c.time_mask_p), masked, x)
        if c.freq_mask_p > 0:
            masked = T.FrequencyMasking(min(c.freq_mask_bins, x.shape[-2]), iid_masks=True)(x)
            x = torch.where(_chosen(x, c.freq_mask_p), masked, x)
        return self.vector(x)

    def vector(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features of any shape: additive Gaussian noise of sigma `feature_noise_sigma`."""
        c = self.config
        if c.feature_noise_p > 0:
            x = x + _chosen(x, c.feature_noise_p) * torch.randn_like(x) * c.feature_noise_sigma
        return x

    def waveform(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples): Gaussian noise of a random amplitude, then a zeroed span of the crop."""
        c = self.config
        if c.wave_noise_p > 0:
            lo, hi = c.wave_noise_amplitude
            amplitude = torch.empty(x.shape[0], 1, 1, device=x.device).uniform_(lo, hi)
            x = x + _chosen(x, c.wave_noise_p) * amplitude * torch.randn_like(x)
        if c.wave_mask_p > 0:
            n = x.shape[-1]
            lo, hi = c.wave_mask_fraction
            span = (torch.empty(x.shape[0], 1, 1, device=x.device).uniform_(lo, hi) * n).long()
            start = (torch.rand(x.shape[0], 1, 1, device=x.device) * (n - span + 1)).long()
            t = torch.arange(n, device=x.device)
            masked = (t >= start) & (t < start + span) & _chosen(x, c.wave_mask_p)
            x = x.masked_fill(masked, 0.0)
        return x
