"""`cnn3`: the GTZAN report's CNN, three conv blocks (32/64/128), adaptive average pooling, dense 256 → 128."""

from __future__ import annotations

from torch import nn

from trainers.models.layers import conv2d_block


def _dense(a: int, b: int) -> list[nn.Module]:
    return [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU(inplace=True), nn.Dropout(0.5)]


class CNN3(nn.Module):
    def __init__(self, shape: tuple[int, int, int], n_classes: int):
        super().__init__()
        self.net = nn.Sequential(
            conv2d_block(shape[0], 32),
            conv2d_block(32, 64),
            conv2d_block(64, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            *_dense(128, 256),
            *_dense(256, 128),
            nn.Linear(128, n_classes),
        )

    def forward(self, x):
        return self.net(x)
