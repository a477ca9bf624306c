"""Human-readable views of a manifest: the build summary and `manifest show`."""

from __future__ import annotations

import pandas as pd

from manifests.schema import SPLITS, Manifest


def split_counts(manifest: Manifest) -> pd.DataFrame:
    """Clips per label per split, plus rows for all clips, unlabelled clips and distinct groups."""
    table = manifest.table
    exploded = table[["labels", "split"]].explode("labels").dropna()
    counts = pd.crosstab(exploded["labels"], exploded["split"]) if len(exploded) else pd.DataFrame()
    counts = counts.reindex(index=manifest.meta.labels, columns=list(SPLITS), fill_value=0)
    counts.loc["(all clips)"] = table["split"].value_counts().reindex(SPLITS, fill_value=0)
    unlabelled = table["labels"].map(len) == 0
    counts.loc["(unlabelled)"] = table["split"][unlabelled].value_counts().reindex(SPLITS, fill_value=0)
    counts.loc["(groups)"] = table.groupby("split")["group"].nunique().reindex(SPLITS, fill_value=0)
    counts["total"] = counts[list(SPLITS)].sum(axis=1)
    counts.loc["(groups)", "total"] = table["group"].nunique()
    return counts.astype("int64")


FEW_GROUPS = 3  # fewer groups of a label in a split than this, and its scores there rest on a song or two


def group_counts(manifest: Manifest) -> pd.DataFrame:
    """Distinct groups (songs, artists) per label per split: how many independent examples a
    split's score for the label rests on."""
    exploded = manifest.table[["labels", "split", "group"]].explode("labels").dropna(subset=["labels"])
    counts = exploded.groupby(["labels", "split"])["group"].nunique().unstack(fill_value=0) if len(exploded) else None
    counts = (counts if counts is not None else pd.DataFrame()).reindex(
        index=manifest.meta.labels, columns=list(SPLITS), fill_value=0)
    counts["total"] = exploded.groupby("labels")["group"].nunique().reindex(counts.index, fill_value=0)
    return counts.astype("int64")


def groups_in_several_splits(manifest: Manifest) -> int:
    return int((manifest.table.groupby("group")["split"].nunique() > 1).sum())


def split_line(manifest: Manifest) -> str:
    meta = manifest.meta
    details = ["/".join(f"{100 * r:.1f}".removesuffix(".0") for r in meta.split_ratios)] if meta.split_ratios else []
    details += [] if meta.seed is None else [f"seed {meta.seed}"]
    shown = f" ({', '.join(details)})" if details else ""
    return f"split {meta.split_method or 'unrecorded'}{shown}, groups: {meta.group_by or 'none'}"


def summary(manifest: Manifest, out: str) -> str:
    """The few lines printed after building a manifest."""
    meta = manifest.meta
    sizes = manifest.table["split"].value_counts()
    per_split = ", ".join(f"{name} {sizes.get(name, 0):,}" for name in SPLITS)
    dropped = ", ".join(f"{count:,} {reason}" for reason, count in meta.dropped.items()) or "none"
    return "\n".join(
        [
            f"wrote {out}: {len(manifest.table):,} clips, {len(meta.labels)} labels ({meta.dataset})",
            f"dropped: {dropped}",
            f"{split_line(manifest)}: {per_split}",
            f"max deviation of a label's share from the split ratio: {_pp(meta.max_deviation_pp)};"
            f" groups in more than one split: {groups_in_several_splits(manifest)}",
        ]
    )


def show(manifest: Manifest, source: str) -> str:
    """`manifest show`: provenance, then clips per label per split with each split's share."""
    meta = manifest.meta
    counts = split_counts(manifest)
    lines = [
        f"{source}: {meta.dataset}, {len(manifest.table):,} clips, {len(meta.labels)} labels,"
        f" written by featurestore {meta.version or '?'}",
    ]
    if meta.taxonomy:
        lines.append(f"taxonomy {meta.taxonomy} (sha256 {meta.taxonomy_hash[:12]})")
    lines.append(f"{split_line(manifest)}; max deviation {_pp(meta.max_deviation_pp)}")
    dropped = ", ".join(f"{count:,} {reason}" for reason, count in meta.dropped.items()) or "none"
    lines.append(f"dropped while building: {dropped}; unlabelled kept: {counts.loc['(unlabelled)', 'total']:,}")
    lines.append(f"groups in more than one split: {groups_in_several_splits(manifest)}")
    lines.append("")
    width = max(len(str(name)) for name in counts.index) + 2
    lines.append("label".ljust(width) + "".join(name.rjust(16) for name in SPLITS) + "total".rjust(10))
    for name, row in counts.iterrows():
        cells = []
        for split in SPLITS:
            share = f" ({100 * row[split] / row['total']:4.1f}%)" if row["total"] and name != "(groups)" else ""
            cells.append(f"{row[split]:,}{share}".rjust(16))
        lines.append(str(name).ljust(width) + "".join(cells) + f"{row['total']:,}".rjust(10))
    groups = group_counts(manifest)
    lines += ["", "groups per label".ljust(width) + "".join(name.rjust(16) for name in SPLITS) + "total".rjust(10)]
    for name, row in groups.iterrows():
        lines.append(str(name).ljust(width) + "".join(f"{row[split]:,}".rjust(16) for split in SPLITS)
                     + f"{row['total']:,}".rjust(10))
    few = [f"{label} in {split} ({row[split]})" for label, row in groups.iterrows() for split in SPLITS
           if row[split] < FEW_GROUPS]
    if few:
        lines.append(f"warning: {len(few)} label/split pair(s) rest on fewer than {FEW_GROUPS} groups, so their "
                     f"scores rest on a song or two: {', '.join(few[:8])}{', ...' if len(few) > 8 else ''}")
    return "\n".join(lines)


def _pp(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} pp"
