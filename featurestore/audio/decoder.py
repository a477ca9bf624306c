"""Decode one clip into the decoding settings' mono, fixed-length float32 signal.

libsndfile (through soundfile) decodes WAV, FLAC, OGG Vorbis/Opus and MP3; soxr resamples at
high quality. Only the span the settings need is decoded: the clip starts `offset` seconds in
and lasts `duration` seconds, plus a few milliseconds either side so that the resampler's
edges see real neighbours and a clip decoded from an offset equals the whole file resampled and
then cut. A ten-minute file costs what its first second costs.

Anything that makes a clip unusable raises `AudioError` with a one-line reason that the store
records beside the clip; a build never stops for a bad file. Legitimate audio is kept however odd:
silence, a DC offset, a full-scale square wave, 8-, 16-, 24-bit and float samples, up to
`max_channels` channels (averaged to mono), any sample rate from `MIN_INPUT_RATE` to
`max_input_rate` (resampled). Unusable:

- files with more channels or a higher rate than the settings allow: refused from the header alone,
  before a sample is read, so that decode memory stays bounded (channels x rate x seconds);

- files that are not there or cannot be read (missing, a directory, a named pipe, a symlink loop
  or a broken symlink, no permission), empty files, and bytes no decoder recognises;
- truncated files (below);
- non-finite samples (NaN or infinity, which only float files can hold) in the decoded span, and
  samples beyond `MAX_PEAK` (60 dB over full scale): broken float data, whose spectra would
  overflow. A float file that peaks a little over 1.0 is audio;
- too little audio: after the offset, fewer samples than `min_samples` (by default one 2048-sample
  analysis window, or the whole clip if that is shorter): no spectrogram frame would see a full
  window of the file, so the clip's features would describe its zero padding, not its content.

What counts as truncated: libsndfile raising mid-read (FLAC "lost sync", ...), decoding fewer
frames than the header promises, or a WAV whose data chunk claims more bytes than the file holds
(libsndfile silently shortens such a file to what is there, so the RIFF header is read here; a
data size of 0 or 0xFFFFFFFF, which writers that cannot seek back leave, promises nothing). Only
the span a clip needs counts: a truncated file whose surviving part covers it still decodes. MP3
headers are only an estimate when the stream has no Xing/Info frame or starts with an ID3v2 tag
(libsndfile then derives the length from the file size, tag bytes included), so an MP3 shortfall
within `MP3_LENGTH_SLACK` of the promised length is accepted as a slightly shorter clip. Formats
that take their length from the data that is there (OGG by its last page) cannot be told apart
from a shorter recording: they decode as a shorter clip, which `Decoded.length` records.

`resolve` joins a manifest path to the audio root and refuses paths that leave it: absolute paths
and `..` parts anywhere, and, in a local root, symlinks that resolve to a file outside it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import stat
import struct
from dataclasses import dataclass
from typing import IO, Union

import fsspec
import numpy as np
import soundfile as sf
import soxr

from featurestore.errors import AudioError, NotReadable
from featurestore.audio import notes
from featurestore.audio.settings import Decoding
from featurestore.stages import lap
from manifests.paths import stays_inside

Source = Union[str, "os.PathLike[str]", IO[bytes]]

RESAMPLER_CONTEXT_S = 0.02  # soxr 'HQ' edges settle within ~10 ms; measured, doubled
MP3_LENGTH_SLACK = 0.05  # fraction of the promised frames an MP3 may fall short (see above)
MAX_PEAK = 1000.0  # |sample| beyond this (60 dB over full scale) is broken float data, not audio
MIN_INPUT_RATE = 1000  # Hz; a file sampled slower holds no music (a 1 Hz or 8 Hz header is broken)
_MP3_FRAME = 1152  # samples in one MPEG-1 Layer III frame
_MP3_EXTENSIONS = (".mp3", ".mp2", ".mpga", ".mpeg")
_SKIP_BLOCK = 1 << 16
IN_MEMORY_BYTES = 64 * 2**20  # local MP3s up to this size are read whole and decoded from memory
_PEEK_BYTES = 512  # read before libsndfile: a WAV header, or what a file that is not audio holds
_MAX_WAV_CHUNKS = 64  # RIFF chunks read before giving up on finding `data`
_UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)  # left by WAV writers that could not seek back to fill in the size
_PCM_TAGS = (1, 3, 6, 7, 0xFFFE)  # integer PCM, float, A-law, mu-law, extensible: fixed bytes per frame
_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


@dataclass(frozen=True, eq=False)
class Decoded:
    """`samples`: float32 mono at the decoding's rate, exactly `n_samples` long.
    `length`: how many of them are decoded audio rather than zero padding."""

    samples: np.ndarray
    length: int


def resolve(root: str | os.PathLike[str], path: str) -> str:
    """What to decode for the manifest path `path` under the audio root `root` (a folder or URL).

    Refuses (`AudioError` "refused: ...") a path that is absolute or has a `..` part, which a
    validated manifest never holds but a hand-written Parquet might, and, in a local root, a path
    whose symlinks resolve outside the root's own resolved location. A local path is returned
    resolved, so the file decoded is the file checked; a symlink that stays inside the root is
    followed. URLs (s3://, memory://, ...) have no symlinks: they are joined as they are.
    """
    root = os.fspath(root)
    if not stays_inside(path):
        raise AudioError("refused: path is not inside the audio root")
    protocol, local = fsspec.core.split_protocol(root)
    if protocol not in (None, "file", "local"):
        return "/".join([root.rstrip("/"), path])
    base = os.path.realpath(local)
    joined = os.path.join(base, path)
    real = os.path.realpath(joined)
    if os.path.commonpath([base, real]) != base:
        raise AudioError(f"refused: the path leaves the audio root (a symlink resolves it to {real})")
    if not os.path.lexists(real) and os.path.islink(joined):
        raise NotReadable(f"file not found: a broken symlink (to {real})")
    return real


def read_problems(root: str | os.PathLike[str], paths: list[str]) -> list[tuple[str, str]]:
    """(path, reason) for each of `paths` that this process cannot read (`read_problem`)."""
    return [(path, why) for path in paths if (why := read_problem(root, path)) is not None]


def read_problem(root: str | os.PathLike[str], path: str) -> str | None:
    """Why this process cannot open and read the head of the manifest path `path` under `root`
    (a `NotReadable` reason, or another `AudioError`'s), or None if it can."""
    try:
        with contextlib.ExitStack() as stack:
            _peek(_open(resolve(root, path), stack))
    except AudioError as exc:
        return exc.reason
    return None


def decode(source: Source, decoding: Decoding) -> Decoded:
    """Decode, mix to mono, resample and cut/pad one clip; raise `AudioError` if it is unusable,
    its reason ending with what the C decoder printed meanwhile (`featurestore.audio.notes`)."""
    with notes.captured() as said:
        try:
            return _decode(source, decoding)
        except AudioError as exc:
            failed = exc
    raise type(failed)(said.explain(failed.reason)) from None


def _decode(source: Source, decoding: Decoding) -> Decoded:
    with contextlib.ExitStack() as stack:
        target = _open(source, stack)
        head, header_frames = _peek(target)  # before libsndfile reads from a handle
        try:
            sound = stack.enter_context(_sound_file(target))
        except sf.LibsndfileError as e:
            if "not recognised" in e.error_string:
                raise AudioError(f"not audio: {_what_it_is(head)}") from None
            if isinstance(target, str) and target.lower().endswith(_MP3_EXTENSIONS):
                # libsndfile tries the MP3 decoder on the name alone; when libmpg123 cannot sync to
                # a frame its text is "File does not exist or is not a regular file", which it is.
                raise AudioError("not audio: no decodable MP3 frame (named like an MP3, but no valid "
                                 "MPEG audio header found)") from None
            raise AudioError(f"not audio: cannot decode the header (libsndfile: {e.error_string.rstrip('.')})") from None
        except (RuntimeError, TypeError, ValueError) as e:
            raise AudioError(f"not audio: {e}") from None
        lap("open and peek")
        try:
            return _decode_open(sound, decoding, header_frames)
        except sf.LibsndfileError as e:
            raise AudioError(f"truncated or corrupt: {e.error_string.rstrip('.')}") from None
        except RuntimeError as e:
            raise AudioError(f"truncated or corrupt: {e}") from None


def _sound_file(target: str | IO[bytes]) -> sf.SoundFile:
    """libsndfile on `target`. A local MP3 of at most IN_MEMORY_BYTES is read whole and decoded
    from memory (`featurestore.audio.memory`: the same samples without a system call per MP3 frame;
    29-s MTAT clip, one thread: 5.9 -> 4.85 ms). WAV, FLAC and Ogg files are read in large blocks
    and decode no faster from memory (a 30-s WAV: 1.7 ms by path, 2.3 from memory), so they are
    opened by path, as is an MP3 that libsndfile cannot open from memory: every failure reads
    exactly as it does from the path (libsndfile tries the MP3 decoder on a name ending .mp3)."""
    if isinstance(target, str) and target.lower().endswith(_MP3_EXTENSIONS):
        with contextlib.suppress(OSError, sf.LibsndfileError):
            size = os.stat(target).st_size
            if size <= IN_MEMORY_BYTES:
                inmemory = _in_memory()
                return inmemory.MemorySoundFile(inmemory.read_file(target, size), target)
    return sf.SoundFile(target)


@functools.cache
def _in_memory():  # -> the featurestore.audio.memory module
    """Imported once per process, under the compile lock: it compiles numba callbacks (or loads them)."""
    from featurestore.environment import compiling

    with compiling():
        from featurestore.audio import memory
    return memory


def _open(source: Source, stack: contextlib.ExitStack) -> str | IO[bytes]:
    """What soundfile should open: a local path (libsndfile reads it natively) or a file object."""
    if not isinstance(source, (str, os.PathLike)):
        return _checked(source)
    text = os.fspath(source)
    fs, path = fsspec.core.url_to_fs(text) if "://" in text else (None, text)
    local = fs is None or "file" in fs.protocol
    try:
        if local:  # no Python in libsndfile's reads
            _check_local(path)
            return path
        return _checked(stack.enter_context(fs.open(path, "rb")))
    except OSError as e:
        raise _unreadable(e, path if local else None) from None


def _unreadable(e: OSError, local: str | None) -> AudioError:
    """The reason for an OSError met opening or reading `local` (a local path) or a URL (None)."""
    if isinstance(e, FileNotFoundError):
        if local is not None and os.path.islink(local):
            return NotReadable(f"file not found: a broken symlink (to {os.path.realpath(local)})")
        return NotReadable("file not found")
    if isinstance(e, IsADirectoryError):
        return AudioError("not a file: is a directory")
    if isinstance(e, PermissionError):
        return NotReadable("permission denied")
    if e.errno == errno.ELOOP:
        return AudioError("cannot open: a symlink loop (too many levels of symbolic links)")
    return NotReadable(f"cannot open: {e.strerror or e}")


def _check_local(path: str) -> None:
    mode = os.stat(path)
    if stat.S_ISDIR(mode.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode.st_mode):  # reading a named pipe would block the build
        kind = next((name for test, name in _SPECIAL_FILES if test(mode.st_mode)), "a special file")
        raise AudioError(f"not a regular file: {kind}")
    _check_size(mode.st_size)


def _checked(handle: IO[bytes]) -> IO[bytes]:
    if handle.seekable():
        here = handle.tell()
        _check_size(handle.seek(0, os.SEEK_END) - here)
        handle.seek(here)
    return handle


def _check_size(size: int) -> None:
    if size == 0:
        raise AudioError("empty file (0 bytes)")


def _peek(target: str | IO[bytes]) -> tuple[bytes, int | None]:
    """The first bytes of the file, and the frames its WAV header claims (`_read_wav_header`);
    a handle is left where it was."""
    if isinstance(target, str):
        try:
            with open(target, "rb") as f:
                return f.read(_PEEK_BYTES), _read_wav_header(f, 0)
        except OSError as e:  # e.g. readable by stat, not by open
            raise _unreadable(e, target) from None
    if not target.seekable():
        return b"", None
    here = target.tell()
    try:
        return target.read(_PEEK_BYTES), _read_wav_header(target, here)
    finally:
        target.seek(here)


def _what_it_is(head: bytes) -> str:
    """What a file that no decoder recognises seems to hold, for its failure reason."""
    start = head.lstrip()[:200].lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "an HTML page, not a recording (a failed download?)"
    text = None
    for cut in range(4):  # the peek may end inside a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return f"a text file, not a recording (it begins {' '.join(text.split())[:40]!r})"
    return "the contents match no known audio format"


def _read_wav_header(f: IO[bytes], base: int) -> int | None:
    """The frames a RIFF/WAVE file (starting at `base`) claims in its data chunk, whatever the
    file holds; None for other files, compressed WAV, or a data size that promises nothing."""
    f.seek(base)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
        return None
    pos, align = 12, 0
    for _ in range(_MAX_WAV_CHUNKS):
        f.seek(base + pos)
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"fmt ":
            fmt = f.read(16)
            if len(fmt) < 16:
                return None
            tag, align = struct.unpack("<HHIIH", fmt[:14])[::4]
            if tag not in _PCM_TAGS:
                return None
        elif name == b"data":
            return size // align if align and size not in _UNKNOWN_DATA_SIZES else None
        pos += 8 + size + (size & 1)
    return None


def _truncated(promised: int, held: int, rate: int) -> AudioError:
    return AudioError(f"truncated: the header promises {promised / rate:.2f} s, the file holds {held / rate:.2f} s")


def _ms(samples: int, rate: int) -> str:
    return f"{samples / rate * 1000:.3g} ms"


def _decode_open(sound: sf.SoundFile, spec: Decoding, header_frames: int | None) -> Decoded:
    rate, frames = sound.samplerate, sound.frames
    if sound.channels < 1:
        raise AudioError("no audio channels")
    if rate < MIN_INPUT_RATE:
        raise AudioError(f"sample rate {rate} Hz is below {MIN_INPUT_RATE} Hz: no music can be sampled that slowly "
                         "(a broken header?)")
    # libsndfile counts the frames a WAV holds; its header may promise more (a cut download)
    promised_total = max(frames, header_frames or 0)
    if promised_total <= 0:
        raise AudioError("no audio frames")
    # Output sample i is at time offset + i/target_rate on the grid of the whole file resampled,
    # so a clip cut from an offset equals the whole file resampled and then cut.
    target = spec.sample_rate
    n = spec.n_samples
    out_start = round(spec.offset * target)
    if out_start * rate // target >= promised_total:
        raise AudioError(f"offset {spec.offset:g} s is past the end of the audio ({promised_total / rate:.2f} s)")
    if rate == target:
        first, count, drop = out_start, n, 0
    else:
        g = math.gcd(rate, target)
        step = rate // g  # input frames that span a whole number of output samples
        context = math.ceil(RESAMPLER_CONTEXT_S * rate)
        first = max(0, (out_start * rate // target - context) // step * step)
        drop = out_start - first // step * (target // g)
        count = -(-(out_start + n) * rate // target) + context - first
    if sound.channels > spec.max_channels or rate > spec.max_input_rate:
        raise AudioError(f"refused: {sound.channels} channels at {rate} Hz would take "
                         f"{sound.channels * count * 4 / 1e9:.2f} GB to decode (limits {spec.max_channels} channels, "
                         f"{spec.max_input_rate} Hz: --max-channels, --max-input-rate)")
    if first >= frames:  # only where the header promises more than the file holds
        raise _truncated(promised_total, frames, rate)

    _skip_to(sound, first)
    # Mono at the target rate (MTAT's MP3s) is read straight into the zero-padded result.
    direct = rate == target and sound.channels == 1
    padded = np.zeros((count, 1), dtype=np.float32) if direct else None
    data = sound.read(count, dtype="float32", always_2d=True, out=padded)
    lap("decode")
    promised = min(count, promised_total - first)
    slack = max(_MP3_FRAME, int(MP3_LENGTH_SLACK * frames)) if sound.format == "MP3" else 0
    if len(data) < promised - slack:
        raise _truncated(promised_total, first + len(data), rate)
    peak = float(max(data.max(initial=0.0), -data.min(initial=0.0)))  # NaN propagates: refused below
    if not peak <= MAX_PEAK:  # NaN, infinity, or garbage in a float file
        bad = ~np.isfinite(data).all(axis=1)
        if bad.any():
            at = (first + int(np.argmax(bad))) / rate
            raise AudioError(f"non-finite samples: NaN or infinity at {at:.3f} s (a float file with invalid values)")
        raise AudioError(f"samples far beyond full scale: peak {peak:.3g}, over {MAX_PEAK:g} times full scale "
                         "(a float file with invalid values)")
    lap("checks")

    if padded is not None:
        samples, length = padded.reshape(n), len(data)
    else:
        mono = _mono(data)
        if rate != target:
            available = round(len(data) * target / rate) - drop
            mono = soxr.resample(mono, rate, target, quality="HQ")[drop:]
        else:
            available = len(mono)
        length = max(0, min(n, available, len(mono)))
        samples = np.zeros(n, dtype=np.float32)
        samples[:length] = mono[:length]
    lap("mix and resample")
    window = min(spec.min_samples, n)
    if length < window:
        if length == 0 and out_start > 0:
            raise AudioError(f"offset {spec.offset:g} s is past the end of the decodable audio")
        after = " after the offset" if out_start > 0 else ""
        raise AudioError(f"too short: {_ms(length, target)} of audio{after}, less than one analysis window "
                         f"({window} samples, {_ms(window, target)})")
    if padded is None and not np.isfinite(samples).all():  # read straight in: checked above
        raise AudioError("non-finite samples after mixing to mono and resampling")
    lap("checks")
    return Decoded(samples, length)


def _mono(data: np.ndarray) -> np.ndarray:
    """The mean of the channels, `data.mean(axis=1, dtype=float32)` bit for bit. NumPy reduces
    fewer than 8 interleaved channels in order, one frame at a time (20 ms for 30 s of 44.1 kHz
    stereo); adding whole columns in the same order is 3x faster. From 8 channels on NumPy sums
    pairwise, so that order is kept by calling it."""
    channels = data.shape[1]
    if channels == 1:
        return data[:, 0]
    if channels >= 8:
        return data.mean(axis=1, dtype=np.float32)
    total = data[:, 0].copy()
    for c in range(1, channels):
        total += data[:, c]
    return total / np.float32(channels)


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
