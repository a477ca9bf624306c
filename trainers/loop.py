"""The training loop: epochs over the streaming loader, validation, checkpoints, resume, folds.

Every random choice of epoch e comes from (seed, e): the loader's block order and shuffle
buffer, and torch's global generator (crops, augmentation, dropout), which is re-seeded at the
start of each epoch. A run is therefore deterministic on the CPU, and a resumed run continues
exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from featurestore import __version__
from featurestore.errors import UserError
from featurestore.progress import Progress
from trainers import checkpoint
from trainers.config import RESUMABLE_CHANGES, TrainConfig, load_run
from trainers.crossval import cross_validate
from trainers.datasets import StoreDataset, StreamingStoreDataset, block_size, buffer_size
from trainers.evaluate import evaluate_model, published_for, write_evaluation
from trainers.io import atomic_path, write_json
from trainers.models import check_input, count_parameters
from trainers.options import from_config
from trainers.prepare import Data, open_data, require, run_splits
from trainers.runtime import (Acceleration, autocast, infer, make_loader, make_model, memory_format, resolve_device,
                              to_device)
from trainers.tasks import DEFAULT_MONITOR, MONITORS, AveragedLoss
from trainers.transfer import init_from_runs
from trainers.zoo import size_warning

HISTORY = "history.csv"
OnEpoch = Callable[[int, float], None]


class EpochTimes(NamedTuple):
    loss: float  # mean training loss
    seen: int  # samples trained on
    seconds: float  # wall time of the training pass
    waited: float  # of which blocked on the loader: near `seconds`, the loader bounds training


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _better(value: float, best: float | None, mode: str) -> bool:
    if math.isnan(value):
        return best is None
    if best is None or math.isnan(best):
        return True
    return value > best if mode == "max" else value < best


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Over the parameters that train (frozen encoders are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kw = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=config.momentum, **kw)
    return (torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam)(params, **kw)


class Fit:
    """One model trained on one (train, valid) pair of clip sets, writing into `out`."""

    def __init__(self, config: TrainConfig, data: Data, train: np.ndarray, valid: np.ndarray, out: Path,
                 monitor: str, device: torch.device, progress: bool | None, on_epoch: OnEpoch | None = None,
                 acceleration: Acceleration | None = None):
        self.config, self.data, self.out, self.device, self.progress = config, data, out, device, progress
        self.on_epoch = on_epoch
        self.fast = acceleration or Acceleration.resolve(config.precision, config.channels_last, config.compile, device)
        self.column, self.mode = MONITORS[monitor]
        torch.manual_seed(config.seed)
        self.model, self.pipeline = make_model(config.model, data.spec, config.input, len(data.labels), config.augment)
        self.pipeline.set_stats(data.stats_for(train))
        if config.init_from:
            init_from_runs(self.model, self.pipeline, config.init_from, data.arrays_hash, config.freeze_encoders)
        self.model.to(device)
        self.pipeline.to(device)
        self.model, self.forward = self.fast.prepare(self.model)
        self.scaler = self.fast.scaler(device)
        weights = data.task.class_weights(data.targets[train]) if config.class_weights else None
        self.loss_fn = data.task.loss(weights).to(device)
        self.valid_loss = AveragedLoss(data.task, weights)
        self.optimizer = make_optimizer(config, self.model)
        self.scheduler = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode=self.mode, factor=config.lr_factor,
                                                       patience=config.lr_patience)
            if config.scheduler == "plateau" else None
        )
        block = config.block_clips or block_size(data.chunk_clips, data.shard_clips)
        self.train_set = StreamingStoreDataset.over(
            data.source(train, config.input), block_clips=block, seed=config.seed,
            buffer_clips=config.shuffle_buffer or buffer_size(data.spec, config.input, block),
            explode_segments=config.input.explode_segments(data.spec),
        )
        self.valid = valid
        self.state: dict[str, Any] = {"epoch": 0, "best": None, "best_epoch": None, "bad_epochs": 0, "best_valid": {}}
        self.history: list[dict[str, Any]] = []

    # --- checkpoints ---
    def _checkpoint(self, full: bool) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "inputs": self.pipeline.state_dict(), "epoch": self.state["epoch"]}
        if full:
            state |= {"optimizer": self.optimizer.state_dict(), "loop": dict(self.state),
                      "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                      "scaler": self.scaler.state_dict()}
        return state

    def restore(self) -> None:
        """Continue from last.pt: weights, optimizer, scheduler, counters and the history so far."""
        state = checkpoint.load(self.out / checkpoint.LAST)
        self.model.load_state_dict(state["model"])
        self.pipeline.load_state_dict(state["inputs"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):  # fp16 runs; absent from checkpoints written before --precision
            self.scaler.load_state_dict(state["scaler"])
        self.state = dict(state["loop"])
        history = pd.read_csv(self.out / HISTORY)
        self.history = history[history["epoch"] <= self.state["epoch"]].to_dict("records")

    # --- epochs ---
    def _train_epoch(self, epoch: int, loader) -> EpochTimes:
        self.model.train()
        total, seen, waited, start = torch.zeros((), device=self.device), 0, 0.0, time.perf_counter()
        batches = iter(loader)
        with Progress(len(loader), label=f"epoch {epoch}/{self.config.epochs} training", unit="batches",
                      bar=self.progress) as progress:
            while True:
                asked = time.perf_counter()
                batch = next(batches, None)
                waited += time.perf_counter() - asked
                if batch is None:
                    break
                n = len(batch["y"])
                if n < 2:  # batch norm cannot train on a single sample; happens only to a reader's last batch
                    progress.update()
                    continue
                total += self.step(batch) * n
                seen += n
                # .item() waits for the device: only for a drawn bar, every 10 batches
                progress.update(**({"loss": f"{total.item() / seen:.4f}"} if progress.bar and
                                   progress.done % 10 == 0 else {}))
        return EpochTimes(total.item() / max(seen, 1), seen, time.perf_counter() - start, waited)

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimisation step on a loader batch; the batch's mean loss, left on the device."""
        batch = to_device(batch, self.device)
        with torch.no_grad():
            x, _ = self.pipeline(batch, train=True)
        with autocast(self.device, self.fast.precision):
            logits = self.forward(memory_format(x, self.fast.channels_last))
        loss = self.loss_fn(logits.float(), batch["y"])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def run(self) -> dict[str, Any]:
        c = self.config
        train_loader = make_loader(self.train_set, batch_size=c.batch_size, workers=c.workers(), device=self.device)
        valid_loader = make_loader(StoreDataset.over(self.data.source(self.valid, c.input)), batch_size=c.batch_size,
                                   workers=c.workers(), device=self.device)
        for epoch in range(self.state["epoch"] + 1, c.epochs + 1):
            if c.patience is not None and self.state["bad_epochs"] >= c.patience:
                break
            torch.manual_seed(epoch_seed(c.seed, epoch))
            self.train_set.set_epoch(epoch)
            train_loss, seen, seconds, waited = self._train_epoch(epoch, train_loader)
            y, prob, _, val_loss, *_ = infer(self.model, self.pipeline, valid_loader, self.data.task, self.device,
                                             self.valid_loss, precision=self.fast.precision,
                                             channels_last=self.fast.channels_last,
                                             label=f"epoch {epoch}/{c.epochs} validation", bar=self.progress)
            evaluation = self.data.task.evaluate(y, prob)
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   **{f"val_{k}": v for k, v in evaluation.summary.items() if k != "n_clips"},
                   "lr": self.optimizer.param_groups[0]["lr"], "samples_per_s": seen / seconds, "seconds": seconds,
                   "data_wait": waited / seconds}
            value = float(row[self.column])
            self.state["epoch"] = epoch
            if _better(value, self.state["best"], self.mode):
                self.state |= {"best": value, "best_epoch": epoch, "bad_epochs": 0,
                               "best_valid": {k: float(v) for k, v in evaluation.summary.items()}}
                checkpoint.save(self.out / checkpoint.BEST, self._checkpoint(full=False))
            else:
                self.state["bad_epochs"] += 1
            if self.scheduler:
                self.scheduler.step(value)
            self.history.append(row)
            with atomic_path(self.out / HISTORY) as tmp:
                pd.DataFrame(self.history).to_csv(tmp, index=False)
            checkpoint.save(self.out / checkpoint.LAST, self._checkpoint(full=True))
            parts = [f"epoch {epoch}/{c.epochs}", f"train_loss {train_loss:.4f}", f"val_loss {val_loss:.4f}"]
            if self.column != "val_loss":  # the monitored value, unless it was just printed
                parts.append(f"{self.column} {value:.4f}")
            if self.state["best_epoch"] == epoch:
                parts[-1] += "  *"
            parts += [f"lr {row['lr']:.2g}", f"{row['samples_per_s']:.0f} samples/s",
                      f"{row['data_wait']:.0%} waiting for data"]
            print("  ".join(parts), flush=True)
            if self.on_epoch is not None:
                self.on_epoch(epoch, value)
        if c.patience is not None and self.state["bad_epochs"] >= c.patience and self.state["epoch"] < c.epochs:
            print(f"early stopping after epoch {self.state['epoch']}: "
                  f"no {self.column} improvement in {c.patience} epochs")
        return self.state

    def test(self, test: np.ndarray, title: str) -> dict[str, Any]:
        """The best checkpoint on the test split: metrics.json, report.md and figures in `out`."""
        best = checkpoint.load(self.out / checkpoint.BEST)
        self.model.load_state_dict(best["model"])
        self.pipeline.load_state_dict(best["inputs"])
        meta = {"split": "test", "checkpoint": checkpoint.BEST, "epoch": best["epoch"], "store": self.data.url,
                "model": self.config.model, "monitor": f"{self.column} = {self.state['best']:.4f}"}
        if len(test) == 0:
            print(f"store {self.data.url} has no usable test clips: metrics.json not written")
            return {}
        evaluation = evaluate_model(self.model, self.pipeline, self.data, test, self.config, self.device, self.fast)
        for note in evaluation.notes:
            print(f"note: {note}")
        published = published_for(self.data, self.config, evaluation, "test")
        if published is not None:
            print(f"published: {published.line()} (differences: {self.out / 'report.md'})")
        write_evaluation(self.out, evaluation, self.data, meta=meta, title=title, published=published,
                         history=pd.DataFrame(self.history), monitor=self.column)
        return evaluation.summary


