"""`featurestore manifest ...` in process (and once as a real process)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from helpers_manifests import fma_track, write_fma_tracks, write_gtzan, write_tone

import manifests
from featurestore.cli import main


@pytest.fixture()
def audio(tmp_path):
    for label in ("calm", "loud"):
        for i in range(6):
            write_tone(tmp_path / "audio" / label / f"{i}.wav")
    return tmp_path / "audio"


def test_mtat_summary_and_show(reference, tmp_path, capsys):
    out = tmp_path / "mtat.parquet"
    mtat = reference / "mtat"
    code = main(["manifest", "mtat", "--annotations", str(mtat / "annotations_final.csv"),
                 "--clip-info", str(mtat / "clip_info_final.csv"), "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    manifest = manifests.load(out)
    assert f"{len(manifest.table):,} clips, 7 labels (mtat)" in printed
    assert f"dropped: {25_863 - len(manifest.table):,} unlabelled" in printed
    assert "groups: artist: train " in printed
    assert f"max deviation of a label's share from the split ratio: {manifest.meta.max_deviation_pp:.2f} pp" in printed
    assert "groups in more than one split: 0" in printed

    assert main(["manifest", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "taxonomy mtat-7" in shown and "iterative-stratification (70/15/15, seed 0), groups: artist" in shown
    urban = next(line for line in shown.splitlines() if line.startswith("Urban"))
    counts = manifest.table[manifest.table["labels"].map(lambda labels: "Urban" in labels)]["split"].value_counts()
    assert urban.split()[1:7:2] == [f"{counts[s]:,}" for s in ("train", "valid", "test")]
    assert urban.split()[-1] == f"{counts.sum():,}"
    groups = next(line for line in shown.splitlines() if line.startswith("(groups)")).split()
    assert groups[-1] == "230"
    # groups (artists) per label per split, and a warning for the pairs resting on fewer than 3
    lines = shown.splitlines()
    per_label = lines[next(i for i, line in enumerate(lines) if line.startswith("groups per label")) + 1:]
    exploded = manifest.table.explode("labels")
    for label in manifest.meta.labels:
        row = next(line for line in per_label if line.startswith(label + " ")).split()
        of_label = exploded[exploded["labels"] == label]
        expected = of_label.groupby("split")["group"].nunique().reindex(["train", "valid", "test"], fill_value=0)
        assert row[-4:] == [f"{n:,}" for n in expected] + [f"{of_label['group'].nunique():,}"], label
    few = int((exploded.groupby(["labels", "split"])["group"].nunique().unstack(fill_value=0)
               .reindex(columns=["train", "valid", "test"], fill_value=0) < 3).to_numpy().sum())
    warning = [line for line in lines if line.startswith("warning: ")]
    assert warning == ([] if not few else [next(w for w in warning if w.startswith(f"warning: {few} label/split"))])


def test_gtzan_filtered_and_fma_from_the_cli(reference, tmp_path, capsys):
    write_gtzan(tmp_path / "gtzan")
    out = tmp_path / "gtzan.parquet"
    assert main(["manifest", "gtzan", "--root", str(tmp_path / "gtzan"), "--split", "filtered", "--out", str(out)]) == 0
    assert "train 443, valid 197, test 290" in capsys.readouterr().out
    metadata = tmp_path / "fma_metadata"
    rows = [
        fma_track(2, track__genre_top="Rock", track__genres_all="[12]"),
        fma_track(3, track__genre_top="Pop", track__genres_all="[10]", set__split="test"),
    ]
    write_fma_tracks(metadata, rows)
    shutil.copy(reference / "fma" / "genres.csv", metadata)
    assert (
        main(["manifest", "fma", "--metadata", str(metadata), "--labels", "all", "--out", str(tmp_path / "f.parquet")])
        == 0
    )
    assert "official:set.split" in capsys.readouterr().out


def test_same_command_same_bytes(audio, tmp_path, capsys):
    for name in ("a", "b"):
        assert (
            main(
                ["manifest", "folder", "--root", str(audio), "--seed", "4", "--out", str(tmp_path / f"{name}.parquet")]
            )
            == 0
        )
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_check_audio(audio, tmp_path, capsys):
    listing = tmp_path / "clips.csv"
    listing.write_text("path,label\ncalm/0.wav,calm\nloud/0.wav,loud\ncalm/missing.wav,calm\n")
    out = tmp_path / "m.parquet"
    code = main(["manifest", "csv", "--file", str(listing), "--root", str(audio), "--check-audio", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "missing: calm/missing.wav" in err
    assert "1 of 3 audio files are missing under" in err.splitlines()[-1]
    listing.write_text("path,label\ncalm/0.wav,calm\nloud/0.wav,loud\n")
    assert (
        main(["manifest", "csv", "--file", str(listing), "--root", str(audio), "--check-audio", "--out", str(out)]) == 0
    )
    assert out.is_file()
    assert main(["manifest", "csv", "--file", str(listing), "--check-audio", "--out", str(out)]) == 2
    assert "--check-audio needs --root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["folder", "--root", "{audio}", "--out", "{tmp}/missing/m.parquet"], "folder .*missing does not exist"),
        (["folder", "--root", "{audio}", "--split", "70/30", "--out", "{tmp}/m.parquet"], "three positive numbers"),
        (["csv", "--file", "{tmp}/bad.csv", "--out", "{tmp}/m.parquet"], r"bad.csv line 3: expected 2 fields"),
        (["show", "{tmp}/bad.csv"], "cannot read manifest"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(audio, tmp_path, capsys, args, message):
    (tmp_path / "bad.csv").write_text("path,label\na.wav,x\nb.wav\n")
    code = main(["manifest", *[a.format(audio=audio, tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("featurestore manifest: error: ")
    assert re.search(message, err)
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize("source", ["mtat", "gtzan", "fma", "folder", "csv", "show"])
def test_each_source_has_its_own_help(source, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["manifest", source, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: featurestore manifest {source}" in capsys.readouterr().out


def test_console_process(audio, tmp_path):
    """The real program: exit status and output of a separate process."""
    out = tmp_path / "m.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "featurestore", "manifest", "folder", "--root", str(audio), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 clips, 2 labels" in done.stdout
    assert len(manifests.load(out).table) == 12


def test_show_warns_when_a_label_rests_on_fewer_than_three_groups_in_a_split(tmp_path, capsys):
    from manifests.adapters import folder

    for label in ("jazz", "rock"):
        for i in range(6):
            write_tone(tmp_path / "audio" / label / f"{i}.wav")
    manifest = folder(tmp_path / "audio", split=(0.6, 0.2, 0.2), seed=0)
    out = manifests.save(manifest, tmp_path / "m.parquet")
    assert main(["manifest", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "groups per label" in shown
    warning = next(line for line in shown.splitlines() if line.startswith("warning: "))
    assert "rest on fewer than 3 groups" in warning and "jazz in valid (" in warning
