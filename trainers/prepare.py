"""From a store to training data: checks, the task, the usable clips of each split, folds, statistics.

Everything here is decided once from the store's manifest copy and status array, before any
feature is read, and refuses with one clear line what cannot work (an unfinished build, a
missing feature, a multi-label manifest forced into a single-label task, an empty split).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurestore.errors import UserError
from featurestore.spec import FeatureSpec
from featurestore.store import OK, PENDING, Store, open_store
from featurestore.store.inspect import verify
from featurestore.store.layout import normalised, shard_name
from trainers.inputs import InputConfig
from trainers.tasks import Task, infer_task

SPLITS = ("train", "valid", "test")


def label_matrix(labels_column, vocabulary: list[str]) -> np.ndarray:
    """Multi-hot (clips, classes) float32 targets from the manifest's `labels` lists."""
    position = {label: i for i, label in enumerate(vocabulary)}
    y = np.zeros((len(labels_column), len(vocabulary)), dtype=np.float32)
    for row, labels in enumerate(labels_column):
        for label in labels:
            y[row, position[label]] = 1.0
    return y


def split_indices(manifest, usable: np.ndarray, splits: tuple[str, ...]) -> np.ndarray:
    """Store positions of the `usable` clips in `splits`, in store order."""
    return np.flatnonzero(manifest["split"].isin(splits).to_numpy() & usable)


@dataclass(frozen=True)
class Source:
    """What to read: a store, the input (its arrays and windows), the clips (sorted store positions)
    and every clip's targets."""

    url: str
    inputs: InputConfig
    indices: np.ndarray
    targets: np.ndarray  # (all clips in the store, classes)
    spec: FeatureSpec

    @property
    def arrays(self) -> tuple[str, ...]:
        return self.inputs.arrays

    @property
    def segments(self) -> Any:
        """The segments-layout feature among the arrays (its rows past the decoded audio are marked), or None."""
        return next((f for f in map(self.spec.feature, self.arrays) if f.layout == "segments"), None)


@dataclass(frozen=True)
class SplitProtocol:
    """Where a run's train, valid and test clips come from: the manifest's splits, or a re-split
    (`--split 70/30`, or a recipe that sets it) whose test set is not the manifest's. Runs are
    comparable on test only when their protocols (and stores) agree."""

    split: str | None  # None: the manifest's; "70/30": every usable clip re-split by group
    clips: dict[str, int]
    groups: dict[str, int]
    seed: int | None = None
    valid_fraction: float | None = None
    recipe: str | None = None  # the recipe that asked for the re-split

    @property
    def manifest(self) -> bool:
        return self.split is None

    def sizes(self) -> str:
        return ", ".join(f"{self.clips[s]:,} {s} clips ({self.groups[s]:,} groups)" for s in SPLITS)

    def statement(self) -> str:
        """One sentence for report.md and the console."""
        if self.manifest:
            return f"the manifest's splits: {self.sizes()}"
        by = f" (set by recipe {self.recipe})" if self.recipe else ""
        return (f"NOT the manifest's test set: --split {self.split}{by} re-split all {sum(self.clips.values()):,} "
                f"usable clips, groups kept apart, seed {self.seed}: {self.sizes()}; valid is "
                f"{self.valid_fraction:g} of the train share, for early stopping and the best checkpoint. "
                "Test scores are comparable only with runs re-split the same way")

    def to_json(self) -> dict[str, Any]:
        return {"source": "manifest" if self.manifest else "re-split", **dataclasses.asdict(self)}


def protocol_of(splits: dict[str, np.ndarray], groups: np.ndarray, config=None) -> SplitProtocol:
    split = getattr(config, "split", None)
    return SplitProtocol(
        split=split, clips={s: int(len(splits[s])) for s in SPLITS},
        groups={s: int(len(np.unique(groups[splits[s]]))) for s in SPLITS},
        **({} if split is None else {"seed": config.seed, "valid_fraction": config.valid_fraction,
                                      "recipe": config.recipe}))


