"""A run's options as one flat mapping, the way people type them: defaults < recipe < --config file < flags.

Every `featurestore train` flag is an option of the same name (`--batch-size` is `batch_size`).
`resolve` layers them and `to_config` turns the result into the typed `TrainConfig`; the flat
mapping is also what RUN/config.json records under "options" and what `tune` writes as its best
configuration, so `train --config FILE` accepts either.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from featurestore.settings import FORBID, Field, parse

from featurestore.errors import UserError
from trainers.augment import AugmentConfig
from trainers.config import TrainConfig
from trainers.inputs import InputConfig
from trainers.io import read_json

PROBABILITIES = ("wave_noise_p", "wave_mask_p", "time_mask_p", "freq_mask_p", "feature_noise_p")


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1, le=2**31 - 1)]


@dataclass(frozen=True)
class Options:
    """Every option's type and range: a --config file's values (and the layered result) are checked
    like flags, one line naming the option and the value. Defaults stand in for absent keys."""

    __pydantic_config__ = FORBID

    recipe: str | None = None
    model: str | None = None
    input: str | None = None
    task: Literal["multilabel", "multiclass"] | None = None
    epochs: Count = 30
    batch_size: Annotated[int, Field(ge=1, le=2**16)] = 32
    lr: Annotated[float, Field(gt=0.0, le=10.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0, le=10.0)] = 1e-4
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    scheduler: Literal["plateau", "none"] = "plateau"
    lr_patience: Annotated[int, Field(ge=0, le=10**6)] = 3
    lr_factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    patience: Count | None = None
    monitor: Literal["val_roc_auc", "val_pr_auc", "val_accuracy", "val_macro_f1", "val_loss"] | None = None
    class_weights: Literal["balanced"] | None = None
    crop_frames: Count | None = None
    crop_samples: Count | None = None
    eval_crops: Annotated[int, Field(ge=1, le=1000)] = 1
    segments: Literal["split", "flat"] = "split"
    aligned_crops: bool = True
    image_size: Annotated[int, Field(ge=16, le=2048)] | None = None
    augment: bool = True
    aug_prob: Probability = 0.5
    wave_noise_p: Probability | None = None
    wave_mask_p: Probability | None = None
    time_mask_p: Probability | None = None
    freq_mask_p: Probability | None = None
    feature_noise_p: Probability | None = None
    time_mask: Annotated[int, Field(ge=0, le=10**6)] = 30
    freq_mask: Annotated[int, Field(ge=0, le=10**6)] = 2
    noise_sigma: Annotated[float, Field(ge=0.0, le=100.0)] = 0.015
    split: str | None = None
    valid_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    folds: Annotated[int, Field(ge=2, le=1000)] | None = None
    init_from: list[str] | None = None
    freeze_encoders: bool = False
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool = False
    compile: bool = False
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    num_workers: Annotated[int, Field(ge=0, le=1024)] = 4
    block_clips: Count | None = None
    shuffle_buffer: Count | None = None
    allow_partial: bool = False
    verify_store: bool = False


# The plain `--model X` defaults: the MTAT report's optimisation (Adam 1e-3, weight decay 1e-4,
# batch 32, 30 epochs) with ReduceLROnPlateau and the FMA report's augmentations at p = 0.5.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Options)}


def check_values(options: dict[str, Any], where: str) -> None:
    """Each option's type and range (`Options`), else one line naming `where`, the option and its value."""
    parse(Options, {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}, where)


def check_names(options: dict[str, Any], where: str) -> None:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)} (options are the `featurestore train` "
                        f"flags with _ for -, e.g. batch_size)")


