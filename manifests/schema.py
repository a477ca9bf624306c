"""The canonical manifest: one row per clip, what it is, where it lives, which split it is in."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import pandas as pd

from manifests.paths import first_invalid_path

SPLITS = ("train", "valid", "test")
REQUIRED_COLUMNS = ("clip_id", "path", "labels", "split", "group")


@dataclass(frozen=True)
class ManifestMeta:
    """Everything needed to know how a manifest was made; stored as Parquet key-value metadata."""

    dataset: str
    labels: list[str]  # the ordered label vocabulary: class index i is labels[i]
    taxonomy: str = ""
    taxonomy_hash: str = ""
    split_method: str = ""
    split_ratios: list[float] = field(default_factory=list)  # train, valid, test
    seed: int | None = None
    max_deviation_pp: float | None = None
    group_by: str = ""
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> clips left out on purpose
    options: dict[str, object] = field(default_factory=dict)  # the adapter's arguments
    version: str = ""

    def to_kv(self) -> dict[str, str]:
        """Key-value pairs under `manifest.<field>`: strings as is, everything else as JSON."""
        return {
            f"manifest.{name}": value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for name, value in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_kv(cls, kv: dict[str, str]) -> ManifestMeta:
        values = {}
        for spec in dataclasses.fields(cls):
            key = f"manifest.{spec.name}"
            if key in kv:
                values[spec.name] = kv[key] if spec.type == "str" else json.loads(kv[key])
        return cls(**values)


@dataclass(frozen=True)
class Manifest:
    """`table` columns: clip_id, path, labels (list of str), split, group, then source columns."""

    table: pd.DataFrame
    meta: ManifestMeta

    def __post_init__(self):
        problem = validate(self.table, self.meta)
        if problem:
            raise ValueError(problem)

    def content_hash(self) -> str:
        """SHA-256 of what a feature store depends on: rows (ids, paths, labels, splits, groups) and vocabulary."""
        columns = self.table[list(REQUIRED_COLUMNS)]
        rows = [[c, p, list(ls), s, g] for c, p, ls, s, g in columns.itertuples(index=False, name=None)]
        payload = json.dumps(
            {"labels": list(self.meta.labels), "rows": rows}, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def validate(table: pd.DataFrame, meta: ManifestMeta) -> str | None:
    """What makes `table` not a manifest under `meta`, or None."""
    head = tuple(table.columns[: len(REQUIRED_COLUMNS)])
    if head != REQUIRED_COLUMNS:
        return f"columns must start with {', '.join(REQUIRED_COLUMNS)}; found {', '.join(map(str, head))}"
    duplicated = table["clip_id"].duplicated()
    if duplicated.any():
        return f"clip_id {table['clip_id'][duplicated].iloc[0]!r} appears more than once"
    bad_split = ~table["split"].isin(SPLITS)
    if bad_split.any():
        return f"split {table['split'][bad_split].iloc[0]!r} is not one of {', '.join(SPLITS)}"
    nul = table["path"].astype(str).str.contains("\0", regex=False).to_numpy()
    if nul.any():
        return f"path {table['path'].iloc[int(nul.argmax())]!r} is not a valid path: it holds a NUL byte (0x00)"
    bad_path = first_invalid_path(table["path"])
    if bad_path is not None:
        return f"path {table['path'].iloc[bad_path]!r} is not relative to the audio root"
    used = set(table["labels"].explode().dropna())
    unknown = sorted(used - set(meta.labels))
    if unknown:
        return f"label {unknown[0]!r} is not in the vocabulary"
    return None
