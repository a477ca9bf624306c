"""The published setups as named recipes: each report's model, optimisation, augmentation and crops,
and the search space its authors tuned over.

A recipe is a set of `featurestore train` options (`trainers.options`) applied over the plain
defaults and under any flag given, so every value stays overridable. Values the audit of the
reports did not find stated are marked as ours in `ours`, so the README table can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurestore.errors import UserError
from trainers.published import Published

# --- search-space entries: (kind, low, high) for "log"/"float"/"int", ("choice", [values]) ---
Space = dict[str, tuple]

MTAT = {"epochs": 30, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "none",
        "augment": False, "monitor": "val_roc_auc"}
FMA = {"epochs": 100, "patience": 10, "batch_size": 64, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.005,
       "scheduler": "plateau", "monitor": "val_loss", "augment": True,
       "wave_noise_p": 0.5, "wave_mask_p": 1.0, "time_mask_p": 0.5, "freq_mask_p": 0.5, "feature_noise_p": 0.5,
       "time_mask": 30, "freq_mask": 2, "noise_sigma": 0.015,
       "crop_samples": 2**18, "crop_frames": 2**18 // 1024, "eval_crops": 1}
GTZAN = {"epochs": 50, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "plateau",
         "augment": False, "monitor": "val_accuracy"}
_MTAT = "MagnaTagATune 7 parent genres, 70/15/15 split"
_FMA = "FMA small, official 8/1/1 split"
_GTZAN_FEATURES = ("GTZAN, 70/30 split over 3-s segments, so segments of one track sit on both sides "
                   "(the reported accuracy includes that leakage)")
SPACE_MTAT: Space = {"lr": ("log", 1e-4, 1e-2), "weight_decay": ("log", 1e-6, 1e-3), "batch_size": ("choice", [16, 32, 64])}
SPACE_FMA: Space = {"lr": ("log", 1e-5, 1e-3), "weight_decay": ("log", 1e-4, 1e-2),
                    "batch_size": ("choice", [32, 64, 128])}
SPACE_GTZAN: Space = {"lr": ("log", 1e-4, 1e-2), "weight_decay": ("log", 1e-6, 1e-3),
                      "batch_size": ("choice", [16, 32, 64])}


@dataclass(frozen=True)
class Recipe:
    name: str
    published: Published  # the report's headline this recipe reproduces
    options: dict[str, Any]
    space: Space
    sampler: str = "tpe"  # "random" for the report that ran a randomized search
    folds: int | None = None  # the report's cross-validation while tuning
    ours: tuple[str, ...] = ()  # options the reports do not state: our choice
    notes: str = ""
    preset: str = ""  # the store preset the report's features come from

    @property
    def report(self) -> str:
        return self.published.report


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("mtat-mlp",
           Published("MTAT report", "MLP (1024-512-256, dropout 0.4)", "roc_auc_macro", 0.7866, "mtat", _MTAT,
                     also={"loss": 0.3074}),
           {**MTAT, "model": "mlp", "input": "logmel"}, SPACE_MTAT, preset="mtat-seed",
           notes="no scheduler, no augmentation; best epoch by validation macro ROC-AUC"),
    Recipe("mtat-cnn",
           Published("MTAT report", "CNN (4 conv blocks, dropout 0.3)", "roc_auc_macro", 0.9469, "mtat", _MTAT,
                     also={"loss": 0.1600}),
           {**MTAT, "model": "cnn4", "input": "logmel"}, SPACE_MTAT, preset="mtat-seed",
           notes="no scheduler, no augmentation; best epoch by validation macro ROC-AUC"),
    Recipe("fma-nnet1",
           Published("FMA report", "NNET1 (1-D CNN, waveform)", "accuracy", 0.47, "fma", _FMA,
                     also={"loss": 1.73, "F1": 0.33}),
           {**FMA, "model": "nnet1", "input": "waveform"}, {**SPACE_FMA, "wave_noise_p": ("float", 0.0, 1.0)},
           ours=("epochs", "patience"), preset="fma",
           notes="random 2^18-sample crop per epoch, middle crop at test; noise p 0.5, waveform time mask p 1"),
    Recipe("fma-nnet2",
           Published("FMA report", "NNET2 (residual 2-D CNN, MFCC)", "accuracy", 0.51, "fma", _FMA,
                     also={"loss": 1.70, "F1": 0.38}),
           {**FMA, "model": "nnet2", "input": "mfcc"}, {**SPACE_FMA, "time_mask_p": ("float", 0.0, 1.0)},
           ours=("epochs", "patience"), preset="fma",
           notes="random 256-frame MFCC window (the same 2^18 samples); SpecAugment 30 time / 2 MFCC bins"),
    Recipe("fma-mixnet",
           Published("FMA report", "MixNet (NNET1 + NNET2 encoders, frozen; classifier tuned)", "accuracy", 0.55,
                     "fma", _FMA, also={"loss": 1.65, "F1": 0.35}),
           {**FMA, "model": "mixnet", "input": "waveform+mfcc", "aligned_crops": True, "freeze_encoders": True},
           SPACE_FMA, ours=("epochs", "patience"), preset="fma",
           notes="starts from trained fma-nnet1 and fma-nnet2 runs (--init-from), encoders frozen; "
                 "waveform and MFCC windows cover the same seconds"),
    Recipe("gtzan-cnn3",
           Published("GTZAN CNN report", "CNN 32-64-128, 3-s windows averaged per track", "accuracy", 0.775,
                     "gtzan", "GTZAN, stratified 80/10/10 split, jazz.00054 removed"),
           {**GTZAN, "model": "cnn3", "input": "logmel", "crop_frames": 130, "eval_crops": 10}, SPACE_GTZAN,
           ours=("batch_size", "lr", "weight_decay"), preset="gtzan",
           notes="random 3-s (130-frame) windows; 10 evenly spaced windows averaged at test"),
    Recipe("gtzan-ffnn",
           Published("GTZAN features report", "FFNN (512-256-128-64-32) on 3-s descriptor segments", "accuracy",
                     0.9229, "gtzan", _GTZAN_FEATURES),
           {**GTZAN, "model": "ffnn", "input": "handcrafted", "segments": "split", "split": "70/30"}, SPACE_GTZAN,
           sampler="random", folds=5, ours=("batch_size", "weight_decay"), preset="handcrafted",
           notes="70/30 split of all clips by group; early stopping and checkpoints on 10 % of train"),
    Recipe("gtzan-cnn1d",
           Published("GTZAN features report", "1-D CNN (32, 64 filters) on 3-s descriptor segments", "accuracy",
                     0.9055, "gtzan", _GTZAN_FEATURES),
           {**GTZAN, "model": "cnn1d_features", "input": "handcrafted", "segments": "split", "split": "70/30"},
           SPACE_GTZAN, sampler="random", folds=5, ours=("batch_size", "weight_decay"), preset="handcrafted",
           notes="70/30 split of all clips by group; early stopping and checkpoints on 10 % of train"),
    Recipe("gtzan-c2f",
           Published("GTZAN YOLO report", "C2f classifier (its model 18)", "macro_precision", 0.8031, "gtzan",
                     "GTZAN, 800/100/100 split", also={"accuracy": 0.80}),
           {**GTZAN, "model": "c2f", "input": "logmel", "image_size": 416, "batch_size": 16}, SPACE_GTZAN,
           ours=("batch_size", "lr", "weight_decay"), preset="gtzan",
           notes="log-mel as a 416x416 image scaled to [0, 1] (--image-size 640 for the larger one); no pretrained weights"),
)}


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise UserError(f"unknown recipe {name!r}: choose from {', '.join(RECIPES)} (see `featurestore recipes`)") from None


def recipe_options(name: str) -> dict[str, Any]:
    return dict(recipe(name).options)


def show_value(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:g}"
    return "—" if v is None else str(v)


def recipe_table() -> str:
    """`featurestore recipes`: every recipe's values, those the reports leave unstated marked *."""
    lines = []
    for r in RECIPES.values():
        o = {**r.options}
        star = lambda k: "*" if k in r.ours else ""  # noqa: E731
        aug = ("off" if not o.get("augment") else
               ", ".join(f"{k.removesuffix('_p')} p {show_value(o[k])}" for k in
                         ("wave_noise_p", "wave_mask_p", "time_mask_p", "freq_mask_p", "feature_noise_p")
                         if k in o))
        lines.append(f"{r.name}  ({r.report}; build with --preset {r.preset})")
        lines.append(f"  model {o['model']} on {o['input']}; {o['optimizer']} lr {show_value(o['lr'])}{star('lr')}, weight "
                     f"decay {show_value(o['weight_decay'])}{star('weight_decay')}, batch {o['batch_size']}"
                     f"{star('batch_size')}, {o['epochs']} epochs{star('epochs')}, scheduler {o['scheduler']}, "
                     f"best by {o['monitor']}"
                     + (f", early stop after {o['patience']}{star('patience')}" if o.get("patience") else ""))
        lines.append(f"  augmentation: {aug}")
        lines.append(f"  {r.notes}")
        lines.append(f"  published: {r.published.setup}: {r.published.quote()}")
        lines.append(f"  tune: {', '.join(r.space)} ({r.sampler} sampler{f', {r.folds}-fold CV' if r.folds else ''})")
    return "\n".join(lines) + "\n\n* not stated in the report: our choice"
