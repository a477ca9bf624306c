"""`mixnet`: the FMA report's fusion model, nnet1's and nnet2's encoders side by side on (waveform, MFCC)."""

from __future__ import annotations

import torch
from torch import nn

from trainers.models.layers import mlp_head
from trainers.models.nnet1 import WaveEncoder
from trainers.models.nnet2 import SpecEncoder


class MixNet(nn.Module):
    def __init__(self, shape: tuple[tuple[int, int], tuple[int, int, int]], n_classes: int):
        super().__init__()
        self.wave = WaveEncoder()
        self.spec = SpecEncoder()
        width = self.wave.out_features + self.spec.out_features
        self.head = mlp_head([width, 512, 256, 128], n_classes, dropout=0.1)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        waveform, mfcc = x
        return self.head(torch.cat([self.wave(waveform), self.spec(mfcc)], dim=1))
