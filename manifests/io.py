"""Manifests on disk: one Parquet file, metadata in its key-value store, written atomically.

Plain Parquet keeps the file readable by pandas, pyarrow, duckdb or Spark without this
project; the `manifest.*` keys say how it was made.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.errors import UserError
from manifests.schema import Manifest, ManifestMeta, validate

_REQUIRED_TYPES = {
    "clip_id": pa.string(),
    "path": pa.string(),
    "labels": pa.list_(pa.string()),
    "split": pa.string(),
    "group": pa.string(),
}


def to_arrow(manifest: Manifest) -> pa.Table:
    table = manifest.table
    arrays, names = [], []
    for name in table.columns:
        values = table[name]
        array = pa.array(values.tolist() if values.dtype == object else values, type=_REQUIRED_TYPES.get(name))
        if pa.types.is_large_string(array.type):
            array = array.cast(pa.string())
        arrays.append(array)
        names.append(name)
    arrow = pa.Table.from_arrays(arrays, names=names)
    return arrow.replace_schema_metadata(manifest.meta.to_kv())


def frame(table: pa.Table) -> pd.DataFrame:
    """DataFrame of an Arrow manifest table, list cells as Python lists (not NumPy arrays)."""
    df = table.replace_schema_metadata(None).to_pandas()
    for name, kind in zip(table.column_names, table.schema.types):
        if pa.types.is_list(kind):
            df[name] = pd.Series(table.column(name).to_pylist(), index=df.index, dtype=object)
    return df


def save(manifest: Manifest, path: str | Path) -> Path:
    """Write `manifest` to `path` (temp file + rename: a failed write leaves no file)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist; create it or choose another --out")
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(to_arrow(manifest), temporary, compression="zstd")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def load(path_or_url: str | Path) -> Manifest:
    """Read a manifest from a local path or an fsspec URL (s3://, gs://, memory://, ...)."""
    source = str(path_or_url)
    try:
        if "://" in source:
            import fsspec

            with fsspec.open(source, "rb") as handle:
                table = pq.read_table(handle)
        else:
            table = pq.read_table(source)
    except FileNotFoundError:
        raise UserError(f"manifest {source} not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read manifest {source}: {str(exc).splitlines()[0]}") from None
    return from_arrow(table, source)


def from_arrow(table: pa.Table, source: str) -> Manifest:
    """A manifest from its Arrow table (as read from `source`, which error messages name)."""
    kv = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    if "manifest.dataset" not in kv or "manifest.labels" not in kv:
        raise UserError(f"{source} is a Parquet file without manifest metadata; build it with `featurestore manifest`")
    meta = ManifestMeta.from_kv(kv)
    df = frame(table)
    problem = validate(df, meta)
    if problem:
        raise UserError(f"{source}: not a valid manifest: {problem}")
    return Manifest(df, meta)
