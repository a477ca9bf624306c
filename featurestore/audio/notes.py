"""What the C decoders print while a clip decodes.

libmpg123 (inside libsndfile) writes notes such as "Note: Illegal Audio-MPEG-Header 0x00000000
at offset 4996." straight to file descriptor 2, past Python: before a build's or `predict`'s own
one-line reason, in no particular order. While a clip decodes, descriptor 2 points at a scratch
file; the decoder's lines are read back for the clip's failure reason, and anything else written
there meanwhile (another thread's log line) is passed on to the real stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

_DECODER_LINE = re.compile(r"^(Note|Warning|Error|\[src/libmpg123/)")
_PREFIX = re.compile(r"^(Note|Warning|Error): |^\[src/libmpg123/[^\]]*\] ")
_SHOWN = 80  # characters of the decoder's note kept in a reason
_scratch: dict[int, int] = {}  # pid -> descriptor of this process's scratch file


@dataclass
class Notes:
    lines: list[str] = field(default_factory=list)

    def explain(self, reason: str) -> str:
        """`reason` with the decoder's first note appended (and how many more it printed)."""
        if not self.lines:
            return reason
        first = _PREFIX.sub("", self.lines[0]).rstrip(".")[:_SHOWN]
        more = f", and {len(self.lines) - 1} more note(s)" if len(self.lines) > 1 else ""
        return f"{reason} (decoder: {first}{more})"


def _scratch_fd() -> int:
    pid = os.getpid()  # a forked child must not share its parent's file offset
    if pid not in _scratch:
        handle = tempfile.TemporaryFile(prefix="featurestore-decoder-notes-")
        _scratch[pid] = os.dup(handle.fileno())
        handle.close()
    return _scratch[pid]


@contextlib.contextmanager
def captured() -> Iterator[Notes]:
    """Descriptor 2 redirected for the block; the decoder's lines are in the yielded `Notes` after it."""
    notes = Notes()
    scratch = _scratch_fd()
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    os.ftruncate(scratch, 0)
    os.lseek(scratch, 0, os.SEEK_SET)
    saved = os.dup(2)
    os.dup2(scratch, 2)
    try:
        yield notes
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        size = os.lseek(scratch, 0, os.SEEK_END)
        if size:
            os.lseek(scratch, 0, os.SEEK_SET)
            text = os.read(scratch, size).decode("utf-8", "replace")
            others = []
            for line in text.splitlines():
                (notes.lines if _DECODER_LINE.match(line) else others).append(line)
            if others:
                os.write(2, ("\n".join(others) + "\n").encode())
