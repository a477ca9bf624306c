"""Decoding: every format to the right mono signal and length, and every broken file to one reason."""

from __future__ import annotations

import dataclasses
import io
import os
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import soundfile as sf
import soxr

from featurestore.audio import AudioError, Decoded, decode
from featurestore.spec import Decoding
from helpers_featuremaths import music

SR = 16_000
# (format, subtype, extension, file rate, channels): other rates and channel counts than the spec's
FORMATS = [
    ("WAV", "PCM_16", "wav", 44_100, 2),
    ("FLAC", None, "flac", 48_000, 3),
    ("OGG", "VORBIS", "ogg", 22_050, 2),
    ("OGG", "OPUS", "opus", 48_000, 2),
    ("MP3", None, "mp3", 44_100, 2),
]


def spec(**changes) -> Decoding:
    return dataclasses.replace(Decoding(sample_rate=SR, duration=1.0), **changes)


def write(path: Path, seconds: float, rate: int, channels: int, fmt: str, subtype: str | None) -> Path:
    sf.write(path, music(seconds, rate, seed=7, channels=channels), rate, format=fmt, subtype=subtype)
    return path


def expected(path: Path) -> np.ndarray:
    """The whole file decoded, averaged to mono and resampled: what any cut of it must equal."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float32)
    return mono if rate == SR else soxr.resample(mono, rate, SR, quality="HQ")


@pytest.mark.parametrize("fmt, subtype, ext, rate, channels", FORMATS, ids=[f[2] for f in FORMATS])
def test_formats_decode_to_mono_at_the_spec_rate(tmp_path, fmt, subtype, ext, rate, channels):
    path = write(tmp_path / f"clip.{ext}", 1.6, rate, channels, fmt, subtype)
    reference = expected(path)

    whole = decode(path, spec())
    assert isinstance(whole, Decoded)
    assert whole.samples.dtype == np.float32 and whole.samples.shape == (SR,)
    assert whole.length == SR
    np.testing.assert_allclose(whole.samples, reference[:SR], atol=1e-5)

    # From an offset: equal to the whole file resampled and then cut (resampler edges included).
    later = decode(path, spec(offset=0.55, duration=0.5))
    start = round(0.55 * SR)
    assert later.length == SR // 2
    np.testing.assert_allclose(later.samples, reference[start : start + SR // 2], atol=1e-5)

    # Longer than the file: decoded part, then zeros; `length` says where the audio ends.
    padded = decode(path, spec(duration=2.5))
    assert padded.samples.shape == (int(2.5 * SR),)
    assert abs(padded.length - round(1.6 * SR)) <= 1
    np.testing.assert_allclose(padded.samples[: padded.length], reference[: padded.length], atol=1e-5)
    assert not padded.samples[padded.length :].any()

    # Offset plus padding: what is left after the offset, then zeros.
    tail = decode(path, spec(offset=1.2, duration=1.0))
    assert abs(tail.length - round(0.4 * SR)) <= 1
    assert not tail.samples[tail.length :].any()


def test_same_rate_mono_wav_is_passed_through_unchanged(tmp_path):
    y = music(1.2, SR, seed=3)
    sf.write(tmp_path / "x.wav", y, SR, subtype="FLOAT")
    got = decode(tmp_path / "x.wav", spec(offset=0.5, duration=1.0))
    np.testing.assert_array_equal(got.samples[: got.length], y[8000 : 8000 + got.length])
    assert got.length == round(0.7 * SR)
    assert not got.samples[got.length :].any()


def test_every_kind_of_source_gives_the_same_samples(tmp_path):
    path = write(tmp_path / "clip.mp3", 1.2, 44_100, 2, "MP3", None)
    url = f"memory://test-audio-{uuid.uuid4().hex}/clip.mp3"
    with fsspec.open(url, "wb") as f:
        f.write(path.read_bytes())
    try:
        reference = decode(path, spec())
        sources = [str(path), f"file://{path}", url, io.BytesIO(path.read_bytes())]
        for source in sources:
            got = decode(source, spec())
            assert got.length == reference.length
            np.testing.assert_array_equal(got.samples, reference.samples)
        with open(path, "rb") as handle:
            np.testing.assert_array_equal(decode(handle, spec()).samples, reference.samples)
        with fsspec.open(url, "rb") as handle:
            np.testing.assert_array_equal(decode(handle, spec()).samples, reference.samples)
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory://"))


@pytest.mark.parametrize("rate, channels, offset", [(16_000, 1, 0.0), (44_100, 2, 0.0), (44_100, 2, 0.7)])
def test_mp3s_decode_from_memory_to_the_samples_libsndfile_reads_from_the_path(tmp_path, monkeypatch, rate,
                                                                                channels, offset):
    import featurestore.audio.decoder as audio
    from featurestore.audio.memory import MemorySoundFile

    path = write(tmp_path / "clip.mp3", 2.5, rate, channels, "MP3", None)
    from_memory = decode(path, spec(offset=offset))
    with audio._sound_file(str(path)) as sound:  # the path the build takes: no read call per frame
        assert isinstance(sound, MemorySoundFile) and (sound.samplerate, sound.channels) == (rate, channels)
    monkeypatch.setattr(audio, "IN_MEMORY_BYTES", path.stat().st_size - 1)  # too large: by path
    with audio._sound_file(str(path)) as sound:
        assert not isinstance(sound, MemorySoundFile)
    from_path = decode(path, spec(offset=offset))
    assert from_memory.length == from_path.length
    assert from_memory.samples.tobytes() == from_path.samples.tobytes()
    # Other formats are read by path: libsndfile reads them in large blocks.
    wav = write(tmp_path / "clip.wav", 0.5, rate, channels, "WAV", "PCM_16")
    with audio._sound_file(str(wav)) as sound:
        assert not isinstance(sound, MemorySoundFile)


@pytest.mark.parametrize("channels", [2, 3, 7, 8, 12])
def test_channels_are_averaged_exactly_as_numpy_mean(tmp_path, channels):
    """The mix is NumPy's float32 mean bit for bit, whichever way it is computed for speed."""
    data = music(0.5, SR, seed=channels, channels=channels) * np.linspace(0.2, 1.0, channels, dtype=np.float32)
    sf.write(tmp_path / "multi.wav", data, SR, subtype="FLOAT")
    got = decode(tmp_path / "multi.wav", spec(duration=0.5))
    np.testing.assert_array_equal(got.samples, data.astype(np.float32).mean(axis=1, dtype=np.float32))


