"""FMA adapter: the real genres.csv hierarchy, and tracks.csv fixtures in FMA's exact layout."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from helpers_manifests import fma_track, write_fma_tracks

from featurestore.errors import UserError
from manifests.adapters import fma
from manifests.adapters.fma import genre_roots

ROOTS = ["International", "Blues", "Jazz", "Classical", "Old-Time / Historic", "Country", "Pop", "Rock",
         "Easy Listening", "Soul-RnB", "Electronic", "Folk", "Spoken", "Hip-Hop", "Experimental",
         "Instrumental"]  # fmt: skip


def tracks() -> list[dict[str, str]]:
    return [
        fma_track(2, track__genre_top="Hip-Hop", track__genres_all="[21]", artist__id="1"),
        fma_track(3, track__genre_top="Hip-Hop", track__genres_all="[21]", artist__id="1",
                  artist__bio="Lives in\nNew York, NY"),  # a quoted field over two lines, as in the real file
        fma_track(5, track__genre_top="Rock", track__genres_all="[90, 53, 45, 12]", set__split="validation"),
        fma_track(10, track__genre_top="Pop", track__genres_all="[10, 76]", set__split="test"),
        fma_track(20, track__genre_top="", track__genres_all="[1193, 763, 16, 6, 38, 17]"),  # two roots
        fma_track(26, track__genre_top="Folk", track__genres_all="[17, 103]", set__subset="medium"),
        fma_track(1234, track__genre_top="Rock", track__genres_all="[12]", set__subset="large", artist__id="7"),
        fma_track(99134, track__genre_top="Instrumental", track__genres_all="[1235]", set__split="test"),
    ]  # fmt: skip


@pytest.fixture()
def metadata(tmp_path, reference):
    folder = tmp_path / "fma_metadata"
    write_fma_tracks(folder, tracks())
    shutil.copy(reference / "fma" / "genres.csv", folder / "genres.csv")
    return folder


def test_real_genre_hierarchy(reference):
    root_of, titles = genre_roots(reference / "fma" / "genres.csv")
    table = pd.read_csv(reference / "fma" / "genres.csv", index_col="genre_id")
    assert len(root_of) == 163
    assert [titles[r] for r in sorted(set(root_of.values()))] == ROOTS
    assert root_of == table["top_level"].to_dict()  # the parent chains agree with the published top_level
    assert root_of[1235] == 1235  # Instrumental is a root of its own
    assert (
        root_of[1193] == 38 and titles[1193] == "Christmas"
    )  # Christmas < Holiday < Sound Effects < Novelty < Experimental


def test_fixture_is_the_layout_fma_loaders_read(metadata):
    """The FMA authors' loader (utils.load) reads tracks.csv with a two-row header and the index column."""
    frame = pd.read_csv(metadata / "tracks.csv", index_col=0, header=[0, 1])
    assert frame.shape == (len(tracks()), 52) and frame.index.name == "track_id"
    assert frame.loc[3, ("artist", "bio")] == "Lives in\nNew York, NY"


def test_small_subset_official_split_genre_top(metadata):
    manifest = fma(metadata)
    table = manifest.table.set_index("clip_id")
    assert list(table.index) == ["2", "3", "5", "10", "99134"]  # track 20 has no genre_top: unlabelled, dropped
    assert manifest.meta.dropped == {"unlabelled": 1}
    assert table.loc["2", "path"] == "000/000002.mp3" and table.loc["99134", "path"] == "099/099134.mp3"
    assert table["split"].to_dict() == {"2": "train", "3": "train", "5": "valid", "10": "test", "99134": "test"}
    assert table["labels"].to_dict() == {"2": ["Hip-Hop"], "3": ["Hip-Hop"], "5": ["Rock"], "10": ["Pop"],
                                         "99134": ["Instrumental"]}  # fmt: skip
    assert manifest.meta.labels == ["Pop", "Rock", "Hip-Hop", "Instrumental"]  # roots used, in genre_id order
    assert table.loc["2", "group"] == table.loc["3", "group"] == "1"  # artist id
    assert table.loc["5", "genres_all"] == [90, 53, 45, 12]
    assert manifest.meta.split_method == "official:set.split" and manifest.meta.taxonomy == "fma-genres-top"