def _write_config(out: Path, config: TrainConfig, data: Data, monitor: str, device: torch.device,
                  fast: Acceleration, n_params: int | None = None, **extra: Any) -> None:
    """RUN/config.json: the options as given, and what the store and data decided (enough to rerun)."""
    resolved = {
        "task": data.task.name, "labels": list(data.labels), "monitor": monitor, "monitor_column": MONITORS[monitor][0],
        "store": data.url, "spec": data.spec.to_dict(), "spec_hash": data.spec_hash,
        "input_shape": config.input.sample_shape(data.spec), "parameters": n_params, "device": str(device),
        "precision": fast.precision, "channels_last": fast.channels_last, "compile": fast.compile,
        "compile_note": fast.compile_note,
        "workers": config.workers(), "clips": {k: int(len(v)) for k, v in data.splits.items()},
        "split_protocol": data.protocol.to_json(),
        "notes": data.notes, "versions": {"featurestore": __version__, "torch": torch.__version__}, **extra,
    }
    write_json(out / "config.json", {"train": config.to_dict(), "options": from_config(config), "resolved": resolved})


def _prepare_out(config: TrainConfig) -> None:
    """A fresh --out, or with --resume one whose config differs only in what a resume may change."""
    out = Path(config.out)
    exists = (out / "config.json").is_file()
    if config.resume:
        if not exists:
            raise UserError(f"--resume: {out} holds no run (no config.json): start it without --resume")
        before = load_run(out)["train"].to_dict()
        now = config.to_dict()
        changed = [k for k in now if k not in RESUMABLE_CHANGES and before.get(k) != now[k]]
        if changed:
            raise UserError(f"--resume: {out}/config.json was written with other {', '.join(changed)}: "
                            "resume with the same options, or train into a new --out")
    elif exists:
        raise UserError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")


