"""Strict, fast reading of the delimited text files datasets ship their metadata in.

Parsing is vectorised (pyarrow's CSV reader); the slow, line-by-line stdlib `csv` module only
runs on the error path, to turn "row 8123 is malformed" into the line number a user can open.
Every problem becomes a `UserError` naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from manifests.errors import UserError
from manifests.paths import first_invalid_path

# The line ends the csv module (newline="") and pyarrow both end a row at: CRLF, LF or a lone CR
_NEWLINE = re.compile(rb"\r\n|\r|\n")
_BLOCK = 1 << 20  # pyarrow's default block size


@dataclass(frozen=True)
class TextTable:
    """A parsed file: its header rows and its data rows as all-string columns."""

    path: Path
    header: list[list[str]]
    data: pa.Table
    raw: bytes
    delimiter: str

    def line(self, row: int) -> int:
        """1-based line number where data row `row` starts (quoted fields may span lines)."""
        for index, (line, _end, _fields) in enumerate(_rows(self.path, self.raw, self.delimiter)):
            if index == len(self.header) + row:
                return line
        raise IndexError(row)

    def error(self, row: int, message: str) -> UserError:
        return UserError(f"{self.path} line {self.line(row)}: {message}")

    def columns(
        self, required: Sequence[str], optional: Sequence[str] | None = (), *, names: list[str] | None = None
    ) -> dict[str, int]:
        """Position of each column (named by the header, or `names`).

        Missing or repeated columns are errors, and so are unknown ones unless `optional` is None.
        """
        names = self.header[0] if names is None else names
        repeated = sorted({name for name in names if names.count(name) > 1})
        missing = [name for name in required if name not in names]
        if repeated:
            raise UserError(f"{self.path}: column {repeated[0]!r} appears more than once in the header")
        if missing:
            raise UserError(f"{self.path}: missing column(s) {_listing(missing)}; the header has {_listing(names)}")
        if optional is not None:
            unknown = [name for name in names if name not in required and name not in optional]
            if unknown:
                allowed = _listing([*required, *optional], limit=60)
                raise UserError(f"{self.path}: unexpected column(s) {_listing(unknown)}; allowed: {allowed}")
        return {name: names.index(name) for name in names}

    def strings(self, index: int) -> pd.Series:
        return self.data.column(index).to_pandas()

    def fail_where(self, mask: pd.Series | np.ndarray | list[bool], message: Callable[[int], str]) -> None:
        """Raise for the first row where `mask` holds, with `message(row)`."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            row = int(mask.argmax())
            raise self.error(row, message(row))

    def check_unique(self, values: pd.Series, what: str) -> None:
        self.fail_where(values.duplicated(), lambda r: f"{what} {values.iloc[r]!r} appears twice; ids must be unique")

    def check_paths(self, values: pd.Series) -> None:
        row = first_invalid_path(values)
        if row is not None:
            raise self.error(row, f"path {values.iloc[row]!r} must be relative to the audio root, without '..'")


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; give the file inside it") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") from None


def check_utf8(path: Path, raw: bytes) -> bytes:
    """The file's bytes without a UTF-8 byte-order mark; an error naming the line if not UTF-8.

    A NUL byte is an error too: no text file holds one, and it would end a path at the OS level.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} line {_line_at(raw, exc.start)}: not UTF-8 text (byte 0x{raw[exc.start]:02x});"
            " re-save the file as UTF-8"
        ) from None
    nul = raw.find(b"\0")
    if nul >= 0:
        raise UserError(
            f"{path} line {_line_at(raw, nul)}: NUL byte (0x00), so not a text file (UTF-16?);"
            " re-save the file as UTF-8"
        )
    return raw.removeprefix(codecs.BOM_UTF8)


def read_table(path: str | Path, *, delimiter: str = ",", header_rows: int = 1) -> TextTable:
    """Read a delimited file whose first `header_rows` rows are headers; every field a string.

    Each data row must have exactly as many fields as the first header row.
    """
    path = Path(path)
    raw = check_utf8(path, read_bytes(path))
    header_rows_read = list(itertools.islice(_rows(path, raw, delimiter), header_rows))
    header = [fields for _start, _end, fields in header_rows_read]
    if len(header) < header_rows or not any(header[0]):
        raise UserError(f"{path} is empty or has no header line; expected {header_rows} header row(s)")
    width = len(header[0])
    names = [f"f{i}" for i in range(width)]
    # pyarrow's skip_rows counts lines, not quoted rows: hand it the bytes after the header instead
    body = raw[_line_offset(raw, header_rows_read[-1][1]) :]
    if not body.strip():
        empty = pa.table({name: pa.array([], pa.string()) for name in names})
        return TextTable(path=path, header=header, data=empty, raw=raw, delimiter=delimiter)
    try:
        data = _read_body(body, names, delimiter)
    except pa.ArrowInvalid as exc:
        raise _field_count_error(path, raw, delimiter, width, exc) from None
    return TextTable(path=path, header=header, data=data, raw=raw, delimiter=delimiter)


def _read_body(body: bytes, names: list[str], delimiter: str, block_size: int | None = None) -> pa.Table:
    """All-string columns. pyarrow refuses a row longer than about two blocks: then one block is the body."""
    try:
        return pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=block_size or _BLOCK),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        if block_size or "straddl" not in str(exc):  # "straddling object straddles two block boundaries"
            raise
    return _read_body(body, names, delimiter, block_size=max(_BLOCK, min(len(body) + 1, 2**31 - 1)))


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of a UTF-8 list file."""
    path = Path(path)
    raw = check_utf8(path, read_bytes(path))
    lines = _NEWLINE.split(raw)  # not str.splitlines, which also splits at form feeds and U+2028
    texts = (line.decode("utf-8").strip() for line in lines)
    return [(number, text) for number, text in enumerate(texts, start=1) if text]


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _rows(path: Path, raw: bytes, delimiter: str):
    """(first line, last line, fields) of each non-blank row, as the stdlib csv module sees it."""
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8", newline="")  # decoded as read, not up front
    # pyarrow takes fields of any size; the csv module's limit (128 KiB) is process-wide, so raise it
    csv.field_size_limit(max(csv.field_size_limit(), len(raw)))
    reader = csv.reader(text, delimiter=delimiter)
    end = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(f"{path} line {reader.line_num}: cannot parse: {exc}") from None
        start, end = end + 1, reader.line_num
        if fields:
            yield start, end, fields


def _line_offset(raw: bytes, lines: int) -> int:
    """Byte offset just after the first `lines` lines, counted as the csv module counts them."""
    if lines <= 0:
        return 0
    for count, end in enumerate(_NEWLINE.finditer(raw), start=1):
        if count == lines:
            return end.end()
    return len(raw)


def _line_at(raw: bytes, offset: int) -> int:
    """1-based line number of byte `offset`."""
    return len(_NEWLINE.findall(raw, 0, offset)) + 1


def _field_count_error(path: Path, raw: bytes, delimiter: str, width: int, exc: Exception) -> UserError:
    for line, _end, fields in _rows(path, raw, delimiter):
        if len(fields) != width:
            return UserError(
                f"{path} line {line}: expected {width} fields like the header, found {len(fields)}"
                f" (is the delimiter {delimiter!r}?)"
            )
    first = str(exc).splitlines()[0]
    return UserError(f"{path}: cannot parse: {first}")
