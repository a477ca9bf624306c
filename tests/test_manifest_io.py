"""Manifest files: round trip, metadata readable without this project, content hash, atomic writes."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_manifests import write_tone

import manifests
from featurestore import __version__
from featurestore.errors import UserError
from manifests.adapters import folder


@pytest.fixture()
def manifest(tmp_path):
    for genre, count in (("blues", 7), ("jazz", 5), ("rock", 8)):
        for i in range(count):
            write_tone(tmp_path / "audio" / genre / f"{genre}.{i:05d}.wav")
    return folder(tmp_path / "audio", split=(0.6, 0.2, 0.2), seed=3)


def test_round_trip_keeps_rows_types_and_metadata(manifest, tmp_path):
    path = manifests.save(manifest, tmp_path / "m.parquet")
    loaded = manifests.load(path)
    pd.testing.assert_frame_equal(loaded.table, manifest.table)
    assert loaded.meta == manifest.meta
    assert loaded.content_hash() == manifest.content_hash()
    assert isinstance(loaded.table.loc[0, "labels"], list)
    assert list(loaded.table.columns[:5]) == ["clip_id", "path", "labels", "split", "group"]
    assert loaded.meta.version == __version__
    assert loaded.meta.split_ratios == [0.6, 0.2, 0.2] and loaded.meta.seed == 3


def test_same_input_same_bytes(manifest, tmp_path):
    first = manifests.save(manifest, tmp_path / "a.parquet").read_bytes()
    again = manifests.save(folder(tmp_path / "audio", split=(0.6, 0.2, 0.2), seed=3), tmp_path / "b.parquet")
    assert first == again.read_bytes()


def test_readable_without_project_code(manifest, tmp_path):
    path = str(manifests.save(manifest, tmp_path / "m.parquet"))
    kv = pq.read_schema(path).metadata
    assert json.loads(kv[b"manifest.labels"]) == ["blues", "jazz", "rock"]
    assert kv[b"manifest.dataset"] == b"audio" and kv[b"manifest.split_method"] == b"iterative-stratification"
    frame = pd.read_parquet(path)
    assert len(frame) == 20 and list(frame["labels"][0]) == [frame["path"][0].split("/")[0]]
    labels = f"select unnest(labels) as label from read_parquet('{path}')"
    rows = duckdb.sql(f"select label, count(*) from ({labels}) group by label order by label").fetchall()
    assert rows == [("blues", 7), ("jazz", 5), ("rock", 8)]
    keys = dict(duckdb.sql(f"select decode(key), decode(value) from parquet_kv_metadata('{path}')").fetchall())
    assert json.loads(keys["manifest.split_ratios"]) == [0.6, 0.2, 0.2]
    assert keys["manifest.version"] == __version__


def test_content_hash_follows_what_a_store_depends_on(manifest):
    base = manifest.content_hash()
    assert manifests.Manifest(manifest.table.copy(), manifest.meta).content_hash() == base
    relabelled = manifest.table.copy()
    relabelled.at[0, "labels"] = ["rock"]
    assert manifests.Manifest(relabelled, manifest.meta).content_hash() != base
    moved = manifest.table.copy()
    moved.at[0, "split"] = "test" if moved.at[0, "split"] != "test" else "train"
    assert manifests.Manifest(moved, manifest.meta).content_hash() != base
    vocabulary = manifest.meta.__class__(**{**manifest.meta.__dict__, "labels": ["rock", "jazz", "blues"]})
    assert manifests.Manifest(manifest.table, vocabulary).content_hash() != base
    extra = manifest.table.assign(note="anything")  # source columns do not matter to the store
    assert manifests.Manifest(extra, manifest.meta).content_hash() == base


def test_invalid_tables_are_refused(manifest):
    table = manifest.table
    cases = {
        "columns must start with": table[["path", "clip_id", "labels", "split", "group"]],
        "appears more than once": pd.concat([table, table.iloc[:1]], ignore_index=True),
        "is not one of train, valid, test": table.assign(split="dev"),
        "is not relative": table.assign(path="/data/x.wav"),
        "is not in the vocabulary": table.assign(labels=[["polka"]] * len(table)),
    }
    for message, bad in cases.items():
        with pytest.raises(ValueError, match=message):
            manifests.Manifest(bad, manifest.meta)


def test_failed_save_leaves_nothing(manifest, tmp_path):
    good = manifests.save(manifest, tmp_path / "m.parquet")
    before = good.read_bytes()
    unconvertible = manifests.Manifest(manifest.table.assign(mixed=[object()] * len(manifest.table)), manifest.meta)
    with pytest.raises(pa.ArrowInvalid):
        manifests.save(unconvertible, good)
    assert good.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "m.parquet"]  # no temp file left
    with pytest.raises(UserError, match="folder .*missing does not exist"):
        manifests.save(manifest, tmp_path / "missing" / "m.parquet")


def test_load_errors_are_user_errors(manifest, tmp_path):
    with pytest.raises(UserError, match="manifest .*nope.parquet not found"):
        manifests.load(tmp_path / "nope.parquet")
    (tmp_path / "text.parquet").write_text("clip_id,path\n")
    with pytest.raises(UserError, match="cannot read manifest .*text.parquet"):
        manifests.load(tmp_path / "text.parquet")
    manifest.table.drop(columns=["labels"]).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(UserError, match="without manifest metadata"):
        manifests.load(tmp_path / "plain.parquet")


def test_load_from_a_url(manifest, tmp_path):
    import fsspec

    with fsspec.open("memory://manifests/m.parquet", "wb") as handle:
        handle.write(manifests.save(manifest, tmp_path / "m.parquet").read_bytes())
    assert manifests.load("memory://manifests/m.parquet").content_hash() == manifest.content_hash()


def test_a_path_holding_a_nul_byte_is_refused_as_not_a_valid_path(manifest, tmp_path, capsys):
    """A hand-edited Parquet manifest whose path holds a NUL byte: refused when read, in one line
    naming the path, before a build starts (it used to fail its clip as 'embedded null byte')."""
    from featurestore.cli import main

    good = manifests.save(manifest, tmp_path / "m.parquet")
    table = pq.read_table(good)
    paths = table.column("path").to_pylist()
    paths[2] = paths[2].replace("/", "/\0", 1)
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths)),
                   tmp_path / "nul.parquet")
    with pytest.raises(UserError, match=r"is not a valid path: it holds a NUL byte \(0x00\)"):
        manifests.load(tmp_path / "nul.parquet")
    out = tmp_path / "store.zarr"
    assert main(["build", str(tmp_path / "nul.parquet"), "--audio-root", str(tmp_path / "audio"), "--out",
                 str(out), "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "not a valid path: it holds a NUL byte" in err and err.count("\n") == 1 and not out.exists()
