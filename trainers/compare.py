"""`featurestore compare RUN_A RUN_B [...]`: is B better than A on the same clips, or is it luck?

Each run's `predictions.parquet` holds every test clip's probabilities, so models are compared
clip by clip without decoding audio again. The first run is the baseline; every other run is
compared with it on the clips both evaluated:

- the paired difference (run minus baseline) of accuracy, macro-F1, macro precision and macro
  ROC-AUC, with a 95 % interval from a bootstrap that resamples the manifest's groups (songs,
  artists) and draws the *same* resample for both runs, so what the clips share cancels out;
- for single-label tasks, McNemar's exact test on the clips one run got right and the other
  wrong. It treats clips as independent: with several clips per group, trust the interval.

Runs are compared only when they evaluated the same clips of the same manifest under the same
split protocol: anything else is refused in one line. Stores with other features built from the
same manifest compare fine (a CNN on log-mel against a baseline on descriptors).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestore.errors import UserError
from trainers.evaluate import PREDICTIONS
from trainers.io import atomic_path, write_json, write_text
from trainers.prepare import label_matrix
from trainers.uncertainty import RESAMPLES, SUMMARY, group_weights, interval, weighted_metrics

METRICS = SUMMARY  # accuracy, macro_f1, macro_precision, roc_auc_macro
SAME = ("manifest_hash", "task", "split", "split_protocol")  # what two runs must share to be compared


@dataclass(frozen=True)
class Evaluated:
    """One run's test predictions, as `predictions.parquet` and `metrics.json` hold them."""

    name: str
    folder: Path
    meta: dict[str, Any]
    clips: pd.DataFrame  # clip-level rows, indexed by clip_id
    labels: tuple[str, ...]

    @classmethod
    def read(cls, path: str) -> Evaluated:
        folder = Path(path)
        if not (folder / PREDICTIONS).is_file() and (folder / "fold_1").is_dir():
            raise UserError(f"{path} is a cross-validation: compare one fold, e.g. {folder / 'fold_1'}")
        if not (folder / PREDICTIONS).is_file() or not (folder / "metrics.json").is_file():
            raise UserError(f"{path} holds no {PREDICTIONS} and metrics.json: give a trained run's folder (or an "
                            "evaluate output folder such as RUN/eval-test)")
        meta = json.loads((folder / "metrics.json").read_text())
        if "split_protocol" not in meta or "manifest_hash" not in meta:
            raise UserError(f"{path}/metrics.json was written by an older featurestore: run "
                            f"`featurestore evaluate {path}` to write it again, then compare")
        table = pd.read_parquet(folder / PREDICTIONS)
        clips = table[table["level"] == "clip"].set_index("clip_id")
        labels = tuple(c.removeprefix("prob_") for c in clips.columns if c.startswith("prob_"))
        name = f"{folder.parent.name}/{folder.name}" if folder.name.startswith("eval-") else folder.name
        return cls(name, folder, meta, clips, labels)

    def targets(self, clip_ids: pd.Index) -> np.ndarray:
        return label_matrix(self.clips.loc[clip_ids, "labels"], list(self.labels))

    def probabilities(self, clip_ids: pd.Index) -> np.ndarray:
        return self.clips.loc[clip_ids, [f"prob_{label}" for label in self.labels]].to_numpy(np.float64)


def _describe(meta: dict[str, Any], key: str) -> str:
    value = meta.get(key)
    if key == "split_protocol":
        return "the manifest's splits" if value["source"] == "manifest" else (
            f"a --split {value['split']} re-split (seed {value['seed']}, valid fraction {value['valid_fraction']})")
    return str(value)


def check_comparable(baseline: Evaluated, other: Evaluated) -> None:
    """One line, naming both runs and what differs, when they did not evaluate the same clips."""
    for key in SAME:
        if _describe(baseline.meta, key) != _describe(other.meta, key):
            what = {"manifest_hash": "stores built from different manifests", "split": "different splits",
                    "task": "different tasks", "split_protocol": "different test sets"}[key]
            raise UserError(f"cannot compare {other.folder} with {baseline.folder}: {what} "
                            f"({_describe(other.meta, key)} vs {_describe(baseline.meta, key)}); compare runs "
                            "evaluated on the same clips")
    if other.labels != baseline.labels:
        raise UserError(f"cannot compare {other.folder} with {baseline.folder}: different label vocabularies")
    if set(other.clips.index) != set(baseline.clips.index):
        only = len(set(other.clips.index) ^ set(baseline.clips.index))
        raise UserError(f"cannot compare {other.folder} with {baseline.folder}: {only} clip(s) evaluated by one "
                        "run only (runs on partial stores?); compare runs evaluated on the same clips")


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test: under "equally accurate", a clip one run alone got right is as likely
    to be either run's (a binomial test on the discordant clips)."""
    from scipy.stats import binomtest

    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"baseline_only": only_a, "run_only": only_b, "p_value": float(p)}