def train(config: TrainConfig, progress: bool | None = None, on_epoch: OnEpoch | None = None) -> dict[str, Any]:
    """Train (or cross-validate with --folds) and test the best checkpoint(s); returns the metrics summary.

    `on_epoch(step, value)` sees the monitored value after every epoch (steps count on over folds);
    `featurestore tune` prunes trials from it."""
    _prepare_out(config)
    try:
        data = run_splits(open_data(config.store, config.input, task=config.task,
                                    allow_partial=config.allow_partial, full_check=config.verify_store), config)
    except UserError as exc:
        raise _recipe_hint(exc, config) from None
    check_input(config.model, config.input.features(data.spec))
    monitor = config.monitor or DEFAULT_MONITOR[data.task.name]
    if monitor not in MONITORS:
        raise UserError(f"--monitor must be one of {', '.join(MONITORS)}")
    device = resolve_device(config.device)
    fast = Acceleration.resolve(config.precision, config.channels_last, config.compile, device)
    torch.backends.cudnn.benchmark = device.type == "cuda"  # fixed training shapes: let cuDNN pick its kernels
    for note in data.notes:
        print(f"note: {note}")
    print(f"splits: {data.protocol.statement()}")
    if config.folds:
        _write_config(Path(config.out), config, data, monitor, device, fast, folds=config.folds)
        fit = functools.partial(fit_and_test, monitor=monitor, device=device, progress=progress, on_epoch=on_epoch,
                                acceleration=fast)
        return cross_validate(config, data, fit, MONITORS[monitor][0])
    train_idx = require(data.splits["train"], "train", data.url)
    valid_idx = require(data.splits["valid"], "valid", data.url)
    return fit_and_test(config, data, train_idx, valid_idx, data.splits["test"], Path(config.out), monitor, device,
                        progress, on_epoch, acceleration=fast)


