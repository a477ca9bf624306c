"""`mlp`: the MTAT report's baseline, a plain multilayer perceptron on the flattened input."""

from __future__ import annotations

import math

from torch import nn

from trainers.models.layers import mlp_head


class MLP(nn.Module):
    def __init__(self, shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), mlp_head([math.prod(shape), 1024, 512, 256], n_classes, dropout=0.4))

    def forward(self, x):
        return self.net(x)
