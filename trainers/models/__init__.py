"""The model zoo: one registry entry per published setup, each with the input kinds it reads.

`build_model` checks the input's features (their kinds, or their layout for the models that read
any feature of a layout, plug-ins included) before building, and installs a forward pre-hook that
checks every batch's shape, so a model fed the wrong feature fails with one clear `UserError`
instead of a shape error deep inside a conv layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from featurestore.errors import UserError
from featurestore.features import Feature
from trainers.models.c2f import C2fNet
from trainers.models.cnn1d_features import CNN1DFeatures
from trainers.models.cnn3 import CNN3
from trainers.models.cnn4 import CNN4
from trainers.models.ffnn import FFNN
from trainers.models.mixnet import MixNet
from trainers.models.mlp import MLP
from trainers.models.nnet1 import NNet1
from trainers.models.nnet2 import NNet2

Shape = tuple[int, ...] | tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    inputs: tuple[str, ...]  # feature kinds it was published with ("+" joins a pair); the first is its natural one
    source: str
    factory: Callable[[Any, int], nn.Module]
    layouts: tuple[str, ...] = ()  # it also reads any single feature of these layouts (plug-ins included)

    def accepts(self, features: Sequence[Feature]) -> bool:
        """Whether it reads an input made of these features (arrays of any name)."""
        if "+".join(f.kind for f in features) in self.inputs:
            return True
        return len(features) == 1 and features[0].layout in self.layouts

    @property
    def natural_input(self) -> str:
        return self.inputs[0]


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("mlp", ("logmel", "mfcc", "handcrafted"), "MTAT report baseline: 1024-512-256 MLP", MLP,
                  ("spectrogram", "segments")),
        ModelInfo("cnn4", ("logmel", "mfcc"), "MTAT report: 4 conv blocks + dense head", CNN4, ("spectrogram",)),
        ModelInfo("cnn3", ("logmel", "mfcc"), "GTZAN report: 32/64/128 conv, dense 256-128", CNN3, ("spectrogram",)),
        ModelInfo("nnet1", ("waveform",), "FMA report: 1-D CNN on waveform crops", NNet1, ("waveform",)),
        ModelInfo("nnet2", ("mfcc", "logmel"), "FMA report: residual 2-D CNN on MFCC", NNet2, ("spectrogram",)),
        ModelInfo("mixnet", ("waveform+mfcc",), "FMA report: nnet1 + nnet2 fused", MixNet),
        ModelInfo("ffnn", ("handcrafted",), "GTZAN features report: 512-256-128-64-32 FFNN", FFNN, ("segments",)),
        ModelInfo("cnn1d_features", ("handcrafted",), "GTZAN features report: 1-D CNN on descriptors", CNN1DFeatures,
                  ("segments",)),
        ModelInfo("c2f", ("logmel", "mfcc"), "GTZAN YOLO report: YOLOv8-cls-style C2f backbone", C2fNet,
                  ("spectrogram",)),
    )
}


def model_info(name: str) -> ModelInfo:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(
            f"unknown model {name!r}: choose from {', '.join(MODELS)} (see `featurestore models`)"
        ) from None


def check_input(name: str, features: Sequence[Feature]) -> None:
    """Refuse, in one line, a model that does not read an input made of `features`."""
    info = model_info(name)
    if not info.accepts(features):
        also = f" (or any {' or '.join(info.layouts)} feature)" if info.layouts else ""
        kinds = "+".join(f.kind for f in features)
        arrays = "+".join(f.name for f in features)
        raise UserError(
            f"model {name} reads {' or '.join(info.inputs)}{also} input, not {arrays} ({kinds}): "
            f"choose --input {info.natural_input} or a model for {kinds} input "
            f"({', '.join(m.name for m in MODELS.values() if m.accepts(features)) or 'none'})"
        )


def build_model(name: str, features: Sequence[Feature], shape: Shape, n_classes: int) -> nn.Module:
    """Model `name` for per-sample inputs of `shape` (a pair of shapes for a pair of features)."""
    check_input(name, features)
    model = model_info(name).factory(shape, n_classes)
    model.register_forward_pre_hook(_shape_check(name, "+".join(f.name for f in features), len(features) > 1, shape))
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shape_check(name: str, kind: str, pair: bool, shape: Shape) -> Callable:
    expected = tuple(tuple(s) for s in shape) if pair else (tuple(shape),)

    def hook(module: nn.Module, args: tuple) -> None:
        x = args[0]
        tensors = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        got = tuple(tuple(t.shape[1:]) for t in tensors if isinstance(t, torch.Tensor))
        if len(tensors) != len(expected) or got != expected:
            raise UserError(
                f"model {name} was built for {kind} input of shape {' + '.join(map(str, expected))} per sample, "
                f"got {' + '.join(map(str, got)) or type(x).__name__}: feed it the {kind} features it was trained on"
            )

    return hook
