"""The generic adapters: a folder per label, and a plain CSV."""

from __future__ import annotations

import pytest
from helpers_manifests import write_tone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import UserError
from manifests.adapters import csv, folder


def test_folder_per_label_any_audio_format(tmp_path):
    for i, ext in enumerate(["wav", "flac", "ogg", "mp3"] * 5):
        write_tone(tmp_path / ("calm" if i % 2 else "loud") / f"clip{i:02d}.{ext}")
    write_tone(tmp_path / "loud" / "live" / "encore.wav")  # deeper folders keep the top folder's label
    (tmp_path / "loud" / "README.txt").write_text("notes")
    (tmp_path / "calm" / ".DS_Store").write_bytes(b"\0")
    write_tone(tmp_path / "stray.wav")  # not in a label folder
    manifest = folder(tmp_path, split=(0.6, 0.2, 0.2), seed=0)
    table = manifest.table.set_index("clip_id")
    assert len(table) == 21
    assert manifest.meta.labels == ["calm", "loud"]
    assert (
        table.loc["loud/live/encore", "labels"] == ["loud"] and table.loc["calm/clip01", "path"] == "calm/clip01.flac"
    )
    assert manifest.meta.dropped == {"not audio": 1, "outside label folders": 1}
    per_label = table.assign(label=table["labels"].str[0]).groupby(["label", "split"]).size().to_dict()
    assert per_label == {("calm", "train"): 6, ("calm", "valid"): 2, ("calm", "test"): 2,
                         ("loud", "train"): 7, ("loud", "valid"): 2, ("loud", "test"): 2}  # fmt: skip


def test_folder_split_as_text_and_default(tmp_path):
    for label in ("a", "b"):
        for i in range(10):
            write_tone(tmp_path / label / f"{i}.wav")
    assert folder(tmp_path, split="80/10/10").table["split"].value_counts().to_dict() == {
        "train": 16, "valid": 2, "test": 2
    }  # fmt: skip
    assert folder(tmp_path).meta.split_ratios == [0.7, 0.15, 0.15]


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        folder(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="no audio files in label folders"):
        folder(tmp_path)
    write_tone(tmp_path / "a" / "song.wav")
    write_tone(tmp_path / "a" / "song.flac")
    with pytest.raises(UserError, match="two audio files for clip 'a/song'"):
        folder(tmp_path)


