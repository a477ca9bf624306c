"""`c2f`: a YOLOv8-classification-style backbone, built here and trained from scratch.

Conv–BN–SiLU downsampling stages alternate with C2f blocks (cross-stage partial fusion: split
the channels, run bottlenecks on one half, concatenate every intermediate output, fuse with a
1x1 conv), then global average pooling and the report's head: 256 → 128 → 64 units, each
Linear → LayerNorm → SiLU → dropout 0.2. Widths follow YOLOv8n-cls; nothing pretrained can be
downloaded here. With `--image-size` it reads the report's 416x416 or 640x640 images in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNSiLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU(inplace=True))


class Bottleneck(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNSiLU(c, c, 3), ConvBNSiLU(c, c, 3))

    def forward(self, x):
        return x + self.body(x)


class C2f(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int = 1):
        super().__init__()
        self.hidden = c_out // 2
        self.cv1 = ConvBNSiLU(c_in, 2 * self.hidden)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden) for _ in range(n))
        self.cv2 = ConvBNSiLU((2 + n) * self.hidden, c_out)

    def forward(self, x):
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class C2fNet(nn.Module):
    def __init__(self, shape: tuple[int, int, int], n_classes: int,
                 widths: tuple[int, ...] = (16, 32, 64, 128, 256), depths: tuple[int, ...] = (1, 2, 2, 1),
                 dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [ConvBNSiLU(shape[0], widths[0], 3, 2)]
        for c_in, c_out, n in zip(widths, widths[1:], depths):
            layers += [ConvBNSiLU(c_in, c_out, 3, 2), C2f(c_out, c_out, n)]
        self.backbone = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        layers, width = [], widths[-1]
        for units in (256, 128, 64):  # the report's head: each hidden layer LayerNorm, SiLU, then dropout
            layers += [nn.Linear(width, units), nn.LayerNorm(units), nn.SiLU(inplace=True), nn.Dropout(dropout)]
            width = units
        self.head = nn.Sequential(*layers, nn.Linear(width, n_classes))

    def forward(self, x):
        return self.head(self.backbone(x))
