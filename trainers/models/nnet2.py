"""`nnet2`: the FMA report's residual CNN for MFCC input.

A stem conv lifts the single input plane to `channels`; a residual block of three conv2d
layers with equal channels (batch norm after each) adds its input back before the last ReLU;
concatenated global max and average pooling feed four fully connected layers.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import MaxAvgPool, mlp_head


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class SpecEncoder(nn.Module):
    """(batch, 1, bands, frames) → (batch, 2 * channels)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            ResidualBlock(channels),
            MaxAvgPool(),
        )
        self.out_features = 2 * channels

    def forward(self, x):
        return self.net(x)


class NNet2(nn.Module):
    def __init__(self, shape: tuple[int, int, int], n_classes: int):
        super().__init__()
        self.encoder = SpecEncoder()
        self.head = mlp_head([self.encoder.out_features, 256, 128, 64], n_classes, dropout=0.0)

    def forward(self, x):
        return self.head(self.encoder(x))
