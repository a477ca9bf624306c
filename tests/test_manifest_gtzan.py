"""GTZAN adapter: the standard tree, stratified default, the shipped fault-filtered lists."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
from helpers_manifests import GTZAN_GENRES, write_gtzan, write_tone

from featurestore.errors import UserError
from manifests.adapters import gtzan


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_gtzan(tmp_path_factory.mktemp("gtzan"))


def test_stratified_default_is_exact_per_genre(tree):
    manifest = gtzan(tree)
    table = manifest.table
    assert len(table) == 1000 and table["clip_id"].is_unique
    assert manifest.meta.labels == list(GTZAN_GENRES)
    assert table.loc[0, "clip_id"] == "blues.00000" and table.loc[0, "path"] == "genres/blues/blues.00000.wav"
    assert (table["labels"].map(len) == 1).all()
    per_genre = table.assign(genre=table["labels"].str[0]).groupby(["genre", "split"]).size().unstack()
    assert (per_genre["train"] == 70).all() and (per_genre["valid"] == 15).all() and (per_genre["test"] == 15).all()
    assert manifest.meta.max_deviation_pp == 0


def test_root_or_its_genres_folder(tree):
    from_genres = gtzan(tree / "genres")
    assert from_genres.table.loc[0, "path"] == "blues/blues.00000.wav"  # relative to the folder given
    assert from_genres.table["split"].tolist() == gtzan(tree).table["split"].tolist()


def test_filtered_split_is_the_published_one(tree, reference):
    manifest = gtzan(tree, split="filtered")
    sizes = manifest.table["split"].value_counts().to_dict()
    assert sizes == {"train": 443, "valid": 197, "test": 290}
    assert manifest.meta.dropped == {"not in split lists": 70}
    assert manifest.meta.split_method == "official:filtered"
    # p-lambda/jukemir published the same split keyed by clip: the shipped lists must agree
    with gzip.open(reference / "gtzan" / "p-lambda__jukemir" / "metadata" / "gtzan_ff.json.gz") as handle:
        jukemir = {entry["extra"]["id"]: entry["split"] for entry in json.load(handle).values()}
    ours = dict(zip(manifest.table["clip_id"], manifest.table["split"]))
    assert ours == {clip: split for clip, split in jukemir.items() if split is not None}
    assert ours["jazz.00054"] == "train"  # unreadable in the common copy: the store will report it


def test_split_lists_folder(tree, reference, tmp_path):
    for name in ("train", "valid", "test"):
        shutil.copy(reference / "gtzan" / "coreyker__dnn-mgr" / "gtzan" / f"{name}_stratified.txt", tmp_path)
    manifest = gtzan(tree, split_lists=tmp_path)
    assert manifest.table["split"].value_counts().to_dict() == {"train": 500, "valid": 250, "test": 250}


def test_other_audio_formats_and_non_audio_files(tmp_path):
    write_tone(tmp_path / "genres" / "blues" / "blues.00000.au")  # the original GTZAN files are .au
    write_tone(tmp_path / "genres" / "rock" / "rock.00000.flac")
    (tmp_path / "genres" / "rock" / "notes.txt").write_text("not audio")
    manifest = gtzan(tmp_path, split="50/25/25")
    assert manifest.table["path"].tolist() == ["genres/blues/blues.00000.au", "genres/rock/rock.00000.flac"]
    assert manifest.meta.dropped == {"not audio": 1}


def test_bad_split_lists(tree, reference, tmp_path):
    with pytest.raises(UserError, match="give --split or --split-lists, not both"):
        gtzan(tree, split="filtered", split_lists=tmp_path)
    with pytest.raises(UserError, match="two test lists"):
        gtzan(tree, split_lists=reference / "gtzan" / "coreyker__dnn-mgr" / "gtzan")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("blues/blues.00000.wav\n")
    (lists / "val.txt").write_text("blues/blues.00001.wav\n")
    with pytest.raises(UserError, match="val.txt: unknown split name 'val'"):
        gtzan(tree, split_lists=lists)
    (lists / "val.txt").unlink()
    with pytest.raises(UserError, match="no list file for split\\(s\\) valid, test"):
        gtzan(tree, split_lists=lists)
    (lists / "valid.txt").write_text("blues/blues.00001.wav\n\nblues/blues.09999.wav\n")
    (lists / "test.txt").write_text("blues/blues.00000.wav\n")
    with pytest.raises(UserError, match="valid.txt line 3: 'blues/blues.09999.wav' is not an audio file under"):
        gtzan(tree, split_lists=lists)
    (lists / "valid.txt").write_text("blues/blues.00001.wav\n")
    with pytest.raises(UserError, match="test.txt line 1: 'blues/blues.00000.wav' is already in the train list"):
        gtzan(tree, split_lists=lists)
    (lists / "test.txt").write_bytes(b"blues/blues.00002.wav\n\xff\n")
    with pytest.raises(UserError, match="test.txt line 2: not UTF-8"):
        gtzan(tree, split_lists=lists)


def test_bad_trees(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        gtzan(tmp_path / "missing")
    with pytest.raises(UserError, match="no audio files under"):
        gtzan(tmp_path)
    write_tone(tmp_path / "blues" / "deeper" / "blues.00000.wav")
    with pytest.raises(UserError, match="expected <genre>/<file> directly under"):
        gtzan(tmp_path)
