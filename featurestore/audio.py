"""Decode one clip into the spec's mono, fixed-length float32 signal.

libsndfile (through soundfile) decodes WAV, FLAC, OGG Vorbis/Opus and MP3; soxr resamples at
high quality. Only the span the spec needs is decoded: the clip starts `spec.offset` seconds in
and lasts `spec.duration` seconds, plus a few milliseconds either side so that the resampler's
edges see real neighbours and a clip decoded from an offset equals the whole file resampled and
then cut.

Anything that makes a clip unusable raises `AudioError` with a one-line reason that the store
records beside the clip; a build never stops for a bad file. Silence is valid audio.

What counts as truncated: libsndfile raising mid-read (FLAC "lost sync", ...), or decoding fewer
frames than the header promises. MP3 headers are only an estimate when the stream has no
Xing/Info frame or starts with an ID3v2 tag (libsndfile then derives the length from the file
size, tag bytes included), so an MP3 shortfall within `MP3_LENGTH_SLACK` of the promised length
is accepted as a slightly shorter clip. Formats that take their length from the data that is
there (WAV by file size, OGG by its last page) cannot be told apart from a shorter recording:
they decode as a shorter clip, which `Decoded.length` records.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import IO, Union

import fsspec
import numpy as np
import soundfile as sf
import soxr

from featurestore.spec import FeatureSpec

Source = Union[str, "os.PathLike[str]", IO[bytes]]

RESAMPLER_CONTEXT_S = 0.02  # soxr 'HQ' edges settle within ~10 ms; measured, doubled
MP3_LENGTH_SLACK = 0.05  # fraction of the promised frames an MP3 may fall short (see above)
_MP3_FRAME = 1152  # samples in one MPEG-1 Layer III frame
_SKIP_BLOCK = 1 << 16


class AudioError(Exception):
    """Why a clip cannot be used, in one line; the store records it as the clip's error."""

    def __init__(self, reason: str):
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return self.args[0]


@dataclass(frozen=True, eq=False)
class Decoded:
    """`samples`: float32 mono at the spec's rate, exactly `spec.n_samples` long.
    `length`: how many of them are decoded audio rather than zero padding."""

    samples: np.ndarray
    length: int


def decode(source: Source, spec: FeatureSpec) -> Decoded:
    """Decode, mix to mono, resample and cut/pad one clip; raise `AudioError` if it is unusable."""
    with contextlib.ExitStack() as stack:
        target = _open(source, stack)
        try:
            sound = stack.enter_context(sf.SoundFile(target))
        except sf.LibsndfileError as e:
            if "not recognised" in e.error_string:
                raise AudioError("not audio: unknown format") from None
            # e.g. MP3-looking bytes that libmpg123 cannot sync to: libsndfile's text says "does not exist"
            raise AudioError(f"not audio: cannot decode the header (libsndfile: {e.error_string.rstrip('.')})") from None
        except (RuntimeError, TypeError, ValueError) as e:
            raise AudioError(f"not audio: {e}") from None
        try:
            return _decode_open(sound, spec)
        except sf.LibsndfileError as e:
            raise AudioError(f"truncated or corrupt: {e.error_string.rstrip('.')}") from None
        except RuntimeError as e:
            raise AudioError(f"truncated or corrupt: {e}") from None


def _open(source: Source, stack: contextlib.ExitStack) -> str | IO[bytes]:
    """What soundfile should open: a local path (libsndfile reads it natively) or a file object."""
    if not isinstance(source, (str, os.PathLike)):
        return _checked(source)
    text = os.fspath(source)
    fs, path = fsspec.core.url_to_fs(text) if "://" in text else (None, text)
    try:
        if fs is None or "file" in fs.protocol:  # local: no Python in libsndfile's reads
            if os.path.isdir(path):
                raise IsADirectoryError(path)
            _check_size(os.path.getsize(path))
            return path
        return _checked(stack.enter_context(fs.open(path, "rb")))
    except FileNotFoundError:
        raise AudioError("file not found") from None
    except IsADirectoryError:
        raise AudioError("not a file: is a directory") from None
    except PermissionError:
        raise AudioError("permission denied") from None


def _checked(handle: IO[bytes]) -> IO[bytes]:
    if handle.seekable():
        here = handle.tell()
        _check_size(handle.seek(0, os.SEEK_END) - here)
        handle.seek(here)
    return handle


def _check_size(size: int) -> None:
    if size == 0:
        raise AudioError("empty file (0 bytes)")


def _decode_open(sound: sf.SoundFile, spec: FeatureSpec) -> Decoded:
    rate, frames = sound.samplerate, sound.frames
    if sound.channels < 1:
        raise AudioError("no audio channels")
    if frames <= 0:
        raise AudioError("no audio frames")
    # Output sample i is at time offset + i/target_rate on the grid of the whole file resampled,
    # so a clip cut from an offset equals the whole file resampled and then cut.
    target = spec.sample_rate
    n = spec.n_samples
    out_start = round(spec.offset * target)
    if out_start * rate // target >= frames:
        raise AudioError(f"offset {spec.offset:g} s is past the end of the audio ({frames / rate:.2f} s)")
    if rate == target:
        first, count, drop = out_start, n, 0
    else:
        g = math.gcd(rate, target)
        step = rate // g  # input frames that span a whole number of output samples
        context = math.ceil(RESAMPLER_CONTEXT_S * rate)
        first = max(0, (out_start * rate // target - context) // step * step)
        drop = out_start - first // step * (target // g)
        count = -(-(out_start + n) * rate // target) + context - first

    _skip_to(sound, first)
    # Mono at the target rate (MTAT's MP3s) is read straight into the zero-padded result.
    direct = rate == target and sound.channels == 1
    padded = np.zeros((count, 1), dtype=np.float32) if direct else None
    data = sound.read(count, dtype="float32", always_2d=True, out=padded)
    promised = min(count, frames - first)
    slack = max(_MP3_FRAME, int(MP3_LENGTH_SLACK * frames)) if sound.format == "MP3" else 0
    if len(data) < promised - slack:
        raise AudioError(
            f"truncated: decoded {(first + len(data)) / rate:.2f} s of the {frames / rate:.2f} s the header promises"
        )

    if padded is not None:
        samples, length = padded.reshape(n), len(data)
    else:
        mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
        if rate != target:
            available = round(len(data) * target / rate) - drop
            mono = soxr.resample(mono, rate, target, quality="HQ")[drop:]
        else:
            available = len(mono)
        length = max(0, min(n, available, len(mono)))
        samples = np.zeros(n, dtype=np.float32)
        samples[:length] = mono[:length]
    if length == 0:
        raise AudioError(f"offset {spec.offset:g} s is past the end of the decodable audio")
    if not np.isfinite(samples).all():
        raise AudioError("non-finite samples")
    return Decoded(samples, length)


def _skip_to(sound: sf.SoundFile, frame: int) -> None:
    """Position at `frame`. libmpg123's seek in VBR MP3s is approximate, so MP3s decode and drop."""
    if frame == 0:
        return
    if sound.format != "MP3":
        sound.seek(frame)
        return
    left = frame
    while left > 0:
        got = len(sound.read(min(left, _SKIP_BLOCK), dtype="float32", always_2d=True))
        if got == 0:
            break
        left -= got
