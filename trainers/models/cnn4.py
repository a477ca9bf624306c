"""`cnn4`: the MTAT report's CNN, four conv blocks on a (1, bands, frames) spectrogram and a dense head."""

from __future__ import annotations

from torch import nn

from trainers.models.layers import conv2d_block, output_size


class CNN4(nn.Module):
    def __init__(self, shape: tuple[int, int, int], n_classes: int, channels: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        blocks, c_in = [], shape[0]
        for c in channels:
            blocks.append(conv2d_block(c_in, c))
            c_in = c
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Sequential(
            nn.Linear(output_size(self.features, shape), 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(256, n_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))