def test_silence_is_valid_audio(tmp_path):
    sf.write(tmp_path / "quiet.flac", np.zeros((SR, 2), dtype=np.float32), SR)
    got = decode(tmp_path / "quiet.flac", spec())
    assert got.length == SR and not got.samples.any()


# ---- files that cannot be used: each gives AudioError with one short line, nothing else escapes


def reason(source, **changes) -> str:
    with pytest.raises(AudioError) as caught:
        decode(source, spec(**changes))
    text = caught.value.reason
    assert text == str(caught.value) and "\n" not in text and 0 < len(text) < 200
    return text


def test_missing_file(tmp_path):
    assert reason(tmp_path / "nowhere.mp3") == "file not found"
    assert reason(f"memory://test-audio-{uuid.uuid4().hex}/nowhere.mp3") == "file not found"


def test_directory(tmp_path):
    assert "directory" in reason(tmp_path)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    assert reason(tmp_path / "empty.mp3") == "empty file (0 bytes)"
    assert reason(io.BytesIO(b"")) == "empty file (0 bytes)"


def test_random_bytes_and_text_are_not_audio(tmp_path):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    for name in ("noise.wav", "noise.mp3", "noise.flac"):
        (tmp_path / name).write_bytes(noise)
        assert reason(tmp_path / name).startswith("not audio")
    (tmp_path / "notes.wav").write_text("these are my notes, not a recording\n" * 40)
    assert reason(tmp_path / "notes.wav").startswith("not audio")
    assert reason(io.BytesIO(noise)).startswith("not audio")


