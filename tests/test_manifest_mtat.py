"""MTAT adapter on the real annotations_final.csv / clip_info_final.csv, and on broken copies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import UserError
from manifests.adapters import mtat
from manifests.split import deviations_pp

N_TAGS = 188


@pytest.fixture(scope="module")
def mtat_files(reference):
    return reference / "mtat" / "annotations_final.csv", reference / "mtat" / "clip_info_final.csv"


@pytest.fixture(scope="module")
def mtat7(mtat_files):
    return mtat(*mtat_files)


@pytest.fixture(scope="module")
def every_clip(mtat_files):
    """All 188 tags as labels, unlabelled clips kept: one row per annotated clip."""
    return mtat(*mtat_files, taxonomy=f"top{N_TAGS}", keep_unlabelled=True)


@pytest.fixture(scope="module")
def musicnn_top50(mtat_files):
    return mtat(*mtat_files, taxonomy="top50", split="musicnn", keep_unlabelled=True)


def write_mtat(path: Path, rows: list[list[str]]) -> Path:
    """The MTAT dialect: TAB-separated, every field double-quoted, CRLF line ends."""
    path.write_bytes(b"".join(("\t".join(f'"{v}"' for v in row) + "\r\n").encode() for row in rows))
    return path


def test_every_annotated_clip_is_a_row_with_its_artist(every_clip):
    table = every_clip.table
    assert len(table) == 25_863
    assert table["clip_id"].is_unique
    assert table["artist"].nunique() == 230
    assert (table["artist"] + "/" + table["album"]).nunique() == 446
    assert (table["labels"].map(len) == 0).sum() == 4_221  # clips with none of the 188 tags
    assert every_clip.table.groupby("group")["split"].nunique().max() == 1  # no artist in two splits


def test_raw_tags_match_jukemir_metadata(every_clip, reference):
    """An independent parse (p-lambda/jukemir) of the same clips agrees on every clip's tags."""
    with gzip.open(reference / "mtat" / "p-lambda__jukemir" / "metadata" / "magnatagatune.json.gz") as handle:
        jukemir = json.load(handle)
    theirs = {entry["extra"]["clip_id"]: entry for entry in jukemir.values() if entry["extra"]["mp3_path"]}
    assert set(theirs) == set(every_clip.table["clip_id"])
    for row in every_clip.table.itertuples():
        assert sorted(row.tags) == sorted(theirs[row.clip_id]["y_all"]), row.clip_id
        assert row.path == theirs[row.clip_id]["extra"]["mp3_path"]
        assert row.artist == theirs[row.clip_id]["extra"]["artist"]


def test_mtat7_meets_the_split_quality_target(mtat7):
    """Every parent genre within +-1.5 pp of 70/15/15 in every split, no artist in two splits."""
    table, meta = mtat7.table, mtat7.meta
    assert meta.labels == ["Rock", "Classical", "Electronic", "Jazz_Blues", "Folk_Country", "Urban", "World"]
    assert meta.taxonomy == "mtat-7" and len(meta.taxonomy_hash) == 64
    assert meta.group_by == "artist" and meta.split_method == "iterative-stratification"
    assert (table["labels"].map(len) > 0).all()
    assert meta.dropped == {"unlabelled": 25_863 - len(table)}
    assert table.groupby("artist")["split"].nunique().max() == 1
    for label in meta.labels:
        carriers = table[table["labels"].map(lambda labels, label=label: label in labels)]
        shares = carriers["split"].value_counts(normalize=True)
        for split, ratio in zip(("train", "valid", "test"), (0.7, 0.15, 0.15)):
            assert abs(shares[split] - ratio) <= 0.015, (label, split, shares[split])
    matrix = np.array([[label in labels for label in meta.labels] for labels in table["labels"]])
    codes = table["split"].map({"train": 0, "valid": 1, "test": 2}).to_numpy()
    assert meta.max_deviation_pp == pytest.approx(deviations_pp(matrix, codes, (0.7, 0.15, 0.15)).max(), abs=1e-4)
    assert meta.max_deviation_pp <= 1.5


def test_mtat7_labels_follow_the_taxonomy(mtat7):
    rows = mtat7.table.set_index("clip_id")
    # clip 2: classical, strings, opera, violin -> Classical only
    assert rows.loc["2", "labels"] == ["Classical"]
    for tags, labels in zip(rows["tags"], rows["labels"]):
        if "hard rock" in tags or "punk" in tags:
            assert "Rock" in labels
        if "clasical" in tags:
            assert "Classical" in labels


