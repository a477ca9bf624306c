"""libsndfile decoding a file held in memory, with no Python between it and the bytes.

Given a path, libsndfile's MP3 decoder (libmpg123) reads the file a frame at a time: about 1,100
`read` system calls for a 29-s MTAT clip, 0.9 of the 6.2 ms its decode took in a 2-worker build.
soundfile can decode from memory too (a file object), but it calls back into Python for every
read, which costs as much as the system call. The virtual-I/O callbacks here are machine code
(numba `cfunc`s, compiled once into numba's cache) reading a NumPy buffer: the file is read with
one system call and decoded as before, to the same samples bit for bit.

Importing this module compiles the callbacks or loads them from the cache: import it under
`featurestore.environment.compiling()`.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf
from numba import carray, cfunc, types
from soundfile import _ffi, _snd

_HEADER = 16  # the buffer starts with two int64s, the file's length and the read position
_SEEK_SET, _SEEK_CUR = 0, 1


@cfunc(types.int64(types.voidptr), cache=True)
def _length(user):
    return carray(user, 2, np.int64)[0]


@cfunc(types.int64(types.int64, types.intc, types.voidptr), cache=True)
def _seek(offset, whence, user):
    state = carray(user, 2, np.int64)
    base = 0 if whence == _SEEK_SET else (state[1] if whence == _SEEK_CUR else state[0])
    state[1] = min(max(base + offset, 0), state[0])
    return state[1]


@cfunc(types.int64(types.voidptr, types.int64, types.voidptr), cache=True)
def _read(destination, count, user):
    state = carray(user, 2, np.int64)
    n = min(count, state[0] - state[1])
    if n <= 0:
        return 0
    start = _HEADER + state[1]
    carray(destination, n, np.uint8)[:] = carray(user, _HEADER + state[0], np.uint8)[start : start + n]
    state[1] += n
    return n


@cfunc(types.int64(types.voidptr, types.int64, types.voidptr), cache=True)
def _write(source, count, user):
    return 0  # read-only


@cfunc(types.int64(types.voidptr), cache=True)
def _tell(user):
    return carray(user, 2, np.int64)[1]


_VIRTUAL_IO = _ffi.new("SF_VIRTUAL_IO *", {
    "get_filelen": _ffi.cast("sf_vio_get_filelen", _length.address),
    "seek": _ffi.cast("sf_vio_seek", _seek.address),
    "read": _ffi.cast("sf_vio_read", _read.address),
    "write": _ffi.cast("sf_vio_write", _write.address),
    "tell": _ffi.cast("sf_vio_tell", _tell.address),
})


def read_file(path: str, size: int) -> np.ndarray:
    """The file's bytes behind the header the callbacks keep their state in (`size` from a stat;
    a file that changed since holds what was read)."""
    buffer = np.empty(_HEADER + size, dtype=np.uint8)
    with open(path, "rb", buffering=0) as f:
        got = f.readinto(memoryview(buffer)[_HEADER:])
    buffer[:_HEADER].view(np.int64)[:] = (got, 0)
    return buffer


class MemorySoundFile(sf.SoundFile):
    """A read-only SoundFile over a `read_file` buffer, named `name` (its path). soundfile opens
    file objects only through its Python callbacks, so `_open` is the one method replaced."""

    def __init__(self, buffer: np.ndarray, name: str):
        self._buffer = buffer  # libsndfile reads it for as long as the file is open
        super().__init__(name, mode="r")

    def _open(self, file, mode_int, closefd):  # noqa: ARG002 - soundfile's signature
        user = _ffi.cast("void *", self._buffer.ctypes.data)
        with self._sf_error_lock:
            handle = _snd.sf_open_virtual(_VIRTUAL_IO, mode_int, self._info, user)
            if handle == _ffi.NULL:
                raise sf.LibsndfileError(_snd.sf_error(handle), prefix=f"Error opening {self.name!r}: ")
        return handle
