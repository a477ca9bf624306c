"""`featurestore explore`: how well a store's features separate its labels, before any model.

The GTZAN features report drew its descriptors with t-SNE and clustered them with K-means
(K = the number of genres), scoring the clustering with the silhouette coefficient. Here the
same runs on any feature of a store: one point per decoded segment of a segment feature
(handcrafted), or per clip the mean and standard deviation of each band over time for a
spectrogram. Features are standardised first (each dimension to mean 0, std 1), as the report
did; t-SNE draws a seeded sample of at most `max_points`, K-means and the scores use every point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featurestore.errors import UserError
from trainers.io import atomic_path, write_json, write_text

SPLITS = ("all", "train", "valid", "test")


@dataclass(frozen=True)
class ExploreConfig:
    store: str
    out: str
    feature: str | None = None  # None: handcrafted if the store has it, else logmel, else mfcc
    split: str = "all"
    max_points: int = 5000
    perplexity: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise UserError(f"--split must be one of {', '.join(SPLITS)}")
        if self.max_points < 10:
            raise UserError("--max-points must be >= 10")
        if self.perplexity <= 0:
            raise UserError("--perplexity must be > 0")


def _pick_feature(spec, wanted: str | None) -> str:
    if wanted is None:
        for name in ("handcrafted", "logmel", "mfcc"):
            if name in spec.arrays:
                return name
        wanted = spec.names[0]
    if wanted not in spec.arrays:
        raise UserError(f"the store has no {wanted} array (it holds {', '.join(spec.names)}): pick one of those")
    layout = spec.feature(wanted).layout
    if layout not in ("segments", "spectrogram"):
        raise UserError(f"explore draws segment or spectrogram features; {wanted} is a {layout} feature")
    return wanted


def feature_points(store, name: str, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, clip position of each, segment of each or -1), read shard by shard."""
    from trainers.inputs import valid_segments

    feature = store.spec.feature(name)
    layout = feature.layout
    array = store.array(name)
    length = store.array("length")[:] if layout == "segments" else None
    points, owners, segments = [], [], []
    for start in range(0, len(clips), store.shard_clips):
        part = clips[start:start + store.shard_clips]
        block = np.asarray(array[int(part[0]):int(part[-1]) + 1], dtype=np.float64)[part - part[0]]
        if layout == "segments":
            valid = valid_segments(length[part], feature)
            rows, segs = np.nonzero(valid)
            points.append(block[rows, segs])
            owners.append(part[rows])
            segments.append(segs)
        else:  # (clips, bands, frames): each band's mean and spread over time
            points.append(np.concatenate([block.mean(-1), block.std(-1)], axis=1))
            owners.append(part)
            segments.append(np.full(len(part), -1))
    return np.concatenate(points), np.concatenate(owners), np.concatenate(segments)


