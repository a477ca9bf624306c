"""The corpus on disk: GTZAN layout, real files in mixed formats, broken files, reuse and resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from featurestore.errors import UserError
from featurestore.synth import STYLES, CorpusConfig, generate_corpus, render_clip, write_clip


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Every style, four clips each: enough to meet every format, rate and channel count."""
    config = CorpusConfig(tmp_path_factory.mktemp("corpus"), clips_per_style=4, seconds=1.0, seed=7)
    return generate_corpus(config)


def test_layout_is_gtzan_and_folders_are_labels(corpus):
    assert len(corpus.clips) == 4 * len(STYLES) and len(corpus.broken) == 3
    for f in corpus.files:
        style = f.labels[0]
        assert f.labels == (style,)
        assert Path(f.path).parent == Path("genres", style)
        assert Path(f.path).name.startswith(f"{style}.0000")
        assert (corpus.root / f.path).is_file()
    on_disk = sorted(str(p.relative_to(corpus.root)) for p in (corpus.root / "genres").rglob("*") if p.is_file())
    assert on_disk == sorted(f.path for f in corpus.files)
    assert sorted(p.name for p in corpus.folders.iterdir()) == sorted(STYLES)


def test_every_clip_decodes_at_its_recorded_rate_and_channels(corpus):
    for f in corpus.clips:
        samples, rate = sf.read(corpus.root / f.path, dtype="float32", always_2d=True)
        assert (rate, samples.shape[1]) == (f.sample_rate, f.channels), f.path
        assert samples.shape[0] == f.frames, f.path  # MP3 too: LAME's gapless header records the length
        assert np.isfinite(samples).all() and np.abs(samples).max() > 0.01
        assert sf.info(corpus.root / f.path).format == f.format
    seen = {(f.format, f.sample_rate, f.channels) for f in corpus.clips}
    assert {s[0] for s in seen} == {"WAV", "FLAC", "OGG", "MP3"}
    assert {s[1] for s in seen} == {16000, 22050, 32000, 44100}
    assert {s[2] for s in seen} == {1, 2}


def test_broken_files_are_broken_in_the_way_the_report_says(corpus):
    damage = {f.damage: f for f in corpus.broken}
    assert set(damage) == {"empty", "truncated", "not-audio"}
    empty, truncated, not_audio = damage["empty"], damage["truncated"], damage["not-audio"]
    assert "0 bytes" in empty.problem and "truncated MP3" in truncated.problem and "HTML" in not_audio.problem
    assert (corpus.root / empty.path).stat().st_size == 0
    for f in (empty, not_audio):
        with pytest.raises(sf.LibsndfileError):
            sf.info(corpus.root / f.path)
    assert not_audio.path.endswith(".ogg") and b"<html>" in (corpus.root / not_audio.path).read_bytes()
    path = corpus.root / truncated.path
    assert path.suffix == ".mp3"
    promised = sf.info(path).frames
    decoded = len(sf.read(path)[0])
    assert promised == truncated.frames and decoded < 0.6 * promised


def test_rerun_with_same_settings_touches_nothing(corpus):
    before = _mtimes(corpus.root)
    again = generate_corpus(corpus.config)
    assert again.reused and again.written == 0
    assert again.files == corpus.files
    assert _mtimes(corpus.root) == before


def test_same_seed_same_bytes_in_any_process(tmp_path):
    """WAV and FLAC are bit-exact across runs, and across worker processes."""
    config = dict(clips_per_style=2, seconds=0.5, n_broken=0, formats=("WAV", "FLAC"), styles=("rock", "world"))
    one = generate_corpus(CorpusConfig(tmp_path / "a", **config))
    two = generate_corpus(CorpusConfig(tmp_path / "b", **config), workers=2)
    other = generate_corpus(CorpusConfig(tmp_path / "c", seed=1, **config))
    for f in one.files:
        assert (one.root / f.path).read_bytes() == (two.root / f.path).read_bytes()
        assert (one.root / f.path).read_bytes() != (other.root / f.path).read_bytes()


def test_other_settings_regenerate_and_remove_what_no_longer_belongs(tmp_path):
    small = CorpusConfig(tmp_path, clips_per_style=3, seconds=0.5, n_broken=1, styles=("rock", "ambient"))
    first = generate_corpus(small)
    fewer = generate_corpus(
        CorpusConfig(tmp_path, clips_per_style=2, seconds=0.5, n_broken=0, styles=("rock", "ambient"))
    )
    assert fewer.written == 4
    gone = {f.path for f in first.files} - {f.path for f in fewer.files}
    assert len(gone) == 3 and not any((tmp_path / p).exists() for p in gone)
    record = json.loads((tmp_path / "corpus.json").read_text())
    assert record["state"] == "complete" and record["config"]["clips_per_style"] == 2