@pytest.mark.parametrize("keep", [0.3, 0.7])
def test_truncated_mp3(tmp_path, keep):
    whole = write(tmp_path / "whole.mp3", 3.0, 44_100, 2, "MP3", None)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: int(len(data) * keep)])
    # Asking for the whole clip reaches the missing part: the clip is unusable.
    assert reason(cut, duration=3.0).startswith("truncated")
    # A span that lies wholly in the part that survived still decodes.
    assert decode(cut, spec(duration=0.5)).length == SR // 2


def test_truncated_flac(tmp_path):
    whole = write(tmp_path / "whole.flac", 2.0, 44_100, 2, "FLAC", None)
    data = whole.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "cut.flac", duration=2.0).startswith("truncated")


def test_corrupt_middle_of_flac(tmp_path):
    whole = write(tmp_path / "whole.flac", 2.0, 44_100, 1, "FLAC", None)
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = bytes(4000)
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    assert reason(tmp_path / "bad.flac", duration=2.0).startswith("truncated or corrupt")


def test_non_finite_samples(tmp_path):
    y = music(1.0, SR, seed=1)
    y[5000] = np.nan
    sf.write(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    assert reason(tmp_path / "nan.wav") == "non-finite samples: NaN or infinity at 0.312 s (a float file with invalid values)"
    y[5000] = np.inf
    sf.write(tmp_path / "inf.wav", y, 44_100, subtype="FLOAT")  # caught before resampling spreads it
    assert reason(tmp_path / "inf.wav").startswith("non-finite samples: NaN or infinity at 0.113 s")


def test_no_frames(tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros((0, 2), dtype=np.float32), SR)
    assert reason(tmp_path / "none.wav") == "no audio frames"


def test_offset_past_the_end(tmp_path):
    write(tmp_path / "short.wav", 0.5, SR, 1, "WAV", "PCM_16")
    assert "past the end" in reason(tmp_path / "short.wav", offset=0.8)


def test_reasons_never_leak_other_exceptions(tmp_path):
    """A sweep of damaged copies of a real file: each decodes or gives AudioError, nothing else."""
    whole = write(tmp_path / "whole.mp3", 1.5, 44_100, 2, "MP3", None).read_bytes()
    rng = np.random.default_rng(1)
    outcomes = set()
    for i in range(12):
        damaged = bytearray(whole)
        at = int(rng.integers(0, len(damaged) - 600))
        damaged[at : at + 500] = rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
        path = tmp_path / f"damaged{i}.mp3"
        path.write_bytes(bytes(damaged[: int(len(damaged) * rng.uniform(0.2, 1.0))]))
        try:
            got = decode(path, spec(duration=1.5))
            assert np.isfinite(got.samples).all()
            outcomes.add("decoded")
        except AudioError:
            outcomes.add("failed")
    assert "failed" in outcomes  # the sweep reached the error paths, not only lucky damage


def test_audio_error_is_one_line():
    assert AudioError("bad\n  thing").reason == "bad thing"
    assert os.linesep not in str(AudioError("a\r\nb"))


def test_decoder_notes_become_part_of_the_reason_not_stray_stderr_lines(tmp_path, capfd):
    """libmpg123 prints "Note: Illegal Audio-MPEG-Header ..." on file descriptor 2; the clip's
    one-line reason carries the first of them, and nothing reaches stderr."""
    data = bytearray(write(tmp_path / "whole.mp3", 3.0, 16_000, 1, "MP3", None).read_bytes())
    data[len(data) // 3 : 2 * len(data) // 3] = bytes(2 * len(data) // 3 - len(data) // 3)  # a hole mid-stream
    (tmp_path / "holed.mp3").write_bytes(bytes(data))
    capfd.readouterr()
    text = reason(tmp_path / "holed.mp3", duration=3.0)
    assert text.startswith("truncated") and "(decoder: Illegal Audio-MPEG-Header 0x00000000 at offset " in text
    assert "more note(s))" in text
    assert capfd.readouterr().err == ""
    os.write(2, b"a line of someone else's\n")  # what is not the decoder's still reaches stderr
    assert capfd.readouterr().err == "a line of someone else's\n"