def _recipe_hint(exc: UserError, config: TrainConfig) -> UserError:
    """A recipe's crop sizes fit the preset its report used: say so when a store is too short for them."""
    if config.recipe and str(exc).startswith("--crop-"):
        from trainers.recipes import recipe

        return UserError(f"{exc}: recipe {config.recipe} sets it for stores built with --preset "
                         f"{recipe(config.recipe).preset}; pass the flag to override it")
    return exc


def fit_and_test(config: TrainConfig, data: Data, train_idx: np.ndarray, valid_idx: np.ndarray, test_idx: np.ndarray,
                 out: Path, monitor: str, device: torch.device, progress: bool | None,
                 on_epoch: OnEpoch | None = None, acceleration: Acceleration | None = None,
                 **extra: Any) -> dict[str, Any]:
    """Train on `train_idx`, select on `valid_idx`, test the best checkpoint;
    {"valid", "test", "best_epoch", "best" (the monitored value there)}."""
    if on_epoch is not None and extra.get("fold"):
        first, report = (extra["fold"] - 1) * config.epochs, on_epoch
        on_epoch = lambda epoch, value: report(first + epoch, value)  # noqa: E731
    fit = Fit(config, data, train_idx, valid_idx, out, monitor, device, progress, on_epoch, acceleration)
    n_params = count_parameters(fit.model)
    warning = size_warning(config.model, data.spec, config.input, len(data.labels), n_params)
    if warning and not extra.get("fold", 0) > 1:  # once per run, not once per fold
        print(warning)
    if (out / checkpoint.LAST).is_file() and config.resume:
        fit.restore()
        print(f"resuming {out} after epoch {fit.state['epoch']}")
    else:
        _write_config(out, config, data, monitor, device, fit.fast, n_params, **extra)
    print(f"{config.model} ({config.input.kind} {config.input.sample_shape(data.spec)}, {n_params:,} parameters) "
          f"on {len(train_idx)} train / {len(valid_idx)} valid clips, {data.task.name}, {device}")
    state = fit.run()
    summary = fit.test(test_idx, f"{config.model} on {data.url}")
    return {"valid": state["best_valid"], "test": summary, "best_epoch": state["best_epoch"], "best": state["best"]}