def test_subsets_are_cumulative(metadata):
    medium = fma(metadata, subset="medium", keep_unlabelled=True)
    large = fma(metadata, subset="large", keep_unlabelled=True)
    assert set(medium.table["clip_id"]) == {"2", "3", "5", "10", "20", "26", "99134"}
    assert set(large.table["clip_id"]) == set(medium.table["clip_id"]) | {"1234"}
    assert large.table.set_index("clip_id").loc["1234", "path"] == "001/001234.mp3"


def test_all_labels_follow_the_genre_tree(metadata):
    manifest = fma(metadata, labels="all", subset="medium")
    labels = manifest.table.set_index("clip_id")["labels"].to_dict()
    assert labels["20"] == ["Folk", "Experimental"]  # Christmas reaches Experimental through four parents
    assert labels["5"] == ["Rock"]  # Sludge < Noise-Rock < Loud-Rock < Rock
    assert labels["26"] == ["Folk"]
    assert manifest.meta.taxonomy == "fma-genres-all"


def test_ratio_split_keeps_artists_together(metadata):
    manifest = fma(metadata, split="60/20/20", subset="large", keep_unlabelled=True)
    assert manifest.meta.split_method == "iterative-stratification"
    assert manifest.table.groupby("group")["split"].nunique().max() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("set__split", "train", r"tracks.csv line 8: set.split 'train' is not one of training, validation, test"),
        ("set__subset", "tiny", r"tracks.csv line 8: set.subset 'tiny' is not one of small"),
        ("track__genres_all", "[21, x]", r"tracks.csv line 8: track.genres_all '\[21, x\]' is not a list"),
        ("track__genres_all", "[99999]", r"tracks.csv line 8: track.genres_all \[99999\] names a genre"),
        ("track__genre_top", "Hip Hop", r"tracks.csv line 8: genre_top 'Hip Hop' is not a top-level genre"),
    ],
)
def test_bad_track_rows_name_the_line(metadata, field, value, message):
    """Line 8: three header lines, track 2, track 3 over two lines (a quoted newline), track 5."""
    write_fma_tracks(metadata, [*tracks()[:3], fma_track(7, **{field: value})])
    with pytest.raises(UserError, match=message):
        fma(metadata)


def test_bad_tracks_files(metadata, reference):
    write_fma_tracks(metadata, [tracks()[0], tracks()[0]])
    with pytest.raises(UserError, match="tracks.csv line 5: track_id '2' appears twice"):
        fma(metadata)
    rows = [{k: v for k, v in row.items() if k != "set.split"} for row in tracks()]
    write_fma_tracks(metadata, rows)
    with pytest.raises(UserError, match=r"missing column\(s\) 'set.split'"):
        fma(metadata)
    write_fma_tracks(metadata, [dict(row, **{"track.mood": "calm"}) for row in tracks()])
    with pytest.raises(UserError, match=r"unexpected column\(s\) 'track.mood'"):
        fma(metadata)
    pd.DataFrame(tracks()).to_csv(metadata / "tracks.csv", index=False)  # flattened, one header row
    with pytest.raises(UserError, match="expected FMA's 3 header rows"):
        fma(metadata)
    (metadata / "genres.csv").unlink()
    with pytest.raises(UserError, match="cannot read .*genres.csv"):
        fma(metadata)


def test_bad_genres_file(metadata):
    genres = metadata / "genres.csv"
    genres.write_text(genres.read_text().replace("1,8693,38,Avant-Garde,38", "1,8693,38,Avant-Garde,12"))
    with pytest.raises(UserError, match="genres.csv line 2: genre 1: top_level 12 disagrees with its parent chain"):
        fma(metadata)


def test_bad_arguments(metadata):
    with pytest.raises(UserError, match="--subset 'full'"):
        fma(metadata, subset="full")
    with pytest.raises(UserError, match="--labels 'some'"):
        fma(metadata, labels="some")
    with pytest.raises(UserError, match="--split 'random'"):
        fma(metadata, split="random")
