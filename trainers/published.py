"""The reports' own headline numbers, and a run's result beside the one its recipe reproduces.

Each recipe (`trainers.recipes`) carries its report's headline as the report states it (metric,
split, value; `shared/reference/published-results.md`). `beside` puts a run's value and 95 %
interval next to it and says in words what differs between the two setups (dataset, split
protocol, feature settings, options changed from the recipe), so that a gap is not read as the
model's when it is the setup's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainers.options import PROBABILITIES

if TYPE_CHECKING:
    from trainers.prepare import SplitProtocol
    from trainers.recipes import Recipe


@dataclass(frozen=True)
class Published:
    report: str
    setup: str  # the model as the report names it
    metric: str  # the key in a run's metrics summary
    value: float
    dataset: str  # the manifest adapter's dataset name the report's numbers are on
    protocol: str  # the report's split, in words
    split: str = "test"
    also: dict[str, float] = field(default_factory=dict)  # other numbers the report states for the setup

    def quote(self) -> str:
        others = "".join(f", {k} {v:g}" for k, v in self.also.items())
        return f"{self.split} {METRIC_NAMES[self.metric]} {self.value:g}{others} ({self.report}, {self.protocol})"


METRIC_NAMES = {"roc_auc_macro": "macro ROC-AUC", "accuracy": "accuracy", "macro_precision": "macro precision"}


@dataclass(frozen=True)
class Comparison:
    """A run's value beside its recipe's published one, and what differs between the two setups."""

    recipe: str
    published: Published
    ours: float
    interval: tuple[float, float] | None
    differences: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, **dataclasses.asdict(self.published), "ours": self.ours,
                "ours_interval": None if self.interval is None else list(self.interval),
                "differences": list(self.differences)}

    def ours_text(self) -> str:
        if self.interval is None or math.isnan(self.interval[0]):
            return f"{self.ours:.4f}"
        return f"{self.ours:.4f} [{self.interval[0]:.4f}, {self.interval[1]:.4f}]"

    def line(self) -> str:
        """One console line: the report's number and this run's."""
        p = self.published
        return (f"{p.report}, {p.setup}: {p.split} {METRIC_NAMES[p.metric]} {p.value:g}; "
                f"this run {self.ours_text()}")


def _value(v: Any) -> str:
    return "manifest" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _differences(recipe: Recipe, *, dataset: str, protocol: SplitProtocol, spec, options: dict[str, Any]) -> list[str]:
    from featurestore.presets import preset

    published, said = recipe.published, []
    if dataset != published.dataset:
        said.append(f"this store holds {dataset!r}, not {published.dataset!r}, the report's dataset")
    said.append(("this run used the manifest's splits" if protocol.manifest else f"this run re-split --split "
                 f"{protocol.split} with groups kept apart") + f" ({protocol.sizes()}); the report: {published.protocol}")
    wanted = preset(recipe.preset)
    arrays = [a for a in wanted.arrays if a in spec.arrays and spec.arrays[a] != wanted.arrays[a]]
    if spec.decoding != wanted.decoding or arrays:
        said.append(f"the store's settings differ from preset {recipe.preset}'s "
                    f"({', '.join(['decoding'] * (spec.decoding != wanted.decoding) + arrays)})")
    changed = [f"{k} {_value(options[k])} (recipe {_value(v)})" for k, v in recipe.options.items()
               if k != "augment" and k in options and options[k] != v]
    if not recipe.options.get("augment", True) and any(options.get(p) for p in PROBABILITIES):
        changed.append("augmentation on (recipe: off)")
    if changed:
        said.append("options changed from the recipe: " + ", ".join(changed))
    return said


def beside(recipe: Recipe | None, summary: dict[str, float], intervals, *, dataset: str, protocol: SplitProtocol,
           spec, options: dict[str, Any]) -> Comparison | None:
    """A test result of a run of `recipe` beside the report's (None for a run without a recipe)."""
    if recipe is None:
        return None
    published = recipe.published
    bounds = None if intervals is None else intervals.summary.get(published.metric)
    return Comparison(recipe.name, published, float(summary[published.metric]), bounds,
                      tuple(_differences(recipe, dataset=dataset, protocol=protocol, spec=spec, options=options)))
