"""Evaluate a model on a split and write what people read: metrics.json, report.md, figures.

Used at the end of training (best checkpoint on the test split, into RUN/) and by
`featurestore evaluate RUN` (into RUN/eval-SPLIT/ unless told otherwise), with the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from featurestore.errors import UserError
from trainers import checkpoint
from trainers.config import TrainConfig, load_run, trained_on
from trainers.datasets import StoreDataset
from trainers.io import atomic_path, write_json
from trainers.prepare import Data, folds, open_data, require, run_splits
from trainers.published import Comparison, beside
from trainers.report import write_report
from trainers.runtime import Acceleration, Inference, infer, make_loader, make_model, resolve_device
from trainers.tasks import AveragedLoss, Evaluation
from trainers.uncertainty import Intervals, bootstrap

PREDICTIONS = "predictions.parquet"


def evaluate_model(model, pipeline, data: Data, indices: np.ndarray, config: TrainConfig,
                   device: torch.device, fast: Acceleration, split: str = "test") -> Evaluation:
    """Metrics on the clips at `indices` (the run's `split`), with the plain (unweighted) loss of
    their averaged predictions as `loss`; segment inputs are also scored segment by segment
    (`levels`). `predictions` holds every clip's (and segment's) probabilities."""
    loader = make_loader(StoreDataset.over(data.source(indices, config.input)), batch_size=config.batch_size,
                         workers=config.workers(), device=device)
    segments = config.input.explode_segments(data.spec)
    result = infer(model, pipeline, loader, data.task, device, AveragedLoss(data.task), precision=fast.precision,
                   per_view=segments, channels_last=fast.channels_last, label=f"evaluating {split}")
    evaluation = data.task.evaluate(result.y, result.prob)
    evaluation.summary["loss"] = result.loss
    evaluation.predictions = predictions_table(data, result, split)
    with_intervals(evaluation, bootstrap(data.task.name, result.y, result.prob, data.groups[result.index],
                                         seed=config.seed))
    if segments:
        per_segment = data.task.evaluate(result.view_y, result.view_prob).summary
        per_segment["n_segments"] = per_segment.pop("n_clips")
        evaluation.levels["segments"] = per_segment
    return evaluation


def with_intervals(evaluation: Evaluation, intervals: Intervals) -> None:
    """The bootstrap's intervals on the evaluation: summary-level, and per class as `METRIC_low` /
    `METRIC_high` columns of its per-class table (so in metrics.json's per_class records too)."""
    evaluation.intervals = intervals
    for metric, bounds in intervals.per_class.items():
        evaluation.per_class[f"{metric}_low"] = [low for low, _ in bounds]
        evaluation.per_class[f"{metric}_high"] = [high for _, high in bounds]


def predictions_table(data: Data, result: Inference, split: str) -> pd.DataFrame:
    """One row per evaluated clip (`level` "clip": its views averaged) and, where views are scored
    on their own, per view (`level` "segment", `view` its number): clip_id, group, the run's
    split, the true labels, and `prob_LABEL` for every class."""
    manifest = data.store.manifest
    clip_ids, groups = manifest["clip_id"].astype(str).to_numpy(), data.groups
    labels = np.asarray(data.labels, dtype=object)

    def rows(index: np.ndarray, y: np.ndarray, prob: np.ndarray, level: str, view: np.ndarray | None) -> pd.DataFrame:
        frame = pd.DataFrame({"clip_id": clip_ids[index], "group": groups[index], "split": split, "level": level,
                              "view": pd.array(view if view is not None else [None] * len(index), dtype="Int64"),
                              "labels": [list(labels[row > 0]) for row in y]})
        probabilities = pd.DataFrame(prob.astype(np.float32), columns=[f"prob_{label}" for label in data.labels])
        return pd.concat([frame, probabilities], axis=1)

    parts = [rows(result.index, result.y, result.prob, "clip", None)]
    if result.view_prob is not None:
        parts.append(rows(result.view_index, result.view_y, result.view_prob, "segment", result.view_number))
    return pd.concat(parts, ignore_index=True)


def published_for(data: Data, config: TrainConfig, evaluation: Evaluation, split: str) -> Comparison | None:
    """The test result of a recipe's run beside its report's headline (None off the test split or
    without a recipe)."""
    if split != "test" or not config.recipe:
        return None
    from trainers.options import from_config
    from trainers.recipes import recipe

    return beside(recipe(config.recipe), evaluation.summary, evaluation.intervals, dataset=data.store.attrs.dataset,
                  protocol=data.protocol, spec=data.spec, options=from_config(config))


def write_evaluation(out: Path, evaluation: Evaluation, data: Data, *, meta: dict[str, Any], title: str,
                     published: Comparison | None = None, history: pd.DataFrame | None = None,
                     monitor: str | None = None) -> None:
    """predictions.parquet, metrics.json (with what identifies the clips evaluated: the task, the
    store's manifest and the split protocol; and any published comparison), report.md and its
    figures in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    if evaluation.predictions is not None:
        with atomic_path(out / PREDICTIONS) as tmp:
            evaluation.predictions.to_parquet(tmp, index=False)
    protocol = data.protocol
    write_json(out / "metrics.json", {**meta, "task": data.task.name, "manifest_hash": data.store.attrs.manifest_hash,
                                      "split_protocol": protocol.to_json(),
                                      **({"published": published.to_json()} if published else {}),
                                      **evaluation.to_json()})
    write_report(out, evaluation, title=title, header={**{k: str(v) for k, v in meta.items()},
                                                       "splits": protocol.statement()},
                 published=published, history=history, monitor=monitor, best_epoch=meta.get("epoch"))


def split_for_run(data: Data, resolved: dict[str, Any], split: str, seed: int) -> np.ndarray:
    """The clips a run means by `split`: a fold run's valid split is its held-out fold."""
    fold = resolved.get("fold")
    if fold and split == "valid":
        return folds(data, resolved["folds"], seed)[fold - 1][1]
    return require(data.splits[split], split, data.url)


def evaluate_run(run: str, *, split: str = "test", store: str | None = None, out: str | None = None,
                 which: str = checkpoint.BEST, device: str = "auto", verify_store: bool = False) -> tuple[Path, Evaluation]:
    saved = load_run(run)
    config: TrainConfig = saved["train"]
    resolved = saved["resolved"]
    if not (Path(run) / which).is_file() and resolved.get("folds") and not resolved.get("fold"):
        raise UserError(f"{run} is a {resolved['folds']}-fold cross-validation: evaluate one fold, e.g. {run}/fold_1")
    data = run_splits(open_data(store or config.store, config.input, task=resolved["task"],
                                allow_partial=config.allow_partial,
                                expect_hash=trained_on(resolved, config.input.arrays),
                                full_check=verify_store), config)
    if list(data.labels) != resolved["labels"]:
        raise UserError(f"store {data.url} has other labels than the run's ({len(data.labels)} vs "
                        f"{len(resolved['labels'])}): evaluate on a store built from the same vocabulary")
    dev = resolve_device(device)
    state = checkpoint.load(Path(run) / which)
    model, pipeline = make_model(config.model, data.spec, config.input, len(data.labels))
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["inputs"])
    # a run trained in bf16 or fp16 on a GPU evaluates in float32 on the CPU
    fast = Acceleration.resolve(config.precision if dev.type == "cuda" else "fp32", config.channels_last, False, dev)
    model, _ = fast.prepare(model.to(dev))
    pipeline.to(dev)
    indices = split_for_run(data, resolved, split, config.seed)
    evaluation = evaluate_model(model, pipeline, data, indices, config, dev, fast, split)
    target = Path(out) if out else Path(run) / f"eval-{split}"
    history_path = Path(run) / "history.csv"
    write_evaluation(
        target, evaluation, data, title=f"{config.model} on {split} of {data.url}",
        meta={"split": split, "checkpoint": which, "epoch": state["epoch"], "store": data.url, "model": config.model},
        published=published_for(data, config, evaluation, split),
        history=pd.read_csv(history_path) if history_path.is_file() else None, monitor=resolved["monitor_column"],
    )
    return target, evaluation