def test_a_killed_run_resumes_without_redoing_finished_files(tmp_path):
    config = CorpusConfig(tmp_path, clips_per_style=3, seconds=0.5, n_broken=0, styles=("hiphop", "folk_country"))
    report = generate_corpus(config)
    # what a kill leaves: the record still "generating", a missing clip, an orphaned temp file
    record_path = tmp_path / "corpus.json"
    record = json.loads(record_path.read_text())
    record["state"] = "generating"
    record_path.write_text(json.dumps(record))
    missing = tmp_path / report.files[1].path
    missing.unlink()
    orphan = missing.with_name(f".{missing.name}.12345.tmp")
    orphan.write_bytes(b"half a clip")
    before = _mtimes(tmp_path)
    ticks = []
    resumed = generate_corpus(config, progress=lambda done, total: ticks.append((done, total)))
    assert resumed.written == 1 and missing.is_file() and not orphan.exists()
    after = _mtimes(tmp_path)
    unchanged = [p for p in before if p.startswith("genres/") and not p.endswith(".tmp")]
    assert all(after[p] == before[p] for p in unchanged)
    assert ticks == [(6, 6)]
    assert json.loads(record_path.read_text())["state"] == "complete"


def test_a_damaged_file_is_rewritten(tmp_path):
    config = CorpusConfig(tmp_path, clips_per_style=2, seconds=0.5, n_broken=0, styles=("electronic", "classical"))
    report = generate_corpus(config)
    damaged = tmp_path / report.files[0].path
    original = damaged.read_bytes()
    damaged.write_bytes(original[:100])
    again = generate_corpus(config)
    assert again.written == 1 and damaged.read_bytes() == original


def test_multilabel_corpus_mixes_styles_and_lists_them_in_labels_csv(tmp_path):
    config = CorpusConfig(
        tmp_path, clips_per_style=3, seconds=0.5, multilabel=True, styles=("rock", "ambient", "jazz_blues")
    )
    report = generate_corpus(config)
    assert report.labels_csv == tmp_path / "labels.csv"
    with open(report.labels_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "labels", "group"]
    assert [r["path"] for r in rows] == [f.path for f in report.files]  # broken files included
    for row, f in zip(rows, report.files, strict=True):
        assert tuple(row["labels"].split(";")) == f.labels
        assert (tmp_path / row["path"]).is_file()
    assert len({r["group"] for r in rows}) == len(rows)
    pairs = [f for f in report.clips if len(f.labels) == 2]
    assert len(pairs) == 6 and all(a != b for a, b in (f.labels for f in pairs))
    f = next(f for f in pairs if f.format in ("WAV", "FLAC"))  # lossless: the file holds exactly the mix named
    mix, _ = sf.read(tmp_path / f.path, dtype="float32", always_2d=True)
    assert np.abs(mix - render_clip(f.labels, f.seed, 0.5, f.sample_rate, f.channels)).max() < 1e-3
    # a single-label corpus in the same folder leaves no stale labels.csv behind
    generate_corpus(CorpusConfig(tmp_path, clips_per_style=1, seconds=0.5, n_broken=0, styles=("rock", "ambient")))
    assert not (tmp_path / "labels.csv").exists()


def test_write_clip_is_atomic(tmp_path):
    samples = render_clip("world", 1, 0.25, 16_000)
    path = write_clip(tmp_path / "x.flac", samples, 16_000, "flac")
    back, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 16_000 and np.abs(back - samples).max() < 1e-4
    with pytest.raises((ValueError, sf.LibsndfileError)):
        write_clip(tmp_path / "y.wav", samples, 16_000, "WAV", subtype="VORBIS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac"]


@pytest.mark.parametrize(
    "bad",
    [
        dict(formats=("AAC",)),
        dict(multilabel=True, styles=("rock",)),
        dict(styles=("rock", "polka")),
        dict(clips_per_style=0),
    ],
)
def test_bad_settings_are_user_errors(tmp_path, bad):
    with pytest.raises(UserError):
        CorpusConfig(tmp_path, **bad)


def test_a_root_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match="taken"):
        generate_corpus(CorpusConfig(tmp_path / "taken", clips_per_style=1, seconds=0.5))
