"""`ffnn`: the GTZAN features report's feed-forward net on the handcrafted descriptor vector."""

from __future__ import annotations

from torch import nn

from trainers.models.layers import mlp_head


class FFNN(nn.Module):
    def __init__(self, shape: tuple[int], n_classes: int):
        super().__init__()
        self.net = mlp_head([shape[0], 512, 256, 128, 64, 32], n_classes, dropout=0.4)

    def forward(self, x):
        return self.net(x)
