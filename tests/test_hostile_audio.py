"""Hostile audio: bad and odd files next to good clips, built once on the session cluster.

Every kind of file below either decodes (it is legitimately audio, however odd) or fails with a
reason a user can act on; none stops the build, none leaves a non-finite value in the store, and
the good clips come out bit-identical to a build without the hostile ones. Paths that leave the
audio root, by a symlink or by `..`, are refused.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.register_assert_rewrite("helpers_store")

from helpers_store import GENRES, SPEC, _save, assert_same_arrays, read_arrays

from featurestore.audio import AudioError, decode, resolve
from helpers_store import build_store
from featurestore.cli import main
from featurestore.store import FAILED, OK, PENDING, open_store
from featurestore.store.layout import clip_arrays
from featurestore.store.inspect import verify
from featurestore.synth import STYLES, render_clip

pytestmark = pytest.mark.reliability
pytest_plugins = ["helpers_store"]

SR = SPEC.decoding.sample_rate
NON_ASCII = "hostile/Café del Mar – ünïcødé 日本 (live mix).wav"
# kind -> (path under the audio root, expected status, words the stored reason must contain; "" for ok)
HOSTILE: dict[str, tuple[str, int, str]] = {
    "zero-byte": ("hostile/zero-byte.wav", FAILED, "empty file (0 bytes)"),
    "truncated-mp3": ("hostile/truncated.mp3", FAILED, "truncated: the header promises 1.20 s, the file holds 0."),
    "random-bytes-mp3": ("hostile/random.mp3", FAILED, "not audio: no decodable MP3 frame"),
    "random-bytes-wav": ("hostile/random.wav", FAILED, "not audio: the contents match no known audio format"),
    "text-as-ogg": ("hostile/notes.ogg", FAILED, "not audio: a text file, not a recording (it begins 'clip_id,label"),
    "html-as-ogg": ("hostile/download.ogg", FAILED, "not audio: an HTML page, not a recording"),
    "wav-header-overclaims": ("hostile/overclaim.wav", FAILED,
                              "truncated: the header promises 2.00 s, the file holds 0.50 s"),
    "wav-no-frames": ("hostile/no-frames.wav", FAILED, "no audio frames"),
    "pcm-8-bit": ("hostile/pcm8.wav", OK, ""),
    "pcm-24-bit": ("hostile/pcm24.wav", OK, ""),
    "float-nan-inf": ("hostile/float-nan-inf.wav", FAILED,
                      "non-finite samples: NaN or infinity at 0.500 s (a float file with invalid values)"),
    "float-huge": ("hostile/float-huge.wav", FAILED, "samples far beyond full scale: peak 1.5e+05"),
    "float-full-scale": ("hostile/float-over.wav", OK, ""),  # float peaks at 2.0: over full scale, still audio
    "one-sample": ("hostile/one-sample.wav", FAILED,
                   "too short: 0.0625 ms of audio, less than one analysis window (2048 samples, 128 ms)"),
    "ten-minutes": ("hostile/ten-minutes.wav", OK, ""),
    "eight-channels": ("hostile/eight-channels.wav", OK, ""),
    "96-khz": ("hostile/96k.flac", OK, ""),
    "silence": ("hostile/silence.wav", OK, ""),
    "dc-offset": ("hostile/dc.wav", OK, ""),
    "square-full-scale": ("hostile/square.wav", OK, ""),
    "non-ascii-name": (NON_ASCII, OK, ""),
    "symlink-inside": ("hostile/link-inside.wav", OK, ""),
    "symlink-outside": ("hostile/link-outside.wav", FAILED, "refused: the path leaves the audio root (a symlink"),
    "symlinked-dir-outside": ("linked-dir/secret.wav", FAILED, "refused: the path leaves the audio root"),
    "symlink-dangling": ("hostile/dangling.wav", FAILED, "file not found: a broken symlink"),
    "symlink-loop": ("hostile/loop.wav", FAILED, "cannot open: a symlink loop"),
    "named-pipe": ("hostile/pipe.wav", FAILED, "not a regular file: a named pipe"),
    "directory": ("hostile/folder.wav", FAILED, "not a file: is a directory"),
    "missing": ("hostile/missing.wav", FAILED, "file not found"),
}
# Good clips, several formats, rates and channel counts: (extension, soundfile format, subtype, rate, channels)
GOOD_FORMATS = [
    ("wav", "WAV", "PCM_16", 16_000, 1),
    ("mp3", "MP3", None, 22_050, 2),
    ("flac", "FLAC", "PCM_16", 44_100, 2),
    ("ogg", "OGG", "VORBIS", 48_000, 1),
    ("wav", "WAV", "FLOAT", 32_000, 2),
    ("flac", "FLAC", "PCM_24", 16_000, 1),
]
N_GOOD = 12


@dataclass(frozen=True)
class Hostile:
    audio: Path
    outside: Path
    manifest: Path  # good and hostile rows interleaved
    clean: Path  # the good rows only
    good_ids: tuple[str, ...]
    n_rows: int
    long_file: Path


def _mp3(samples: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="MP3")
    return buf.getvalue()


def _wav(samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def write_hostile(audio: Path, outside: Path) -> None:
    """Every kind of HOSTILE under `audio` (and the target of the escaping symlinks in `outside`)."""
    h = audio / "hostile"
    h.mkdir(parents=True)
    outside.mkdir(parents=True)
    rng = np.random.default_rng(7)
    music = render_clip("rock", 5, 1.2, SR)[:, 0]
    t = np.arange(round(1.2 * SR))

    (h / "zero-byte.wav").write_bytes(b"")
    mp3 = _mp3(render_clip("jazz_blues", 6, 1.2, SR), SR)
    (h / "truncated.mp3").write_bytes(mp3[: len(mp3) // 2])
    (h / "random.mp3").write_bytes(rng.integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    (h / "random.wav").write_bytes(rng.integers(0, 256, 64_000, dtype=np.uint8).tobytes())
    (h / "notes.ogg").write_text("clip_id,label\n1,blues\n2,jazz\n" * 20)
    (h / "download.ogg").write_text("<!DOCTYPE html>\n<html><body><h1>404 Not Found</h1></body></html>\n")
    whole = _wav(render_clip("folk_country", 8, 2.0, SR)[:, 0], SR)  # 44-byte header, 2.0 s of 16-bit data
    (h / "overclaim.wav").write_bytes(whole[: 44 + 2 * SR // 2])  # a download cut after 0.5 s
    (h / "no-frames.wav").write_bytes(_wav(np.zeros(0, np.float32), SR))
    sf.write(h / "pcm8.wav", music, SR, subtype="PCM_U8")
    sf.write(h / "pcm24.wav", music, SR, subtype="PCM_24")
    bad = music.copy()
    bad[SR // 2], bad[SR // 2 + 10], bad[SR - 1] = np.nan, np.inf, -np.inf
    sf.write(h / "float-nan-inf.wav", bad, SR, subtype="FLOAT")
    sf.write(h / "float-huge.wav", (music / np.abs(music).max() * 1.5e5).astype(np.float32), SR, subtype="FLOAT")
    sf.write(h / "float-over.wav", music / np.abs(music).max() * 2.0, SR, subtype="FLOAT")
    sf.write(h / "one-sample.wav", music[:1], SR)
    # 10 minutes of 16-bit mono at 8 kHz (9.6 MB): a tiled clip, cheap to write
    sf.write(h / "ten-minutes.wav", np.tile(render_clip("electronic", 9, 2.0, 8000)[:, 0], 300), 8000)
    stereo = render_clip("world", 10, 1.2, SR, channels=2)
    sf.write(h / "eight-channels.wav", np.hstack([stereo * g for g in (1.0, 0.8, 0.6, 0.4)]), SR)
    sf.write(h / "96k.flac", render_clip("classical", 11, 1.2, 96_000), 96_000, subtype="PCM_24")
    sf.write(h / "silence.wav", np.zeros(t.size, np.float32), SR)
    sf.write(h / "dc.wav", np.full(t.size, 0.5, np.float32), SR)
    sf.write(h / "square.wav", np.where(t // 40 % 2 == 0, 1.0, -1.0).astype(np.float32), SR)  # 200 Hz, 0 dBFS
    (audio / NON_ASCII).write_bytes(_wav(music, SR))

    sf.write(outside / "secret.wav", music, SR)  # real audio, but not under the root
    os.symlink("pcm24.wav", h / "link-inside.wav")
    os.symlink(outside / "secret.wav", h / "link-outside.wav")
    os.symlink(outside, audio / "linked-dir")
    os.symlink("nothing-here.wav", h / "dangling.wav")
    os.symlink("loop.wav", h / "loop.wav")
    os.mkfifo(h / "pipe.wav")
    (h / "folder.wav").mkdir()


def write_good(audio: Path) -> list[dict]:
    rows = []
    for i in range(N_GOOD):
        ext, fmt, subtype, rate, channels = GOOD_FORMATS[i % len(GOOD_FORMATS)]
        style = STYLES[i % len(STYLES)]
        path = f"good/{style}.{i:05d}.{ext}"
        (audio / "good").mkdir(parents=True, exist_ok=True)
        sf.write(audio / path, render_clip(style, 100 + i, 1.2, rate, channels=channels), rate, format=fmt,
                 subtype=subtype)
        rows.append({"clip_id": f"good-{i:02d}", "path": path, "labels": [GENRES[i % len(GENRES)]],
                     "split": "train" if i % 4 else "valid", "group": f"good-{i:02d}"})
    return rows


def make_hostile(root: Path) -> Hostile:
    audio = root / "audio"
    write_hostile(audio, root / "outside")
    good = write_good(audio)
    bad = [{"clip_id": kind, "path": path, "labels": [GENRES[j % len(GENRES)]],
            "split": "train" if j % 3 else "test", "group": kind} for j, (kind, (path, _, _)) in enumerate(HOSTILE.items())]
    rows, waiting = [], list(good)  # interleaved: a good clip after every third hostile one, over several shards
    for j, row in enumerate(bad):
        rows.append(row)
        if j % 3 == 1 and waiting:
            rows.append(waiting.pop(0))
    rows += waiting
    return Hostile(audio, root / "outside", _save(rows, root / "hostile.parquet"), _save(good, root / "clean.parquet"),
                   tuple(g["clip_id"] for g in good), len(rows), audio / "hostile" / "ten-minutes.wav")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Hostile:
    return make_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def builds(hostile, dask_cluster, tmp_path_factory):
    """(hostile store, its BuildReport, clean store): each built once on the session cluster."""
    out = tmp_path_factory.mktemp("hostile-builds")
    report = build_store(hostile.manifest, hostile.audio, out / "hostile.zarr", SPEC,
                         scheduler=dask_cluster.scheduler_address, progress=False)
    build_store(hostile.clean, hostile.audio, out / "clean.zarr", SPEC,
                scheduler=dask_cluster.scheduler_address, progress=False)
    return out / "hostile.zarr", report, out / "clean.zarr"


def test_the_corpus_has_every_kind_interleaved_with_good_clips(hostile):
    import manifests

    table = manifests.load(hostile.manifest).table
    assert len(HOSTILE) >= 17 and set(HOSTILE) <= set(table["clip_id"])
    kinds = [c if c in HOSTILE else "good" for c in table["clip_id"]]
    assert kinds.count("good") == N_GOOD and kinds[0] != "good" and "good" in kinds[: len(kinds) // 2]
    assert hostile.long_file.stat().st_size > 9_000_000 and sf.info(hostile.long_file).duration == 600.0


def test_every_clip_is_ok_or_failed_and_the_build_completes(builds, hostile):
    url, report, _ = builds
    store = open_store(url)
    assert store.build_state == "complete"
    status = store.status
    assert report.pending == 0 and not (status == PENDING).any()
    assert report.ok + report.failed == hostile.n_rows == len(status)
    assert report.ok == int((status == OK).sum()) and report.failed == int((status == FAILED).sum())
    expected_failed = sum(s == FAILED for _, s, _ in HOSTILE.values())
    assert report.failed == expected_failed and report.ok == N_GOOD + len(HOSTILE) - expected_failed


def test_each_kind_gets_its_status_and_an_understandable_reason(builds):
    store = open_store(builds[0])
    manifest = store.manifest
    rows = {c: i for i, c in enumerate(manifest["clip_id"])}
    status = store.status
    problems = []
    for kind, (_, want, words) in HOSTILE.items():
        i = rows[kind]
        reason = manifest["error"].iat[i] or ""
        if status[i] != want or words not in reason or (want == OK) != (reason == ""):
            problems.append(f"{kind}: status {status[i]}, reason {reason!r}")
        assert "\n" not in reason and "Traceback" not in reason and "Error:" not in reason
    assert not problems, "\n".join(problems)
    for i in np.flatnonzero(status == FAILED):  # no decoder jargon in place of a reason
        assert not manifest["error"].iat[i].startswith("feature extraction failed"), manifest["error"].iat[i]
    length = store.array("length")[:]
    for kind, (_, want, _) in HOSTILE.items():
        if want == OK:
            assert length[rows[kind]] == SPEC.n_samples, kind  # every ok hostile file lasts at least 1 s


def test_good_clips_are_bit_identical_to_a_build_without_the_hostile_ones(builds, hostile):
    url, _, clean_url = builds
    dirty, clean = open_store(url), open_store(clean_url)
    rows = {c: i for i, c in enumerate(dirty.manifest["clip_id"])}
    clean_rows = {c: i for i, c in enumerate(clean.manifest["clip_id"])}
    assert set(clean_rows) == set(hostile.good_ids)
    assert (clean.status == OK).all()
    for name in clip_arrays(SPEC):
        a, b = dirty.array(name)[:], clean.array(name)[:]
        assert a.dtype == b.dtype
        for clip in hostile.good_ids:
            assert a[rows[clip]].tobytes() == b[clean_rows[clip]].tobytes(), f"{name} of {clip} differs"
    # a symlink inside the root is followed: its clip is the clip of its target
    for name in clip_arrays(SPEC):
        a = dirty.array(name)[:]
        assert a[rows["symlink-inside"]].tobytes() == a[rows["pcm-24-bit"]].tobytes(), name


def test_failed_rows_are_zero_and_every_stored_value_is_finite(builds):
    url = builds[0]
    store = open_store(url)
    failed = store.status == FAILED
    assert failed.any()
    arrays = read_arrays(url)  # the clip arrays and the statistics
    for name, values in arrays.items():
        if values.dtype.kind == "f":
            assert np.isfinite(values).all(), f"non-finite values in {name}"
        if name in clip_arrays(SPEC) and name != "status":
            assert not values[failed].any(), f"{name} rows of failed clips must stay zero"
    for feature in ("logmel", "mfcc"):
        mean, std = store.stats(feature)
        assert np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()


def test_verify_passes_the_hostile_store(builds, capsys):
    url = builds[0]
    checked, problems = verify(open_store(url))
    assert problems == [] and checked == open_store(url).layout.n_shards
    assert main(["verify", str(url)]) == 0
    assert "ok (" in capsys.readouterr().out


def test_cli_build_prints_the_failures_without_a_traceback_and_exits_0(builds, hostile, dask_cluster, tmp_path):
    out = tmp_path / "cli.zarr"
    cmd = [sys.executable, "-m", "featurestore", "build", str(hostile.manifest), "--audio-root", str(hostile.audio),
           "--out", str(out), "--duration", "1", "--crop-samples", "4096",
           "--scheduler", dask_cluster.scheduler_address, "--quiet"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "Traceback" not in printed
    url, report, _ = builds
    assert f"ok {report.ok}, failed {report.failed}, pending 0 of {hostile.n_rows} clips" in done.stdout
    assert "first failures:" in done.stdout
    manifest = open_store(url).manifest
    failures = [f"{c} ({p}): {e}" for c, p, e in zip(manifest["clip_id"], manifest["path"], manifest["error"]) if e]
    for line in failures[:5]:
        assert f"  {line}\n" in done.stdout
    assert_same_arrays(read_arrays(out), read_arrays(url))


# ---- the same rules, one file at a time -------------------------------------------------------


def test_the_ten_minute_file_decodes_only_the_span_it_needs(hostile, monkeypatch):
    read = []
    original = sf.SoundFile.read

    def counting(self, frames=-1, *args, **kwargs):
        data = original(self, frames, *args, **kwargs)
        read.append(len(data))
        return data

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    for offset in (0.0, 299.5):
        read.clear()
        t0 = time.perf_counter()
        got = decode(hostile.long_file, SPEC.replace(offset=offset).decoding)
        elapsed = time.perf_counter() - t0
        assert got.length == SPEC.n_samples and np.isfinite(got.samples).all()
        # the 8-kHz file: one second, plus the resampler's context either side
        assert sum(read) <= 8000 * (1 + 2 * 0.02) + 8, (offset, read)
        assert elapsed < 2.0, f"{elapsed:.2f} s to decode 1 s of a 10-minute file"
        print(f"10-minute file, offset {offset} s: decoded in {elapsed * 1000:.1f} ms")


def test_a_cut_wav_decodes_where_what_survives_covers_the_clip(tmp_path):
    whole = _wav(render_clip("rock", 1, 2.0, SR)[:, 0], SR)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: 44 + 2 * int(1.5 * SR)])  # the header promises 2 s, 1.5 s are there
    assert decode(cut, SPEC.decoding).length == SR  # the first second is all there
    with pytest.raises(AudioError, match=r"^truncated: the header promises 2.00 s, the file holds 1.50 s$"):
        decode(cut, SPEC.replace(offset=1.0).decoding)
    with pytest.raises(AudioError, match=r"^truncated: the header promises 2.00 s, the file holds 1.50 s$"):
        decode(cut, SPEC.replace(offset=1.6).decoding)  # past what is there, not past what was promised
    handle = io.BytesIO(cut.read_bytes())
    with pytest.raises(AudioError, match="^truncated"):
        decode(handle, SPEC.replace(offset=1.0).decoding)
    # a data size left unknown (0xFFFFFFFF) by a writer that could not seek back promises nothing
    streamed = bytearray(whole[: 44 + 2 * int(1.5 * SR)])
    assert streamed[36:40] == b"data"
    streamed[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert decode(tmp_path / "streamed.wav", SPEC.replace(offset=0.9).decoding).length == round(0.6 * SR)


def test_paths_that_leave_the_audio_root_are_refused(hostile, tmp_path):
    root = str(hostile.audio)
    refused = "refused: path is not inside the audio root"
    for path in ("../outside/secret.wav", "good/../../outside/secret.wav", "/etc/passwd", "..", "", "C:\\x.wav"):
        for base in (root, f"file://{root}", "memory://bucket/audio", "s3://bucket/audio"):
            with pytest.raises(AudioError, match=f"^{refused}$"):
                resolve(base, path)
    with pytest.raises(AudioError, match=f"leaves the audio root .*{hostile.outside / 'secret.wav'}"):
        resolve(f"file://{root}", "hostile/link-outside.wav")
    with pytest.raises(AudioError, match="leaves the audio root"):
        resolve(root, "linked-dir/secret.wav")
    assert resolve("memory://bucket/audio/", "a b/ü.wav") == "memory://bucket/audio/a b/ü.wav"
    assert resolve(root, "hostile/link-inside.wav") == os.path.realpath(hostile.audio / "hostile" / "pcm24.wav")
    assert resolve(root, NON_ASCII) == os.path.join(os.path.realpath(root), NON_ASCII)
    # the root itself may be reached through a symlink: only what is under it counts
    (tmp_path / "root-link").symlink_to(hostile.audio)
    assert resolve(tmp_path / "root-link", "hostile/pcm24.wav") == os.path.realpath(hostile.audio / "hostile" / "pcm24.wav")


def test_a_file_that_stat_sees_but_open_cannot_read_fails_with_its_reason(hostile, monkeypatch):
    """Root reads every file, so denied permission is simulated where decode opens the file."""
    import errno

    from featurestore.audio import decoder as audio

    path = hostile.audio / "hostile" / "pcm24.wav"
    for error, words in ((PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
                         (OSError(errno.EIO, "Input/output error"), "cannot open: Input/output error")):
        def failing(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(audio, "open", failing, raising=False)
        with pytest.raises(AudioError, match=f"^{words}$"):
            decode(path, SPEC.decoding)
    monkeypatch.undo()
    assert decode(path, SPEC.decoding).length == SR