def test_top50_is_the_standard_tagging_vocabulary(musicnn_top50, reference):
    manifest = musicnn_top50
    labels_file = (
        reference / "mtat" / "jordipons__musicnn-training" / "data" / "index" / "mtt" / "output_labels_mtt.txt"
    )
    musicnn = eval(labels_file.read_text().split("=", 1)[1])  # a Python list literal
    assert set(manifest.meta.labels) == set(musicnn)
    assert (manifest.table["labels"].map(len) == 0).sum() == 4_752


def test_musicnn_split_is_the_published_one(musicnn_top50, reference):
    manifest = musicnn_top50
    index = reference / "mtat" / "jordipons__musicnn-training" / "data" / "index" / "mtt"
    published = {
        name: {line.split("\t", 1)[0] for line in (index / f"{name}_gt_mtt.tsv").read_text().splitlines()}
        for name in ("val", "test")
    }
    by_split = manifest.table.groupby("split")["clip_id"].apply(set)
    assert by_split["valid"] == published["val"]
    assert by_split["test"] == published["test"]
    assert len(by_split["train"]) == 18_706 + 3  # musicnn also left out 3 broken clips; we keep and count them
    assert manifest.meta.split_method == "official:musicnn"
    assert manifest.meta.split_ratios == pytest.approx([18_709 / 25_863, 1_825 / 25_863, 5_329 / 25_863], abs=1e-6)


@pytest.mark.parametrize(("group", "n_groups"), [("album", 446), ("song", 5_405), ("none", 25_863)])
def test_group_keys(mtat_files, group, n_groups):
    annotations, clip_info = mtat_files
    # songs come from the mp3 path alone: no clip_info needed
    manifest = mtat(annotations, None if group == "song" else clip_info, group=group, keep_unlabelled=True)
    assert manifest.table["group"].nunique() == n_groups
    assert manifest.table.groupby("group")["split"].nunique().max() == 1
    assert manifest.meta.max_deviation_pp <= 1.5


def test_group_by_artist_needs_clip_info(mtat_files):
    with pytest.raises(UserError, match="--group artist needs --clip-info"):
        mtat(mtat_files[0])


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_taxonomy_file(mtat_files, tmp_path, suffix):
    file = tmp_path / f"mine{suffix}"
    if suffix == ".toml":
        file.write_text('Guitar = ["guitar", "acoustic guitar"]\n"No Voice" = ["no voice", "no vocals"]\n')
    else:
        file.write_text(json.dumps({"Guitar": ["guitar", "acoustic guitar"], "No Voice": ["no voice", "no vocals"]}))
    manifest = mtat(*mtat_files, taxonomy=str(file))
    assert manifest.meta.labels == ["Guitar", "No Voice"]
    assert manifest.meta.taxonomy == file.name
    table = manifest.table.set_index("clip_id")
    has_guitar = table["tags"].map(lambda tags: "guitar" in tags or "acoustic guitar" in tags)
    assert (table["labels"].map(lambda labels: "Guitar" in labels) == has_guitar).all()


def test_taxonomy_naming_a_missing_tag_is_an_error(mtat_files, tmp_path):
    file = tmp_path / "typo.toml"
    file.write_text('Rock = ["rock", "rok"]\n')
    with pytest.raises(UserError, match="tag 'rok'.*not a column of .*annotations_final.csv"):
        mtat(*mtat_files, taxonomy=str(file))


def test_broken_taxonomy_files(tmp_path):
    annotations = small_annotations(tmp_path)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("Rock = [rock\n")
    with pytest.raises(UserError, match="bad.toml: not valid TOML"):
        mtat(annotations, group="none", taxonomy=str(bad_toml))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"Rock": ["rock",\n]}')
    with pytest.raises(UserError, match="bad.json line 2: not valid JSON"):
        mtat(annotations, group="none", taxonomy=str(bad_json))
    empty = tmp_path / "empty.json"
    empty.write_text('{"Rock": []}')
    with pytest.raises(UserError, match="label 'Rock' must list one or more tag names"):
        mtat(annotations, group="none", taxonomy=str(empty))
    with pytest.raises(UserError, match="--taxonomy 'mtat-8'"):
        mtat(annotations, group="none", taxonomy="mtat-8")


HEADER = ["clip_id", "rock", "jazz", "mp3_path"]