def read_options(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file of options: a flat mapping, or a run's config.json / tune's best.json ({"options": {...}})."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--config {path}: no such file: give a JSON file of options, a run's config.json "
                        "or the best.json `featurestore tune` wrote")
    try:
        data = read_json(p)
    except ValueError as exc:
        raise UserError(f"--config {path}: not valid JSON ({exc})") from None
    options = data.get("options", data) if isinstance(data, dict) else None
    if not isinstance(options, dict):
        raise UserError(f"--config {path}: expected a JSON object of options")
    options = {k: v for k, v in options.items() if k not in ("store", "out", "resume")}
    if "amp" in options:  # files written before --precision: --no-amp was float32
        options["precision"] = "auto" if options.pop("amp") else "fp32"
    check_names(options, f"--config {path}")
    check_values(options, f"--config {path}")
    return options


def resolve(*, recipe: str | None = None, config_file: str | None = None,
            flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every option's value: the defaults, then the recipe's, then the file's, then the flags given."""
    from trainers.recipes import recipe_options

    flags = dict(flags or {})
    check_names(flags, "featurestore train")
    from_file = read_options(config_file) if config_file else {}
    name = recipe or flags.get("recipe") or from_file.get("recipe")
    options = {**DEFAULTS, **(recipe_options(name) if name else {}), **from_file, **flags, "recipe": name}
    check_values(options, "featurestore train options")
    if options["model"] is None:
        raise UserError("featurestore train needs --model NAME or --recipe NAME (see `featurestore models` and "
                        "`featurestore recipes`)")
    return options


def augment_config(o: dict[str, Any]) -> AugmentConfig:
    """Each probability as given, else --aug-prob; all zero with --no-augment."""
    p = {name: (o[name] if o[name] is not None else o["aug_prob"]) if o["augment"] else 0.0 for name in PROBABILITIES}
    return AugmentConfig(**p, time_mask_bins=o["time_mask"], freq_mask_bins=o["freq_mask"],
                         feature_noise_sigma=o["noise_sigma"])


def to_config(store: str, out: str, options: dict[str, Any], resume: bool = False) -> TrainConfig:
    from trainers.models import model_info

    o = options
    inputs = InputConfig(kind=o["input"] or model_info(o["model"]).natural_input, crop_frames=o["crop_frames"],
                         crop_samples=o["crop_samples"], eval_crops=o["eval_crops"], segments=o["segments"] == "split",
                         aligned=o["aligned_crops"], image_size=o["image_size"])
    return TrainConfig(
        store=store, model=o["model"], out=out, input=inputs, augment=augment_config(o), task=o["task"],
        epochs=o["epochs"], batch_size=o["batch_size"], lr=o["lr"], weight_decay=o["weight_decay"],
        optimizer=o["optimizer"], momentum=o["momentum"], scheduler=o["scheduler"], lr_patience=o["lr_patience"],
        lr_factor=o["lr_factor"], patience=o["patience"], monitor=o["monitor"], class_weights=o["class_weights"],
        device=o["device"], precision=o["precision"], channels_last=o["channels_last"], compile=o["compile"],
        seed=o["seed"], num_workers=o["num_workers"], block_clips=o["block_clips"],
        shuffle_buffer=o["shuffle_buffer"], folds=o["folds"], split=o["split"], valid_fraction=o["valid_fraction"],
        init_from=tuple(o["init_from"]) if o["init_from"] else None, freeze_encoders=o["freeze_encoders"],
        recipe=o["recipe"], allow_partial=o["allow_partial"], verify_store=o["verify_store"], resume=resume,
    )


def from_config(config: TrainConfig) -> dict[str, Any]:
    """The options that make `config` again (what RUN/config.json records under "options")."""
    c, i, a = config, config.input, config.augment
    same = {k: getattr(c, k) for k in DEFAULTS if hasattr(c, k) and k not in ("input",)}
    return {**same, "input": i.kind, "crop_frames": i.crop_frames, "crop_samples": i.crop_samples,
            "eval_crops": i.eval_crops, "segments": "split" if i.segments else "flat", "aligned_crops": i.aligned,
            "image_size": i.image_size, "augment": True, **{p: getattr(a, p) for p in PROBABILITIES},
            "time_mask": a.time_mask_bins, "freq_mask": a.freq_mask_bins, "noise_sigma": a.feature_noise_sigma,
            "init_from": list(c.init_from) if c.init_from else None}
