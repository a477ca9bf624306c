"""The one exception type a user can cause.

Everything that is the user's fault (a bad path, a malformed CSV, a store built with other
settings) raises `UserError` with a single line that names the file and says what to do.
The CLI prints that line and exits non-zero, without a traceback; anything else is a bug
and keeps its traceback.
"""


_LONGEST = 2000  # characters of a message; a 1 MB field quoted whole would bury the line


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit status 2."""

    exit_code = 2

    def __init__(self, message: str):
        line = " ".join(str(message).split())
        if len(line) > _LONGEST:  # keep where (file, line) and what to do; drop the echoed middle
            line = f"{line[:1500]} [... {len(line) - 1900:,} characters left out ...] {line[-400:]}"
        super().__init__(line)
