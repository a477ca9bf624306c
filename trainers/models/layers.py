"""Small building blocks shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


def conv2d_block(c_in: int, c_out: int, *, pool: int | None = 2) -> nn.Sequential:
    """conv 3x3 → batch norm → ReLU (→ max pool). `ceil_mode` keeps short inputs from vanishing."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(pool, ceil_mode=True))
    return nn.Sequential(*layers)


class MaxAvgPool(nn.Module):
    """Global max and global average pooling over every axis after the channels, concatenated."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        return torch.cat([flat.amax(-1), flat.mean(-1)], dim=1)


@torch.no_grad()
def output_size(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Features per sample that `module` produces for inputs of `shape`: heads adapt to the store's sizes."""
    was_training = module.training
    module.eval()
    size = module(torch.zeros(1, *shape)).flatten(1).shape[1]
    module.train(was_training)
    return int(size)


def mlp_head(sizes: list[int], n_classes: int, dropout: float) -> nn.Sequential:
    """Linear → ReLU → dropout for each step of `sizes`, then the classifier layer."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    layers.append(nn.Linear(sizes[-1], n_classes))
    return nn.Sequential(*layers)
