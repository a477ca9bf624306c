"""`nnet1`: the FMA report's 1-D CNN on raw waveform crops.

Four conv1d layers with batch norm and ReLU (max pool after the first three), then global max
and average pooling concatenated and a fully connected head. Xavier-uniform weights and zero
biases, as in the report.
"""

from __future__ import annotations

from torch import nn

from trainers.models.layers import MaxAvgPool, mlp_head


def xavier_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class WaveEncoder(nn.Module):
    """(batch, 1, samples) → (batch, 2 * channels[-1]); the first layer strides like a short frame hop."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), stem_kernel: int = 64, stem_stride: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            conv = (
                nn.Conv1d(c_in, c, stem_kernel, stride=stem_stride, padding=stem_kernel // 2)
                if i == 0
                else nn.Conv1d(c_in, c, 3, padding=1)
            )
            layers += [conv, nn.BatchNorm1d(c), nn.ReLU(inplace=True)]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(4, ceil_mode=True))
            c_in = c
        self.net = nn.Sequential(*layers, MaxAvgPool())
        self.out_features = 2 * channels[-1]
        xavier_init(self)

    def forward(self, x):
        return self.net(x)


class NNet1(nn.Module):
    def __init__(self, shape: tuple[int, int], n_classes: int):
        super().__init__()
        self.encoder = WaveEncoder()
        self.head = mlp_head([self.encoder.out_features, 128], n_classes, dropout=0.0)
        xavier_init(self.head)

    def forward(self, x):
        return self.head(self.encoder(x))