def small_annotations(tmp_path: Path, *extra_rows: list[str]) -> Path:
    rows = [HEADER, ["1", "1", "0", "0/a-1-30.mp3"], ["2", "0", "1", "1/b-1-30.mp3"], *extra_rows]
    return write_mtat(tmp_path / "annotations.csv", rows)


def test_the_mtat_dialect_parses_without_clip_info(tmp_path):
    taxonomy = tmp_path / "t.toml"
    taxonomy.write_text('R = ["rock"]\nJ = ["jazz"]\n')
    manifest = mtat(small_annotations(tmp_path), group="none", taxonomy=str(taxonomy))
    assert manifest.table["clip_id"].tolist() == ["1", "2"]
    assert manifest.table["labels"].tolist() == [["R"], ["J"]]
    assert manifest.table["path"].tolist() == ["0/a-1-30.mp3", "1/b-1-30.mp3"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (["3", "1", "0"], r"line 4: expected 4 fields like the header, found 3"),
        (["3", "1", "0", "x.mp3", "extra"], r"line 4: expected 4 fields like the header, found 5"),
        (["1", "1", "0", "2/c-1-30.mp3"], r"line 4: clip_id '1' appears twice"),
        (["3", "1", "2", "2/c-1-30.mp3"], r"line 4: tag column 'jazz' holds '2'"),
        (["3", "1", "0", "/abs/c.mp3"], r"line 4: path '/abs/c.mp3' must be relative"),
        (["3", "1", "0", "../c.mp3"], r"line 4: path '../c.mp3' must be relative"),
    ],
)
def test_bad_annotation_rows_name_the_line(tmp_path, row, message):
    with pytest.raises(UserError, match=message):
        mtat(small_annotations(tmp_path, row), group="none")


def test_bad_annotation_files(tmp_path, reference):
    dirty = reference / "mtat" / "sness__playtagnow" / "tiny_annotations_final.csv"  # has '# comment' lines
    with pytest.raises(
        UserError, match="tiny_annotations_final.csv line 2: expected 7 fields like the header, found 1"
    ):
        mtat(dirty, group="none")
    no_path = write_mtat(tmp_path / "no_path.csv", [["clip_id", "rock"], ["1", "1"]])
    with pytest.raises(UserError, match="no_path.csv: missing column\\(s\\) 'mp3_path'"):
        mtat(no_path, group="none")
    latin1 = small_annotations(tmp_path)
    latin1.write_bytes(latin1.read_bytes().replace(b"b-1-30", "bé-1-30".encode("latin-1")))
    with pytest.raises(UserError, match="annotations.csv line 3: not UTF-8"):
        mtat(latin1, group="none")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(UserError, match="empty.csv is empty"):
        mtat(tmp_path / "empty.csv", group="none")
    with pytest.raises(UserError, match="cannot read .*nope.csv"):
        mtat(tmp_path / "nope.csv", group="none")
    with pytest.raises(UserError, match="is a folder; give the file inside it"):
        mtat(tmp_path, group="none")
    taxonomy_ok = small_annotations(tmp_path)
    with pytest.raises(UserError, match="tag 'hard rock'"):  # mtat-7 needs MTAT's real tag columns
        mtat(taxonomy_ok, group="none")


def test_bad_clip_info(tmp_path):
    columns = ["clip_id", "track_number", "title", "artist", "album", "url",
               "segmentStart", "segmentEnd", "original_url", "mp3_path"]  # fmt: skip
    taxonomy = tmp_path / "t.toml"
    taxonomy.write_text('R = ["rock"]\n')

    def info(header, *rows):
        return write_mtat(tmp_path / "clip_info.csv", [header, *rows])

    row = ["1", "01", "T", "A", "B", "u", "0", "29", "o", "0/a-1-30.mp3"]
    with pytest.raises(UserError, match="missing column\\(s\\) 'artist'"):
        mtat(small_annotations(tmp_path), info(columns[:3] + columns[4:], row[:3] + row[4:]), taxonomy=str(taxonomy))
    with pytest.raises(UserError, match="unexpected column\\(s\\) 'genre'"):
        mtat(small_annotations(tmp_path), info([*columns, "genre"], [*row, "x"]), taxonomy=str(taxonomy))
    with pytest.raises(UserError, match="clip_info.csv: no row for clip_id '2'"):
        mtat(small_annotations(tmp_path), info(columns, row), taxonomy=str(taxonomy))