def explore(config: ExploreConfig) -> dict[str, Any]:
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
    from sklearn.preprocessing import StandardScaler

    from featurestore.store import OK, open_store

    store = open_store(config.store)
    name = _pick_feature(store.spec, config.feature)
    manifest = store.manifest
    usable = (store.status_for((name,)) == OK) & (manifest["labels"].map(len).to_numpy() >= 1)
    if config.split != "all":
        usable &= manifest["split"].to_numpy() == config.split
    clips = np.flatnonzero(usable)
    if len(clips) < 3:
        raise UserError(f"store {config.store} has {len(clips)} ok labelled clips in split {config.split!r}: "
                        "explore needs at least 3")
    x, owner, segment = feature_points(store, name, clips)
    first_label = manifest["labels"].map(lambda labels: labels[0]).to_numpy()
    labels = first_label[owner]
    classes = sorted(set(labels))
    multilabel = bool((manifest["labels"].map(len).to_numpy()[clips] > 1).any())
    x = StandardScaler().fit_transform(x)
    x = np.nan_to_num(x)  # a constant dimension standardises to 0/0
    k = len(classes)
    if k < 2 or len(x) <= k:
        raise UserError(f"explore needs at least 2 labels and more points than labels ({len(x)} points, {k} labels)")
    clusters = KMeans(n_clusters=k, n_init=10, random_state=config.seed).fit_predict(x)
    scores = {
        "silhouette_kmeans": float(silhouette_score(x, clusters, random_state=config.seed,
                                                    sample_size=min(len(x), 20_000))),
        "silhouette_labels": float(silhouette_score(x, labels, random_state=config.seed,
                                                    sample_size=min(len(x), 20_000))),
        "adjusted_rand_index": float(adjusted_rand_score(labels, clusters)),
        "normalized_mutual_info": float(normalized_mutual_info_score(labels, clusters)),
    }
    rng = np.random.default_rng(config.seed)
    drawn = np.sort(rng.choice(len(x), size=min(len(x), config.max_points), replace=False))
    perplexity = min(config.perplexity, (len(drawn) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=config.seed).fit_transform(x[drawn])

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    groups = manifest["group"].astype(str).to_numpy()[owner]
    splits = manifest["split"].astype(str).to_numpy()[owner]
    points = pd.DataFrame({"clip_id": manifest["clip_id"].to_numpy()[owner[drawn]], "segment": segment[drawn],
                           "label": labels[drawn], "group": groups[drawn], "split": splits[drawn],
                           "cluster": clusters[drawn], "tsne_x": xy[:, 0], "tsne_y": xy[:, 1]})
    with atomic_path(out / "points.csv") as tmp:
        points.to_csv(tmp, index=False)
    summary = {"store": config.store, "feature": name, "split": config.split, "clips": int(len(clips)),
               "points": int(len(x)), "drawn": int(len(drawn)), "k": k, "perplexity": perplexity, **scores,
               "point": "segment" if (segment >= 0).any() else "clip (band means and stds over time)",
               "labels": "first label of each clip" if multilabel else "the clip's label",
               "settings": asdict(config)}
    write_json(out / "explore.json", summary)
    _plot(xy, labels[drawn], clusters[drawn], groups[drawn], splits[drawn], classes, out / "tsne.png", name, scores)
    write_text(out / "explore.md", "\n".join([
        f"# {name} features of {config.store}", "",
        f"{len(x)} points ({summary['point']}) of {len(clips)} clips, split {config.split}; standardised; "
        f"t-SNE of {len(drawn)} of them (perplexity {perplexity:g}); K-means with K = {k} labels on all.", "",
        "| score | value |", "|---|---:|",
        *[f"| {key} | {value:.4f} |" for key, value in scores.items()], "",
        "silhouette_kmeans scores the K-means clusters (the report's number), silhouette_labels the true "
        "labels as clusters; the last two compare clusters with labels (1 = identical, 0 = chance).", "",
        "![t-SNE](tsne.png)", ""]))
    return summary


def _scatter(ax, xy: np.ndarray, values: np.ndarray, palette: str, title: str, legend_title: str,
             names: dict | None = None, max_legend: int = 20, order: tuple = ()) -> None:
    """One colour per distinct value from a qualitative `palette`; a legend beside the points when
    there are few enough values to tell apart (more than the palette has: colours repeat, as said)."""
    from matplotlib import colormaps

    colours = colormaps[palette]
    distinct = sorted(set(values.tolist()), key=lambda v: (order.index(v) if v in order else len(order), v))
    for i, value in enumerate(distinct):
        mine = values == value
        ax.scatter(xy[mine, 0], xy[mine, 1], s=6, color=colours(i % colours.N),
                   label=(names or {}).get(value, str(value)))
    repeats = len(distinct) > colours.N
    ax.set(title=title + (f" ({len(distinct)} values; colours repeat)" if repeats else ""), xticks=[], yticks=[])
    if len(distinct) <= max_legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8, markerscale=2,
                  title=legend_title, title_fontsize=8)


def _plot(xy, labels, clusters, groups, splits, classes, path: Path, name: str, scores: dict[str, float]) -> None:
    """t-SNE coloured by label, by K-means cluster (another palette: clusters are not labels), by
    split and by group (points of one song clumping together show what a split by clip would leak)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 11), layout="constrained")
    (by_label, by_cluster), (by_split, by_group) = fig.subplots(2, 2)
    _scatter(by_label, xy, labels, "tab10" if len(classes) <= 10 else "tab20", f"t-SNE of {name}, by label", "label")
    _scatter(by_cluster, xy, clusters, "Dark2" if len(classes) <= 8 else "tab20b",
             f"K-means clusters (K = {len(classes)}), silhouette {scores['silhouette_kmeans']:.3f}", "cluster",
             names={c: f"cluster {c}" for c in range(len(classes))})
    _scatter(by_split, xy, splits, "Set1", "by split", "split", order=("train", "valid", "test"))
    _scatter(by_group, xy, groups, "tab20", "by group (song, artist)", "group")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