def write_csv(tmp_path, text: str, name: str = "clips.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_labels_groups_and_given_split(tmp_path):
    file = write_csv(
        tmp_path,
        "path,labels,group,split\n"
        "a/1.wav,rock;pop,g1,train\n"
        "a/2.wav, pop ,g1,train\n"
        "b/3.wav,jazz,,valid\n"
        'b/4.wav,"rock; jazz",g2,test\n',
    )
    manifest = csv(file)
    table = manifest.table
    assert manifest.meta.labels == ["jazz", "pop", "rock"]
    assert table["labels"].tolist() == [["pop", "rock"], ["pop"], ["jazz"], ["jazz", "rock"]]
    assert table["split"].tolist() == ["train", "train", "valid", "test"]  # kept as is
    assert table["group"].tolist() == ["g1", "g1", "b/3.wav", "g2"]  # no group: the clip alone
    assert manifest.meta.split_method == "given:split column" and manifest.meta.dataset == "clips"


def test_csv_split_by_ratios_over_groups(tmp_path):
    rows = [f"{artist}/{i}.wav,{'ab'[artist % 2]},{artist}" for artist in range(40) for i in range(3)]
    manifest = csv(write_csv(tmp_path, "path,label,group\n" + "\n".join(rows) + "\n"), split="50/25/25")
    assert manifest.table.groupby("group")["split"].nunique().max() == 1
    assert manifest.table["split"].value_counts().to_dict() == {"train": 60, "valid": 30, "test": 30}


def test_csv_unlabelled_rows_are_counted_or_kept(tmp_path):
    file = write_csv(tmp_path, "path,label\nx.wav,a\ny.wav,\nz.wav,b\nw.wav,a\n")
    assert csv(file).meta.dropped == {"unlabelled": 1}
    kept = csv(file, keep_unlabelled=True)
    assert len(kept.table) == 4 and kept.table.set_index("clip_id").loc["y.wav", "labels"] == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\na.wav,x\nb.wav\n", r"clips.csv line 3: expected 2 fields like the header, found 1"),
        ("path,label\na.wav,x\nb.wav,y,z\n", r"clips.csv line 3: expected 2 fields like the header, found 3"),
        ("path,label\na.wav,x\n/abs/b.wav,y\n", r"clips.csv line 3: path '/abs/b.wav' must be relative"),
        ("path,label\na.wav,x\nsub/../../b.wav,y\n", r"clips.csv line 3: path 'sub/../../b.wav' must be relative"),
        ("path,label\na.wav,x\na.wav,y\n", r"clips.csv line 3: path 'a.wav' appears twice"),
        (
            "path,label,split\na.wav,x,train\nb.wav,y,validation\n",
            r"clips.csv line 3: split 'validation' is not one of",
        ),
        ("path,label,labels\na.wav,x,y\n", r"needs exactly one of the columns 'label' or 'labels'"),
        ("path,genre\na.wav,x\n", r"needs exactly one of the columns 'label' or 'labels'"),
        ("file,label\na.wav,x\n", r"missing column\(s\) 'path'"),
        ("path,label,artist\na.wav,x,y\n", r"unexpected column\(s\) 'artist'"),
        ("path,label,label\na.wav,x,y\n", r"column 'label' appears more than once"),
        ("", r"clips.csv is empty"),
    ],
)
def test_csv_bad_input(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        csv(write_csv(tmp_path, text))


def test_csv_encoding_and_split_conflicts(tmp_path):
    latin1 = tmp_path / "clips.csv"
    latin1.write_bytes("path,label\na.wav,x\nb.wav,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match="clips.csv line 3: not UTF-8"):
        csv(latin1)
    bom = write_csv(tmp_path, "\ufeffpath,label\na.wav,x\n", "bom.csv")  # Excel writes a byte-order mark
    assert csv(bom, keep_unlabelled=True).table["path"].tolist() == ["a.wav"]
    given = write_csv(tmp_path, "path,label,split\na.wav,x,train\n", "given.csv")
    with pytest.raises(UserError, match="has a split column, which is kept as is"):
        csv(given, split="70/15/15")


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(list(b'ab,;\t"\r\n/.01 \xff\xc3\xa9')), max_size=120).map(bytes))
def test_csv_any_bytes_give_a_manifest_or_one_clear_error(tmp_path, body):
    file = tmp_path / "clips.csv"
    file.write_bytes(b"path,labels,group,split\n" + body)
    try:
        manifest = csv(file, keep_unlabelled=True)
    except UserError as exc:
        assert str(exc).startswith(str(file)) and "\n" not in str(exc)
    else:
        assert manifest.table["clip_id"].is_unique and set(manifest.table["split"]) <= {"train", "valid", "test"}


def test_folder_group_regex_keeps_songs_and_artists_in_one_split(tmp_path):
    """Album folders and 'Artist - Title' names: every piece of a group lands in one split."""
    for label in ("rock", "jazz"):
        for artist in range(6):
            for piece in range(4):
                write_tone(tmp_path / label / f"{label}-band{artist} - take{piece}.wav")
    manifest = folder(tmp_path, split=(0.5, 0.25, 0.25), seed=0, group_regex=r"^(.+?) - ")
    table = manifest.table
    assert table["group"].nunique() == 12 and table.groupby("group").size().eq(4).all()
    assert table.groupby("group")["split"].nunique().max() == 1
    assert manifest.meta.group_by == r"regex:^(.+?) - "
    by_album = folder(tmp_path, split=(0.5, 0.25, 0.25), group_regex=r"take[0-3]")  # no capture group: the match
    assert sorted(by_album.table["group"].unique()) == ["take0", "take1", "take2", "take3"]
    with pytest.raises(UserError, match=r"24 of 48 files do not match --group-regex '\^rock' \(first: jazz-band0"):
        folder(tmp_path, group_regex="^rock")
    with pytest.raises(UserError, match="--group-regex '\\(' is not a valid regular expression"):
        folder(tmp_path, group_regex="(")


def test_folder_cli_warns_without_a_group(tmp_path, capsys):
    from featurestore.cli import main

    for i in range(8):
        write_tone(tmp_path / "audio" / ("a" if i % 2 else "b") / f"Band{i % 4} - {i}.wav")
    out = tmp_path / "m.parquet"
    assert main(["manifest", "folder", "--root", str(tmp_path / "audio"), "--out", str(out)]) == 0
    assert "warning: no --group-regex: every file is its own group" in capsys.readouterr().err
    assert main(["manifest", "folder", "--root", str(tmp_path / "audio"), "--out", str(out),
                 "--group-regex", "^(Band[0-9])"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "regex:^(Band[0-9])" in captured.out
