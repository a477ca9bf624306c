"""A training run's configuration: typed, frozen, and written to RUN/config.json to rerun it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.errors import UserError
from trainers.augment import AugmentConfig
from trainers.inputs import InputConfig
from trainers.io import read_json

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("plateau", "none")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# Options that may differ when an interrupted run is resumed: where and how fast, not what.
RESUMABLE_CHANGES = {"epochs", "num_workers", "device", "resume", "patience", "precision", "channels_last", "compile"}


@dataclass(frozen=True)
class TrainConfig:
    """Defaults reproduce the MTAT report: Adam 1e-3, weight decay 1e-4, batch 32, 30 epochs."""

    store: str
    model: str
    out: str
    input: InputConfig
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    task: str | None = None  # None: multilabel if any clip has several labels
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9  # sgd only
    scheduler: str = "plateau"
    lr_patience: int = 3
    lr_factor: float = 0.5
    patience: int | None = None  # early stopping after this many epochs without improvement
    monitor: str | None = None  # None: val_roc_auc (multilabel) or val_accuracy (multiclass)
    class_weights: str | None = None  # "balanced"
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA with bf16, fp16 + GradScaler without; fp32 on the CPU
    channels_last: bool = False  # 4-D inputs and convolution weights in channels-last layout
    compile: bool = False  # torch.compile the model for training steps
    seed: int = 0
    num_workers: int = 4
    block_clips: int | None = None  # None: from the store's chunk and shard sizes
    shuffle_buffer: int | None = None  # clips; None: about 256 MB of rows
    folds: int | None = None
    split: str | None = None  # "70/30": re-split every usable clip into train/test, valid from train; None: the manifest's
    valid_fraction: float = 0.1  # with `split`: the share of train (by group) held out for selection
    init_from: tuple[str, ...] | None = None  # runs whose encoders start the model (mixnet: nnet1, nnet2)
    freeze_encoders: bool = False  # train only the classifier on top of `init_from`'s encoders
    recipe: str | None = None  # the named setup these options came from (trainers.recipes)
    allow_partial: bool = False
    verify_store: bool = False  # re-hash every shard before training (default: check files against records)
    resume: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"--scheduler must be one of {', '.join(SCHEDULERS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}")
        if self.class_weights not in (None, "balanced"):
            raise UserError("--class-weights takes 'balanced'")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError("--device must be auto, cpu or cuda")
        for name in ("epochs", "batch_size", "block_clips", "shuffle_buffer"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.num_workers < 0:
            raise UserError("--num-workers must be >= 0")
        if self.folds is not None and self.folds < 2:
            raise UserError("--folds must be >= 2")
        if not 0.0 < self.valid_fraction < 1.0:
            raise UserError("--valid-fraction must lie strictly between 0 and 1")
        if self.split == "manifest":
            object.__setattr__(self, "split", None)  # said explicitly, e.g. to undo a recipe's re-split
        if self.split is not None:
            parse_split(self.split)
        if self.freeze_encoders and not self.init_from:
            raise UserError(f"{'recipe ' + self.recipe if self.recipe else '--freeze-encoders'} trains only the "
                            "classifier on trained encoders: pass --init-from RUN_NNET1 RUN_NNET2 (runs of the "
                            "fma-nnet1 and fma-nnet2 recipes), or --no-freeze-encoders to train everything from scratch")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "amp" in d:  # runs written before --precision: --no-amp was float32
            d["precision"] = "auto" if d.pop("amp") else "fp32"
        d["input"] = InputConfig(**d["input"])
        if d.get("init_from"):
            d["init_from"] = tuple(d["init_from"])
        d["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d["augment"].items()})
        return cls(**d)

    def workers(self) -> int:
        """The requested DataLoader workers, never more than the cores this process may use."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(0, min(self.num_workers, cores))


def parse_split(text: str) -> tuple[float, float]:
    """'70/30' -> (0.7, 0.3): train and test shares of every usable clip."""
    try:
        train, test = (float(v) for v in text.split("/"))
    except ValueError:
        train = test = 0.0
    if not (train > 0 and test > 0):
        raise UserError(f"--split {text!r}: expected two positive numbers like 70/30 (train/test), or manifest")
    return train / (train + test), test / (train + test)


def trained_on(resolved: dict[str, Any], arrays: tuple[str, ...]) -> str:
    """The identity of the arrays a run read (`featurestore.store.commits.inputs_hash`), from the
    spec its config.json recorded: a run written before stores had named arrays compares equal
    to a store of today with the same settings."""
    from featurestore.spec import FeatureSpec
    from featurestore.store.commits import inputs_hash

    return inputs_hash(FeatureSpec.from_dict(resolved["spec"], "the run's config.json"), arrays)


def load_run(run: str | os.PathLike) -> dict[str, Any]:
    """RUN/config.json: {"train": TrainConfig fields, "resolved": what the store and data decided}."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise UserError(f"{run}: no config.json there: give the --out folder of a `featurestore train` run")
    data = read_json(path)
    data["train"] = TrainConfig.from_dict(data["train"])
    return data
