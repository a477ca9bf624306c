"""K-fold cross-validation over train+valid: one full run per fold, then mean ± std over folds.

Folds never cut through a manifest group (artist, album, track), and are stratified by label
for single-label data (`trainers.prepare.folds`). Each fold is a complete run in RUN/fold_K (its
own history, checkpoints, report and test metrics), so any fold can be evaluated or used to
predict like a plain run; RUN/metrics.json and RUN/report.md hold the summary.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from trainers.config import TrainConfig
from trainers.io import write_json, write_text
from trainers.prepare import Data, folds


def cross_validate(config: TrainConfig, data: Data, fit: Callable[..., dict[str, Any]], monitor: str) -> dict[str, Any]:
    """`fit(config, data, train, held_out, test, out, **extra)` per fold; returns the summary."""
    out = Path(config.out)
    results = []
    for k, (train_idx, held_out) in enumerate(folds(data, config.folds, config.seed), start=1):
        fold_out = out / f"fold_{k}"
        print(f"fold {k}/{config.folds}: {len(train_idx)} train / {len(held_out)} held-out clips")
        fold_config = dataclasses.replace(config, out=str(fold_out), folds=None,
                                          resume=config.resume and (fold_out / "config.json").is_file())
        results.append(fit(fold_config, data, train_idx, held_out, data.splits["test"], fold_out,
                           fold=k, folds=config.folds))
    summary: dict[str, Any] = {"folds": config.folds, "monitor": monitor,
                               "best": float(pd.Series([r["best"] for r in results], dtype=float).mean())}
    for part in ("valid", "test"):
        frame = pd.DataFrame([r[part] for r in results])
        summary[part] = {"mean": frame.mean().to_dict(), "std": frame.std(ddof=0).to_dict(),
                         "per_fold": frame.to_dict("records")}
    write_json(out / "metrics.json", summary)
    _report(out, summary)
    return summary


def _report(out: Path, summary: dict[str, Any]) -> None:
    keys = [k for k in summary["valid"]["mean"] if k != "n_clips"]
    lines = [f"# {summary['folds']}-fold cross-validation", "",
             "Held-out: each fold's best checkpoint on its held-out part of train+valid; test: the same checkpoints "
             "on the test split. Mean ± standard deviation over folds.", "",
             "| metric | held-out | test |", "|---|---:|---:|"]
    for k in keys:
        cells = []
        for part in ("valid", "test"):
            m, s = summary[part]["mean"].get(k), summary[part]["std"].get(k)
            cells.append("—" if m is None or math.isnan(m) else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {k} | {cells[0]} | {cells[1]} |")
    runs = ", ".join(f"[fold_{k}](fold_{k}/report.md)" for k in range(1, summary["folds"] + 1))
    lines += ["", f"Per-fold runs, reports and figures: {runs}", ""]
    write_text(out / "report.md", "\n".join(lines))
