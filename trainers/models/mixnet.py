"""`mixnet`: the FMA report's fusion model, nnet1's and nnet2's encoders side by side on (waveform, MFCC).

The report starts both encoders from trained NNET1 and NNET2 runs and trains only the head
(`trainers.transfer`, `featurestore train --init-from RUN1 RUN2 --freeze-encoders`)."""

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

    def freeze_encoders(self) -> None:
        """Train only the head: encoder weights fixed, their batch norms kept in eval mode."""
        self.frozen = True
        for p in [*self.wave.parameters(), *self.spec.parameters()]:
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> MixNet:
        super().train(mode)
        if getattr(self, "frozen", False):
            self.wave.eval()
            self.spec.eval()
        return self

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        waveform, mfcc = x
        return self.head(torch.cat([self.wave(waveform), self.spec(mfcc)], dim=1))