@dataclass
class Data:
    url: str
    spec: FeatureSpec
    spec_hash: str
    labels: tuple[str, ...]
    task: Task
    targets: np.ndarray  # (clips in store, classes)
    splits: dict[str, np.ndarray]  # usable store positions per split
    groups: np.ndarray
    chunk_clips: int
    shard_clips: int
    stats: dict[str, tuple[np.ndarray, np.ndarray]]  # over the manifest's train split
    notes: list[str] = field(default_factory=list)

    inputs: InputConfig | None = None
    protocol: SplitProtocol | None = None  # how the splits were chosen (run_splits)
    stats_clips: np.ndarray | None = None  # the clips `stats` were computed over
    store: Store | None = None  # as opened, once

    def source(self, indices: np.ndarray, inputs: InputConfig) -> Source:
        return Source(self.url, inputs, np.sort(indices), self.targets, self.spec)

    def stats_for(self, train: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Normalisation statistics over exactly the clips a model trains on: the store's own for its
        train split, else (a fold, a re-split) the same sums over those clips' stored features."""
        if np.array_equal(np.sort(train), self.stats_clips):
            return self.stats
        return _sums_over(self.store, self.inputs, np.sort(train))

    def arrays_hash(self, arrays: tuple[str, ...]) -> str:
        """The identity of these arrays' stored values (equal in stores built with the same settings)."""
        return self.store.inputs_hash(arrays)


def check_complete(store: Store, arrays: tuple[str, ...], allow_partial: bool, full_check: bool = False) -> None:
    """The input arrays must be committed everywhere (a build may be adding other arrays), their
    shard files as the commit records describe them (cheap: a listing per array), or, with
    `full_check`, every shard re-hashed as `featurestore verify` does. Never train on the zeros
    a lost shard file reads as."""
    if full_check:
        _, problems = verify(store)
        if problems:
            raise UserError(f"store {store.url} fails verification ({len(problems)} problem(s); first: {problems[0]}): "
                            f"see `featurestore verify {store.url}`; re-run its build to rebuild what is damaged")
    if allow_partial or store.ready(arrays):
        return
    if store.build_state == "complete":
        committed = store.committed(arrays)  # lists the shard files and reads every record: once
        bad = [shard_name(i) for i in range(store.layout.n_shards) if i not in committed]
        raise UserError(
            f"store {store.url} is damaged: {len(bad)} shard(s) ({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}) "
            f"no longer match their commit records for {', '.join(arrays)} (a shard file deleted or changed, or a "
            f"commit record lost): see `featurestore verify {store.url}`; re-running its build rebuilds them"
        )
    pending = int((store.status_for(arrays) == PENDING).sum())
    raise UserError(
        f"store {store.url} is still {store.build_state}: {pending} of {store.n_clips} clips pending for "
        f"{', '.join(arrays)}; finish it by re-running the same `featurestore build` command, "
        "or pass --allow-partial to train on its ok clips"
    )


def open_data(url: str, inputs: InputConfig, *, task: str | None = None, allow_partial: bool = False,
              expect_hash: str | None = None, full_check: bool = False) -> Data:
    """Everything a run decides from a store before reading a feature, checked (see the module doc)."""
    store = open_store(url)
    spec = store.spec
    inputs.validate(spec, f"store {url}")
    check_complete(store, inputs.arrays, allow_partial, full_check)
    arrays_hash = store.inputs_hash(inputs.arrays)
    if expect_hash is not None and arrays_hash != expect_hash:
        raise UserError(
            f"store {url} was built with another feature spec for {', '.join(inputs.arrays)} (hash {arrays_hash}, "
            f"the run used {expect_hash}): evaluate on a store built with the run's spec"
        )
    manifest = store.manifest
    labels = tuple(store.labels)
    counts = manifest["labels"].map(len).to_numpy()
    task_name = task or infer_task(counts)
    notes = []
    if task_name == "multiclass" and (counts > 1).any():
        first = manifest["clip_id"][np.argmax(counts > 1)]
        raise UserError(
            f"store {url}: {int((counts > 1).sum())} clips carry several labels (first: {first}): "
            "a multiclass task needs exactly one; use --task multilabel"
        )
    labelled = counts >= 1 if task_name == "multiclass" else np.ones(len(counts), bool)
    if not labelled.all():
        notes.append(f"{int((~labelled).sum())} clips without a label are left out (a multiclass target needs one)")
    usable = labelled & (store.status_for(inputs.arrays) == OK)
    splits = {s: split_indices(manifest, usable, (s,)) for s in SPLITS}
    stats = _stats(store, inputs, splits["train"], notes)
    return Data(
        url=url, spec=spec, spec_hash=arrays_hash, labels=labels, task=Task(task_name, labels),
        targets=label_matrix(manifest["labels"], list(labels)), splits=splits,
        groups=manifest["group"].astype(str).to_numpy(), chunk_clips=store.chunk_clips,
        shard_clips=store.shard_clips, stats=stats, notes=notes, inputs=inputs,
        stats_clips=splits["train"], store=store,
    )


def run_splits(data: Data, config) -> Data:
    """The clips a run trains, selects and tests on, and the protocol that chose them (`protocol`):
    the manifest's splits, or with `config.split` ("70/30") every usable clip re-split into train
    and test, stratified by label and never cutting a group, with `valid_fraction` of the train
    share (by group) held out for early stopping and checkpoint selection. Seeded by `config.seed`, so `evaluate` finds the same."""
    if not config.split:
        return dataclasses.replace(data, protocol=protocol_of(data.splits, data.groups))
    from manifests.split import stratified_split
    from trainers.config import parse_split

    train, test = parse_split(config.split)
    pool = np.sort(np.concatenate([data.splits[s] for s in SPLITS]))
    ratios = (train * (1 - config.valid_fraction), train * config.valid_fraction, test)
    which = stratified_split(data.targets[pool] > 0, data.groups[pool], ratios, config.seed)
    splits = {name: pool[which == k] for k, name in enumerate(SPLITS)}
    return dataclasses.replace(data, splits=splits, protocol=protocol_of(splits, data.groups, config))


def _stats(store, inputs: InputConfig, train: np.ndarray, notes: list[str]) -> dict:
    """The store's statistics; for an unfinished store (--allow-partial), the same sums over its ok train clips."""
    if store.ready(inputs.arrays):
        return {a: store.stats(a) for a in normalised(store.spec) if a in inputs.arrays}
    notes.append(f"store unfinished: normalisation statistics computed from its {len(train)} ok train clips")
    return _sums_over(store, inputs, train)


def _sums_over(store, inputs: InputConfig, train: np.ndarray) -> dict:
    """The build's statistics (float64 sums, `featurestore.maths.statistics`) over the clips at `train` (sorted)."""
    from featurestore.maths.statistics import combine, partial_sums

    wanted = {a: axis for a, axis in normalised(store.spec).items() if a in inputs.arrays}
    partials = []
    for start in range(0, len(train), store.shard_clips):
        clips = train[start:start + store.shard_clips]
        block = {a: store.array(a)[int(clips[0]):int(clips[-1]) + 1] for a in wanted}
        include = np.isin(np.arange(clips[0], clips[-1] + 1), clips)
        partials.append(partial_sums(block, include, wanted))
    return {a: (mean, std) for a, (mean, std, _) in combine(partials).items()}


def require(indices: np.ndarray, split: str, url: str) -> np.ndarray:
    if len(indices) == 0:
        raise UserError(f"store {url} has no usable ok clips in split {split!r}: check the manifest's splits")
    return indices


def folds(data: Data, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, held-out) splits of train+valid that never cut through a group (stratified when multiclass)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    pool = np.sort(np.concatenate([data.splits["train"], data.splits["valid"]]))
    groups = data.groups[pool]
    if len(np.unique(groups)) < k:
        raise UserError(f"--folds {k} needs at least {k} groups in train+valid; "
                        f"store {data.url} has {len(np.unique(groups))}")
    if data.task.name == "multiclass":
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(pool, data.targets[pool].argmax(1), groups)
    else:
        parts = GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(pool, groups=groups)
    return [(pool[a], pool[b]) for a, b in parts]