@dataclass(frozen=True)
class Paired:
    """A run against the baseline: per metric its value, the baseline's, the difference and its interval."""

    run: str
    rows: dict[str, dict[str, float]]
    mcnemar: dict[str, Any] | None


def paired(baseline: Evaluated, other: Evaluated, *, resamples: int = RESAMPLES, seed: int = 0) -> Paired:
    clip_ids = baseline.clips.index
    task = baseline.meta["task"]
    y = baseline.targets(clip_ids)
    groups = baseline.clips.loc[clip_ids, "group"].astype(str).to_numpy()
    weights = group_weights(groups, resamples, seed)  # one draw, applied to both runs: the pairing
    ones = np.ones((1, len(clip_ids)))
    a_prob, b_prob = baseline.probabilities(clip_ids), other.probabilities(clip_ids)
    a, b = weighted_metrics(task, y, a_prob, weights), weighted_metrics(task, y, b_prob, weights)
    a0, b0 = weighted_metrics(task, y, a_prob, ones), weighted_metrics(task, y, b_prob, ones)
    rows = {}
    for metric in METRICS:
        low, high = interval(b[metric] - a[metric])
        rows[metric] = {"baseline": float(a0[metric][0]), "run": float(b0[metric][0]),
                        "difference": float(b0[metric][0] - a0[metric][0]), "low": low, "high": high}
    test = None
    if task == "multiclass":
        truth = y.argmax(1)
        test = mcnemar(a_prob.argmax(1) == truth, b_prob.argmax(1) == truth)
    return Paired(other.name if other.name != baseline.name else str(other.folder), rows, test)  # names may repeat


def _num(v: float) -> str:
    return "—" if v is None or math.isnan(v) else f"{v:+.4f}"


def markdown(baseline: Evaluated, results: list[Paired], n_groups: int) -> str:
    lines = [f"# Compared with {baseline.folder}", "",
             f"{len(baseline.clips)} test clips from {n_groups} groups, the same in every run "
             f"({_describe(baseline.meta, 'split_protocol')}). Differences are run minus baseline; the 95 % "
             f"intervals come from {RESAMPLES} bootstrap resamples of the groups, the same resample for both "
             "runs. An interval that contains 0 does not show a difference.", ""]
    for result in results:
        lines += [f"## {result.run} against {baseline.name}", "",
                  "| metric | baseline | run | difference | 95 % interval |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {m} | {r['baseline']:.4f} | {r['run']:.4f} | {_num(r['difference'])} | "
                  f"{_num(r['low'])} – {_num(r['high'])} |" for m, r in result.rows.items()]
        if result.mcnemar is not None:
            t = result.mcnemar
            lines += ["", f"McNemar's exact test on accuracy: {t['run_only']} clips right only in the run, "
                          f"{t['baseline_only']} only in the baseline, p = {t['p_value']:.4g} (clips taken as "
                          "independent; with several clips per group the interval above is the safer guide)."]
        lines.append("")
    return "\n".join(lines + ["![differences](compare.png)", ""])


def plot(baseline: Evaluated, results: list[Paired], path: Path) -> None:
    """One panel per metric: each run's difference from the baseline with its 95 % interval."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(METRICS), 1.2 + 0.45 * len(results)), layout="constrained")
    axes = fig.subplots(1, len(METRICS), sharey=True)
    names = [r.run for r in results]
    for ax, metric in zip(axes, METRICS):
        for k, result in enumerate(results):
            r = result.rows[metric]
            if not math.isnan(r["low"]):
                ax.plot([r["low"], r["high"]], [k, k], color="tab:blue", linewidth=2)
            ax.plot([r["difference"]], [k], "o", color="tab:blue")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set(title=metric, xlabel="run − baseline")
    axes[0].set_yticks(range(len(results)), names)
    axes[0].set_ylim(len(results) - 0.4, -0.6)  # the first run on top
    fig.suptitle(f"paired differences from {baseline.name} with 95 % group-bootstrap intervals")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def compare(runs: list[str], out: str) -> tuple[Path, list[Paired]]:
    """Compare every run with the first; writes compare.md, compare.json and compare.png to `out`."""
    if len(runs) < 2:
        raise UserError("featurestore compare needs at least two runs: the baseline first")
    baseline, *others = [Evaluated.read(r) for r in runs]
    for other in others:
        check_comparable(baseline, other)
    results = [paired(baseline, other) for other in others]
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    n_groups = baseline.clips["group"].nunique()
    write_json(target / "compare.json", {
        "baseline": str(baseline.folder), "clips": len(baseline.clips), "groups": int(n_groups),
        "bootstrap": {"resamples": RESAMPLES, "resampled": "groups", "level": 0.95, "paired": True},
        "runs": [{"run": str(other.folder), "metrics": r.rows, "mcnemar": r.mcnemar}
                 for other, r in zip(others, results)]})
    write_text(target / "compare.md", markdown(baseline, results, n_groups))
    plot(baseline, results, target / "compare.png")
    return target, results
