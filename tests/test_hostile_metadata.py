"""Hostile metadata (issue 7): every manifest parser, fed broken files, gives a clear error or a correct manifest.

The inputs start from real rows (MTAT annotations and clip info, the GTZAN split lists, FMA's
genres.csv) or from files in the dataset's exact layout (FMA tracks.csv, a plain CSV), then:

- benign layout changes (CRLF / LF / CR-only / mixed line ends, a byte-order mark, blank lines,
  quoting every field or none, no final line end) must give a manifest EQUAL to the clean one;
- hostile edits (arbitrary bytes, unbalanced or stray quotes, missing / renamed / repeated
  columns, repeated ids, 1 MB fields, NUL bytes, bytes that are not UTF-8, trailing
  delimiters, truncation) must give either a `UserError` of one line naming the file, or a
  manifest that an independent parse (the stdlib `csv` module, not pyarrow) agrees with clip
  by clip: ids, paths, labels, groups, and every data row kept or counted in `meta.dropped`.

`FAULTS` and `EXPECTED` spell out, fault by fault and parser by parser, what the user gets;
`FIXED` lists the inputs that gave a traceback or a wrong manifest before the fixes made with
this file. The file-name metadata of the folder (and GTZAN tree) adapter is tested at the end.
"""

from __future__ import annotations

import csv as stdlib_csv
import io
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import pytest
from helpers_manifests import (
    GTZAN_GENRES,
    fma_track,
    write_fma_tracks,
    write_gtzan,
    write_tone,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import manifests
from featurestore.cli import main
from manifests.adapters import csv, fma, folder, gtzan, mtat
from manifests.adapters.fma import OFFICIAL_SPLIT, SUBSETS, genre_roots
from manifests.adapters.mtat import CLIP_INFO_COLUMNS
from manifests.errors import UserError
from manifests.paths import first_invalid_path
from manifests.schema import SPLITS, Manifest, validate
from manifests.taxonomy import MTAT_7

pytestmark = pytest.mark.reliability

HUGE = "x" * (1 << 20)  # a 1 MB field
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
          HealthCheck.large_base_example, HealthCheck.filter_too_much]  # fmt: skip


def fuzz(examples: int):
    """Reproducible in CI: derandomized, no example database."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET
    )


# ---------------------------------------------------------------------------------------------
# Files as records, and rendering them in any layout


@dataclass(frozen=True)
class Layout:
    """How records become bytes. The defaults are no dataset's dialect; each FileSpec names its own."""

    ends: tuple[str, ...] = ("\n",)  # line ends, used in turn (mixed when several)
    quote_all: bool = False
    bom: bool = False
    blank: frozenset[int] = frozenset()  # a blank line before these records
    final_newline: bool = True


def render(records: list[list[str]], delimiter: str, layout: Layout) -> bytes:
    quoting = stdlib_csv.QUOTE_ALL if layout.quote_all else stdlib_csv.QUOTE_MINIMAL
    lines = []
    for record in records:
        out = io.StringIO()
        stdlib_csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator="\r\n").writerow(record)
        lines.append(out.getvalue()[:-2])
    text = ""
    for i, line in enumerate(lines):
        end = layout.ends[i % len(layout.ends)]
        if i in layout.blank:
            text += end
        text += line + (end if i < len(lines) - 1 or layout.final_newline else "")
    return ("\ufeff" if layout.bom else "").encode() + text.encode("utf-8")


def parse(raw: bytes, delimiter: str) -> list[list[str]]:
    """Records as the stdlib csv module reads them: the oracle's parser, independent of pyarrow."""
    text = raw.decode("utf-8").removeprefix("\ufeff")
    stdlib_csv.field_size_limit(max(stdlib_csv.field_size_limit(), len(raw)))
    return [row for row in stdlib_csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if row]


class Undefined(Exception):
    """The oracle finds the file malformed: the adapter must have raised a UserError."""


def need(condition: object, problem: str) -> None:
    if not condition:
        raise Undefined(problem)


def oracle_records(raw: bytes, delimiter: str) -> list[list[str]]:
    need(b"\0" not in raw, "a NUL byte")
    try:
        return parse(raw, delimiter)
    except UnicodeDecodeError:
        raise Undefined("bytes that are not UTF-8") from None
    except stdlib_csv.Error as exc:
        raise Undefined(f"the csv module cannot read it: {exc}") from None


@dataclass(frozen=True)
class FileSpec:
    name: str  # relative to the case folder
    delimiter: str
    header_rows: int
    dialect: Layout  # the dataset's own
    free: int = 0  # a column holding free text, kept literally in the manifest (else the id)
    needed: int = 0  # a column the adapter needs, besides the id (column 0)
    id_name: str = ""  # what the adapter calls column 0 in messages
    quotable: bool = True  # list files have no quoting

    def name_row(self) -> int:
        """The header row naming columns: FMA's second row (the field); the first elsewhere."""
        return min(1, self.header_rows - 1) if self.header_rows else 0

    def column_name(self, records: list[list[str]], column: int) -> str:
        return ".".join(records[row][column] for row in range(min(2, self.header_rows)))


@dataclass
class Case:
    """A dataset's metadata files in a folder, the call that reads them, and the oracle."""

    folder: Path
    files: dict[str, FileSpec]
    records: dict[str, list[list[str]]]  # clean records per file
    build: Callable[[], Manifest]
    expect: Callable[[Case], tuple[dict[str, tuple], dict[str, int]]]  # clip -> (path, labels, group), dropped
    cli: list[str] = field(default_factory=list)  # the same call as `featurestore manifest ...` arguments
    clean: Manifest | None = None
    context: dict = field(default_factory=dict)  # what the oracle needs besides the files

    def path(self, name: str) -> Path:
        return self.folder / name

    def reset(self) -> None:
        for name, spec in self.files.items():
            self.path(name).write_bytes(render(self.records[name], spec.delimiter, spec.dialect))

    def raw(self, name: str) -> bytes:
        return self.path(name).read_bytes()


def make_case(case: Case) -> Case:
    case.reset()
    case.clean = case.build()
    return case


# ---------------------------------------------------------------------------------------------
# What a correct manifest is


def assert_clear_error(exc: UserError, *names: object) -> str:
    """One line (the CLI prints it as is) naming the file (or the case's folder, which holds them all)."""
    message = str(exc)
    assert "\n" not in message and "\r" not in message and len(message) <= 2000, message[:300]
    assert any(str(name) in message for name in names), message[:300]
    return message


def assert_valid(manifest: Manifest) -> None:
    table, meta = manifest.table, manifest.meta
    assert validate(table, meta) is None
    assert table["clip_id"].is_unique and (table["clip_id"] != "").all()
    assert table["path"].is_unique and first_invalid_path(table["path"]) is None
    assert len(set(meta.labels)) == len(meta.labels) and "" not in meta.labels
    assert all(set(labels) <= set(meta.labels) for labels in table["labels"])
    assert set(table["split"]) <= set(SPLITS)
    for column in ("clip_id", "path", "group"):
        assert not table[column].str.contains("\0", regex=False).any()
    if meta.split_method == "iterative-stratification":
        assert table.groupby("group")["split"].nunique().max() == 1  # no group in two splits


def note(outcome: str) -> None:
    """Tally outcomes (pytest --hypothesis-show-statistics): a property is only as strong as its manifests."""
    if currently_in_test_context():
        event(outcome)


def check(case: Case) -> Manifest | None:
    """The property: a clear error, or a manifest the stdlib-csv oracle agrees with row by row."""
    try:
        manifest = case.build()
    except UserError as exc:
        message = assert_clear_error(exc, case.folder)
        note("error: " + re.sub(r"^\S*(?: line \d+)?: |'.*?'", "", message.removeprefix(str(case.folder)))[:50])
        return None
    note("manifest")
    assert_valid(manifest)
    try:
        rows, dropped = case.expect(case)
    except Undefined as problem:
        raise AssertionError(f"a manifest from a file with {problem}") from None
    assert clips_of(manifest) == rows
    assert manifest.meta.dropped == dropped  # every data row is a clip or counted as dropped
    return manifest


def clips_of(manifest: Manifest) -> dict[str, tuple]:
    table = manifest.table[["clip_id", "path", "labels", "group"]]
    return {clip: (path, list(labels), group) for clip, path, labels, group in table.itertuples(index=False)}


def assert_same(manifest: Manifest, clean: Manifest) -> None:
    pd.testing.assert_frame_equal(manifest.table, clean.table)
    assert manifest.meta == clean.meta


def dropped_unlabelled(count: int) -> dict[str, int]:
    return {"unlabelled": count} if count else {}


# ---------------------------------------------------------------------------------------------
# MTAT: a sample of the real annotations_final.csv and clip_info_final.csv

MTAT_DIALECT = Layout(ends=("\r\n",), quote_all=True)  # TAB, every field quoted, CRLF
TAG_LABEL = {tag: label for label, tags in MTAT_7.parents for tag in tags}


def _mtat_expect(case: Case):
    ann = oracle_records(case.raw("annotations_final.csv"), "\t")
    info = oracle_records(case.raw("clip_info_final.csv"), "\t")
    header, rows = ann[0], ann[1:]
    need(len(set(header)) == len(header) and {"clip_id", "mp3_path"} <= set(header), "bad annotation columns")
    need(all(len(row) == len(header) for row in rows), "rows of other widths")
    need(set(TAG_LABEL) <= set(header), "an mtat-7 tag column missing")
    at = {name: i for i, name in enumerate(header)}
    need(all(row[i] in ("0", "1") for row in rows for name, i in at.items() if name not in ("clip_id", "mp3_path")),
         "a tag value other than 0/1")  # fmt: skip
    ids, paths = [row[at["clip_id"]] for row in rows], [row[at["mp3_path"]] for row in rows]
    need(len(set(ids)) == len(ids) and "" not in ids, "repeated or empty clip ids")
    need(len(set(paths)) == len(paths) and first_invalid_path(pd.Series(paths, dtype="str")) is None, "bad paths")
    need(info and set(info[0]) == set(CLIP_INFO_COLUMNS) and len(info[0]) == len(CLIP_INFO_COLUMNS),
         "bad clip_info columns")  # fmt: skip
    need(all(len(row) == len(info[0]) for row in info[1:]), "clip_info rows of other widths")
    info_ids = [row[info[0].index("clip_id")] for row in info[1:]]
    need(len(set(info_ids)) == len(info_ids), "repeated clip_info ids")
    artist = {row[info[0].index("clip_id")]: row[info[0].index("artist")] for row in info[1:]}
    need(set(ids) <= set(artist), "clips without clip_info")
    expected, unlabelled = {}, 0
    for clip, path, row in zip(ids, paths, rows):
        reached = {TAG_LABEL[tag] for tag in TAG_LABEL if row[at[tag]] == "1"}
        labels = [label for label in MTAT_7.labels if label in reached]
        if labels:
            expected[clip] = (path, labels, artist[clip] or clip)
        else:
            unlabelled += 1
    return expected, dropped_unlabelled(unlabelled)


@pytest.fixture(scope="module")
def mtat_case(reference, tmp_path_factory) -> Case:
    """Every 100th clip of the real annotations (259 clips, 188 tags) and their clip_info rows."""
    lines = (reference / "mtat" / "annotations_final.csv").read_bytes().split(b"\r\n")
    annotations = parse(b"\r\n".join([lines[0], *lines[1:-1:100]]), "\t")
    ids = {row[0] for row in annotations[1:]}
    info_lines = (reference / "mtat" / "clip_info_final.csv").read_bytes().split(b"\r\n")
    wanted = [line for line in info_lines[1:] if line.split(b"\t")[0].strip(b'"').decode() in ids]
    info = parse(b"\r\n".join([info_lines[0], *wanted]), "\t")
    folder = tmp_path_factory.mktemp("mtat")
    files = {
        "annotations_final.csv": FileSpec(
            "annotations_final.csv", "\t", 1, MTAT_DIALECT, free=189, needed=189, id_name="clip_id"
        ),  # mp3_path
        "clip_info_final.csv": FileSpec(
            "clip_info_final.csv", "\t", 1, MTAT_DIALECT, free=2, needed=3, id_name="clip_id"
        ),  # title, artist
    }
    case = Case(
        folder, files, {"annotations_final.csv": annotations, "clip_info_final.csv": info},
        build=lambda: mtat(folder / "annotations_final.csv", folder / "clip_info_final.csv"),
        expect=_mtat_expect,
        cli=["mtat", "--annotations", str(folder / "annotations_final.csv"),
             "--clip-info", str(folder / "clip_info_final.csv")],
    )  # fmt: skip
    make_case(case)
    assert len(annotations) == 260 and len(info) == 260
    assert case.clean.meta.dropped["unlabelled"] > 0 and len(case.clean.table) > 100
    assert case.expect(case) == (clips_of(case.clean), case.clean.meta.dropped)  # the oracle agrees on clean files
    return case


# ---------------------------------------------------------------------------------------------
# A plain CSV: path, labels (';'-separated), group; paths from the real GTZAN split lists


def _csv_expect(case: Case):
    records = oracle_records(case.raw("clips.csv"), ",")
    header, rows = records[0], records[1:]
    need(len(set(header)) == len(header) and "path" in header, "bad columns")
    label = [name for name in ("label", "labels") if name in header]
    need(len(label) == 1 and set(header) <= {"path", label[0], "group", "split"}, "bad columns")
    need(all(len(row) == len(header) for row in rows), "rows of other widths")
    at = {name: i for i, name in enumerate(header)}
    paths = [row[at["path"]] for row in rows]
    need(len(set(paths)) == len(paths) and first_invalid_path(pd.Series(paths, dtype="str")) is None, "bad paths")
    need("split" not in at, "a split column (this case splits by ratios)")
    expected, unlabelled = {}, 0
    for path, row in zip(paths, rows):
        labels = sorted({part.strip() for part in row[at[label[0]]].split(";")} - {""})
        group = row[at["group"]] if "group" in at else ""
        if labels:
            expected[path] = (path, labels, group or path)
        else:
            unlabelled += 1
    return expected, dropped_unlabelled(unlabelled)


@pytest.fixture(scope="module")
def csv_case(reference, tmp_path_factory) -> Case:
    lists = reference / "gtzan" / "coreyker__dnn-mgr" / "gtzan"
    paths = (lists / "test_filtered.txt").read_text().split()[::4]  # 73 real GTZAN paths
    records = [["path", "labels", "group"]]
    for i, path in enumerate(paths):
        genre = path.split("/")[0]
        labels = genre if i % 3 else f"{genre}; live"  # some two labels
        group = f"artist {i // 3}" if i % 5 else f'"Sturm, B." {i // 3}'  # a comma and quotes: quoted
        records.append([path, labels if i % 17 else "", group])  # a few unlabelled
    folder = tmp_path_factory.mktemp("csv")
    files = {"clips.csv": FileSpec("clips.csv", ",", 1, Layout(), free=2, needed=1, id_name="path")}  # group, labels
    return make_case(Case(folder, files, {"clips.csv": records}, build=lambda: csv(folder / "clips.csv"),
                          expect=_csv_expect, cli=["csv", "--file", str(folder / "clips.csv")]))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# FMA: the real genres.csv and a tracks.csv in FMA's exact layout (pandas' two-level dump)


def _fma_expect(case: Case):
    records = oracle_records(case.raw("tracks.csv"), ",")
    need(len(records) >= 3, "fewer than 3 header rows")
    groups, fields, index, rows = records[0], records[1], records[2], records[3:]
    need(index[0] == "track_id" and not any(index[1:]) and not groups[0] and not fields[0], "bad header rows")
    names = ["track_id"] + [f"{g}.{f}" for g, f in zip(groups[1:], fields[1:])]
    need(len(set(names)) == len(names), "repeated columns")
    need(all(len(row) == len(groups) for row in rows), "rows of other widths")
    at = {name: i for i, name in enumerate(names)}
    need({"track_id", "track.genre_top", "set.split", "set.subset", "artist.id"} <= set(at), "missing columns")
    roots = case.context["roots"]
    expected, unlabelled, seen = {}, 0, set()
    for row in rows:
        need(re.fullmatch(r"[0-9]{1,18}", row[at["track_id"]]), "a track_id that is not a number")
        number = int(row[at["track_id"]])
        need(number not in seen, "a repeated track_id")
        seen.add(number)
        need(row[at["set.subset"]] in SUBSETS and row[at["set.split"]] in OFFICIAL_SPLIT, "a bad subset or split")
        top = row[at["track.genre_top"]]
        need(top in roots or top == "", "an unknown genre_top")
        if row[at["set.subset"]] != "small":
            continue  # not in the subset asked for: not a clip, not dropped
        if top:
            expected[str(number)] = (f"{number // 1000:03d}/{number:06d}.mp3", [top], row[at["artist.id"]] or str(number))
        else:
            unlabelled += 1
    return expected, dropped_unlabelled(unlabelled)


@pytest.fixture(scope="module")
def fma_case(reference, tmp_path_factory) -> Case:
    """48 tracks over real genres (leaf, its root; some reaching two roots), one bio over two lines."""
    root_of, titles = genre_roots(reference / "fma" / "genres.csv")
    genres = sorted(root_of)
    rows = []
    for k in range(48):
        genre = genres[(k * 7) % len(genres)]
        other = genres[(k * 11 + 3) % len(genres)]
        two_roots = k % 6 == 5 and root_of[other] != root_of[genre]
        reached = sorted({genre, root_of[genre], *([other, root_of[other]] if two_roots else [])})
        rows.append(fma_track(
            k * 37 + 2, track__genre_top="" if two_roots else titles[root_of[genre]],
            track__genres_all=f"[{', '.join(map(str, reached))}]",
            set__split=("training", "validation", "test")[k % 3],
            artist__id=str(k // 4), artist__bio="Lives in\nNew York, NY" if k == 1 else "",
            track__title=f'Song {k}, "live"' if k % 4 == 0 else f"Song {k}",
        ))  # fmt: skip
    folder = tmp_path_factory.mktemp("fma")
    write_fma_tracks(folder, rows)
    shutil.copy(reference / "fma" / "genres.csv", folder / "genres.csv")
    records = {name: parse((folder / name).read_bytes(), ",") for name in ("tracks.csv", "genres.csv")}
    names = [f"{group}.{name}" for group, name in zip(*records["tracks.csv"][:2])]
    files = {
        "tracks.csv": FileSpec("tracks.csv", ",", 3, Layout(), free=names.index("track.title"),
                               needed=names.index("set.split"), id_name="track_id"),
        "genres.csv": FileSpec("genres.csv", ",", 1, Layout(), free=3, needed=2, id_name="genre_id"),  # title, parent
    }
    roots = {titles[root] for root in set(root_of.values())}
    case = Case(folder, files, records, build=lambda: fma(folder), expect=_fma_expect,
                cli=["fma", "--metadata", str(folder)], context={"roots": roots})  # fmt: skip
    assert render(records["tracks.csv"], ",", Layout()) == (folder / "tracks.csv").read_bytes()  # pandas' dialect
    assert render(records["genres.csv"], ",", Layout()) == (reference / "fma" / "genres.csv").read_bytes()
    make_case(case)
    assert case.clean.meta.dropped == {"unlabelled": 8} and len(case.clean.table) == 40
    return case


# ---------------------------------------------------------------------------------------------
# GTZAN: a tree of 10 clips per genre and split lists cut from the real stratified lists

LISTS = ("train.txt", "valid.txt", "test.txt")


def _gtzan_expect(case: Case):
    files = {f"{genre}/{genre}.{i:05d}" for genre in GTZAN_GENRES for i in range(10)}
    split_of = {}
    for name in LISTS:
        raw = case.raw(f"lists/{name}")
        need(b"\0" not in raw, "a NUL byte")
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise Undefined("bytes that are not UTF-8") from None
        for entry in filter(None, (line.strip() for line in re.split(r"\r\n|\r|\n", text))):
            key = entry.rsplit(".", 1)[0] if "." in entry.rsplit("/", 1)[-1] else entry
            need(key in files and key not in split_of, f"entry {entry!r} unknown or repeated")
            split_of[key] = name.removesuffix(".txt")
    expected = {key.split("/")[1]: (f"genres/{key}.wav", [key.split("/")[0]], key.split("/")[1]) for key in split_of}
    return expected, ({"not in split lists": len(files) - len(split_of)} if len(split_of) < len(files) else {})


@pytest.fixture(scope="module")
def gtzan_case(reference, tmp_path_factory) -> Case:
    folder = tmp_path_factory.mktemp("gtzan")
    write_gtzan(folder / "tree", per_genre=10)
    (folder / "lists").mkdir()
    real = reference / "gtzan" / "coreyker__dnn-mgr" / "gtzan"
    records, files = {}, {}
    for name in LISTS:
        entries = (real / name.replace(".txt", "_stratified.txt")).read_text().split()
        records[f"lists/{name}"] = [[entry] for entry in entries if int(entry[-9:-4]) < 10]
        files[f"lists/{name}"] = FileSpec(f"lists/{name}", ",", 0, Layout(), quotable=False)
    case = make_case(Case(folder, files, records, build=lambda: gtzan(folder / "tree", split_lists=folder / "lists"),
                          expect=_gtzan_expect,
                          cli=["gtzan", "--root", str(folder / "tree"), "--split-lists", str(folder / "lists")]))  # fmt: skip
    assert len(case.clean.table) == 100 and not case.clean.meta.dropped
    return case


CASE_FIXTURES = {"mtat": "mtat_case", "csv": "csv_case", "fma": "fma_case", "gtzan": "gtzan_case"}
FILES = [
    ("mtat", "annotations_final.csv"),
    ("mtat", "clip_info_final.csv"),
    ("csv", "clips.csv"),
    ("fma", "tracks.csv"),
    ("fma", "genres.csv"),
    ("gtzan", "lists/train.txt"),
]
FILE_IDS = [f"{source}:{name}" for source, name in FILES]


@pytest.fixture()
def case_file(request) -> tuple[Case, FileSpec]:
    source, name = request.param
    case = request.getfixturevalue(CASE_FIXTURES[source])
    case.reset()
    return case, case.files[name]


def by_file(test):
    return pytest.mark.parametrize("case_file", FILES, ids=FILE_IDS, indirect=True)(test)


# ---------------------------------------------------------------------------------------------
# 1. Benign layouts: the same manifest as the clean file

layouts = st.builds(
    Layout,
    ends=st.lists(st.sampled_from(["\r\n", "\n", "\r"]), min_size=1, max_size=3).map(tuple),
    quote_all=st.booleans(),
    bom=st.booleans(),
    blank=st.frozensets(st.integers(0, 260), max_size=4),
    final_newline=st.booleans(),
)


@by_file
@fuzz(12)
@given(layout=layouts, padding=st.sampled_from(["", " ", "\t ", " \u3000"]))
def test_benign_layouts_give_the_clean_manifest(case_file, layout, padding):
    case, spec = case_file
    records = case.records[spec.name]
    if not spec.quotable:  # a list file: no quoting, but spaces around entries are no part of them
        layout = replace(layout, quote_all=False)
        records = [[padding + record[0] + padding] for record in records]
    case.path(spec.name).write_bytes(render(records, spec.delimiter, layout))
    assert_same(case.build(), case.clean)


# ---------------------------------------------------------------------------------------------
# 2. Hostile edits: a clear error, or the manifest the stdlib parse of the same bytes gives

SNIPPETS = [b'"', b'""', b'"x"y', b"\t", b",", b";", b"\r", b"\n", b"\r\n", b"\0", b"\xff", b"\xc3", b"\xef\xbb\xbf",
            b" ", b"1", b"0", b"/", b"../", "\u2028".encode(), b"\x0c", b"#"]  # fmt: skip
RECORD_EDITS = ("duplicate row", "duplicate id", "drop column", "drop header field", "rename column",
                "duplicate column", "extra column", "trailing delimiter", "trailing delimiter on one row",
                "huge field", "empty field", "drop row field", "set field")  # fmt: skip
BYTE_EDITS = ("insert", "insert at field start", "insert at line start", "replace", "delete", "truncate")

VALUES = ["", " ", "0", "1", "2", "01", "0002", "-1", "1e3", "2.0", "\u0663", "99999999999999999999", "[]", "[1, 2",
          "[12]", "[\u0663]", "[-1]", "Rock", "rock", "training", "train", "small", "..", "/abs", "a/../../b", "~/x",
          "C:\\x", '"', "\u00a0", "a\rb", "a\nb", "\t"]  # fmt: skip
record_edits = st.tuples(
    st.sampled_from(RECORD_EDITS), st.integers(0, 1 << 16), st.integers(0, 1 << 16),
    st.sampled_from(VALUES) | st.text(max_size=6),
)  # fmt: skip
byte_edits = st.tuples(
    st.sampled_from(BYTE_EDITS), st.integers(0, 1 << 24), st.integers(0, 40),
    st.integers(0, 3).flatmap(lambda k: st.binary(min_size=1, max_size=12) if k == 0 else st.sampled_from(SNIPPETS)),
)  # fmt: skip


def edit_records(records: list[list[str]], spec: FileSpec, edit: tuple) -> list[list[str]]:
    kind, a, b, value = (*edit, "")[:4]
    records = [list(record) for record in records]
    data = range(spec.header_rows, len(records))
    i, j = (data[a % len(data)] if data else 0), b % len(records[0])
    if kind == "set field" and b % 2:  # half the time a column that matters: the id, a needed one, the free text
        j = (0, spec.needed, spec.free)[b // 2 % 3]
    j_in_row = j % len(records[i])  # an earlier edit may have left row i shorter
    if kind == "duplicate row":
        records.append(list(records[i]))
    elif kind == "duplicate id":  # the same row (so the same id) with one other field
        records.append([v + "2" if k == j_in_row else v for k, v in enumerate(records[i])])
    elif kind == "drop column":
        records = [record[:j] + record[j + 1 :] for record in records]
    elif kind == "drop header field":
        records[0] = records[0][:j] + records[0][j + 1 :]
    elif kind == "rename column":
        names, k = records[spec.name_row()], j % len(records[spec.name_row()])
        names[k] = names[k].upper() if names[k] != names[k].upper() else names[k] + "_"
    elif kind == "duplicate column":
        records = [[*record, record[j % len(record)]] for record in records]
    elif kind == "extra column":  # named in the name rows, empty in FMA's index row, then 1, 2, 3...
        h = spec.header_rows
        records = [[*record, ("extra" if n < min(2, h) else "") if n < h else str(n - h + 1)]
                   for n, record in enumerate(records)]  # fmt: skip
    elif kind == "trailing delimiter":
        records = [[*record, ""] for record in records]
    elif kind == "trailing delimiter on one row":
        records[i] = [*records[i], ""]
    elif kind == "huge field":
        records[i][j_in_row] += HUGE
    elif kind == "empty field":
        records[i][j_in_row] = ""
    elif kind == "drop row field":
        del records[i][j_in_row]
    elif kind == "set field":
        records[i][j_in_row] = value
    return [record for record in records if record] or [[""]]


def edit_bytes(raw: bytes, spec: FileSpec, edit: tuple[str, int, int, bytes]) -> bytes:
    kind, at, size, snippet = edit
    if kind == "insert at field start":
        starts = [0] + [m.end() for m in re.finditer(re.escape(spec.delimiter.encode()) + rb"|\n|\r", raw)]
        at = starts[at % len(starts)]
    elif kind == "insert at line start":
        starts = [0] + [m.end() for m in re.finditer(rb"\r\n|\r|\n", raw)]
        at = starts[at % len(starts)]
    else:
        at = at % (len(raw) + 1)
    if kind == "replace":
        return raw[:at] + snippet + raw[at + len(snippet) :]
    if kind == "delete":
        return raw[:at] + raw[at + size :]
    if kind == "truncate":
        return raw[:at]
    return raw[:at] + snippet + raw[at:]


@by_file
@fuzz(60)
@given(
    edits=st.lists(record_edits, max_size=2),
    layout=st.none() | layouts,
    raw_edits=st.lists(byte_edits, max_size=2),
)
def test_hostile_edits_give_a_clear_error_or_the_right_manifest(case_file, edits, layout, raw_edits):
    case, spec = case_file
    records = case.records[spec.name]
    for edit in edits:
        records = edit_records(records, spec, edit)
    layout = spec.dialect if layout is None or not spec.quotable else layout
    raw = render(records, spec.delimiter, layout)
    for edit in raw_edits:
        raw = edit_bytes(raw, spec, edit)
    case.path(spec.name).write_bytes(raw)
    check(case)


# ---------------------------------------------------------------------------------------------
# 3. Arbitrary bytes: the whole file, or everything after the header

@by_file
@fuzz(20)
@given(body=st.binary(max_size=300) | st.lists(st.sampled_from(SNIPPETS + [b"a", b"0/a.mp3", b"rock"]),
                                               max_size=60).map(b"".join),
       keep_header=st.booleans())  # fmt: skip
def test_arbitrary_bytes_give_a_clear_error_or_the_right_manifest(case_file, body, keep_header):
    case, spec = case_file
    head = render(case.records[spec.name][: spec.header_rows], spec.delimiter, spec.dialect) if keep_header else b""
    case.path(spec.name).write_bytes(head + body)
    check(case)


# ---------------------------------------------------------------------------------------------
# 4. Each named fault, once per parser: what the user gets


def _with_placeholder(records: list[list[str]], spec: FileSpec, text: bytes, *, row: int = 2) -> bytes:
    """The file with the free field of data row `row` replaced by `text`, bytes as given (quotes and all)."""
    records = [list(record) for record in records]
    records[spec.header_rows + row][spec.free] = "PLACEHOLDER"
    raw = render(records, spec.delimiter, spec.dialect)
    return raw.replace(b'"PLACEHOLDER"' if spec.dialect.quote_all else b"PLACEHOLDER", text)


def _layout(**changes):
    return lambda records, spec: render(records, spec.delimiter, replace(spec.dialect, **changes))


def _edited(kind: str, row: int = 1, column: int | None = None):
    """`kind` of RECORD_EDITS on data row `row` and `column` (default: the needed column)."""

    def make(records, spec):
        edit = (kind, row, spec.needed if column is None else column)
        return render(edit_records(records, spec, edit), spec.delimiter, spec.dialect)

    return make


def _header_only(records, spec):
    return render(records[: spec.header_rows], spec.delimiter, spec.dialect)


def _truncated(records, spec):
    raw = render(records, spec.delimiter, spec.dialect)
    return raw[: raw.rindex(spec.delimiter.encode() if spec.header_rows else b".")]  # cut inside the last row


FAULTS: dict[str, Callable[[list[list[str]], FileSpec], bytes]] = {
    # arbitrary bytes
    "arbitrary bytes": lambda records, spec: bytes(range(256)) * 4,
    "UTF-16 text": lambda records, spec: render(records, spec.delimiter, spec.dialect).decode().encode("utf-16"),
    # wrong quoting
    "unbalanced quote": lambda records, spec: _with_placeholder(records, spec, b'"never closed', row=1),
    "quote inside a field": lambda records, spec: _with_placeholder(records, spec, b'ab"c'),
    "text after a closing quote": lambda records, spec: _with_placeholder(records, spec, b'"ab"c'),
    "quoting every field": _layout(quote_all=True),
    "quoting no field": _layout(quote_all=False),
    # wrong line ends
    "CRLF line ends": _layout(ends=("\r\n",)),
    "LF line ends": _layout(ends=("\n",)),
    "CR-only line ends": _layout(ends=("\r",)),
    "mixed line ends": _layout(ends=("\r", "\n", "\r\n")),  # the header ends in a lone CR
    "no final line end": _layout(final_newline=False),
    "blank lines": _layout(blank=frozenset({0, 1, 4, 5, 9})),
    "byte-order mark": _layout(bom=True),
    "whitespace-only line": lambda records, spec: render(records, spec.delimiter, spec.dialect) + b"  \t \n",
    "comment line": lambda records, spec: render(records, spec.delimiter, spec.dialect) + b"# the end\n",
    # missing columns
    "missing column": _edited("drop column"),
    "header field missing": _edited("drop header field"),
    "renamed column": _edited("rename column"),
    "duplicated column": _edited("duplicate column"),
    "unknown extra column": _edited("extra column"),
    "trailing delimiter on every line": _edited("trailing delimiter"),
    "trailing delimiter on one row": _edited("trailing delimiter on one row"),
    "row with a field missing": _edited("drop row field", column=1),
    "truncated in the last row": _truncated,
    # duplicate ids
    "duplicate row": _edited("duplicate row"),
    "duplicate id, other fields": _edited("duplicate id", column=1),
    # huge fields
    "1 MB field": lambda records, spec: _with_placeholder(records, spec, HUGE.encode()),
    "1 MB id": _edited("huge field", column=0),
    # bytes that are not text
    "NUL byte": lambda records, spec: _with_placeholder(records, spec, b"a\0b"),
    "Latin-1 byte": lambda records, spec: _with_placeholder(records, spec, "caf\u00e9".encode("latin-1")),
    # empty files
    "empty file": lambda records, spec: b"",
    "header only": _header_only,
}
NOT_TABLES = {"quoting every field", "quoting no field", "missing column", "header field missing", "renamed column",
              "duplicated column", "unknown extra column", "trailing delimiter on every line",
              "trailing delimiter on one row", "row with a field missing", "duplicate id, other fields", "1 MB id",
              "header only"}  # fmt: skip  (list files have one entry a line: no columns, quotes or header)


SAME, MANIFEST = "manifest equal to the clean one", "manifest (checked row by row against the csv module)"
_FIELDS = r"{file} line {line}: expected \d+ fields like the header, found \d+ \(is the delimiter"
_LABEL_COLUMN = r"{file}: needs exactly one of the columns 'label' or 'labels' \(';'-separated\)"
_NOT_AUDIO = r"{file} line \d+: '.*' is not an audio file under {folder}/tree/genres"
EXPECTED: dict[str, dict[str, str]] = {  # fault -> {file (or "*"): SAME, MANIFEST or a regex of the error}
    "arbitrary bytes": {"*": r"{file} line 3: not UTF-8 text \(byte 0x80\); re-save the file as UTF-8"},
    "UTF-16 text": {"*": r"{file} line 1: not UTF-8 text \(byte 0xff\); re-save the file as UTF-8"},
    "unbalanced quote": {"*": _FIELDS, "lists/train.txt": r"{file} line 2: '\"never closed' is not an audio file"},
    "quote inside a field": {"*": MANIFEST, "lists/train.txt": _NOT_AUDIO},
    "text after a closing quote": {"*": MANIFEST, "lists/train.txt": _NOT_AUDIO},
    **{fault: {"*": SAME} for fault in ("quoting every field", "quoting no field", "CRLF line ends", "LF line ends",
                                         "CR-only line ends", "mixed line ends", "no final line end", "blank lines",
                                         "byte-order mark")},
    "whitespace-only line": {"*": _FIELDS.replace("{line}", r"\d+"), "lists/train.txt": SAME},
    "comment line": {"*": _FIELDS.replace("{line}", r"\d+"), "lists/train.txt": _NOT_AUDIO},
    "missing column": {"*": r"{file}: missing column\(s\) '{needed}'; the header has", "clips.csv": _LABEL_COLUMN},
    "header field missing": {"*": _FIELDS.replace("{line}", r"\d+")},
    "renamed column": {"*": r"{file}: missing column\(s\) '{needed}'; the header has", "clips.csv": _LABEL_COLUMN},
    "duplicated column": {"*": r"{file}: column '{needed}' appears more than once in the header"},
    "unknown extra column": {
        "*": r"{file}: unexpected column\(s\) 'extra(?:\.extra)?'; allowed: ",
        "annotations_final.csv": r"{file} line 3: tag column 'extra' holds '2'; expected \"0\" or \"1\"",  # a tag
    },
    "trailing delimiter on every line": {
        "*": r"{file}: unexpected column\(s\) '\.?'; allowed: ",
        "annotations_final.csv": r"{file} line 2: tag column '' holds ''; expected \"0\" or \"1\"",
    },
    "trailing delimiter on one row": {"*": _FIELDS},
    "row with a field missing": {"*": _FIELDS},
    "truncated in the last row": {"*": _FIELDS.replace("{line}", r"\d+"), "lists/train.txt": _NOT_AUDIO},
    "duplicate row": {
        "*": r"{file} line \d+: {id} '[^']+' appears twice; ids must be unique",
        "lists/train.txt": r"{file} line \d+: '.*' is already in the train list",
    },
    "duplicate id, other fields": {"*": r"{file} line \d+: {id} '[^']+' appears twice; ids must be unique"},
    "1 MB field": {"*": MANIFEST, "lists/train.txt": _NOT_AUDIO},
    "1 MB id": {
        "annotations_final.csv": r"{folder}/clip_info_final.csv: no row for clip_id '190xxxx.*' \(1 annotated clips",
        "clip_info_final.csv": r"{file}: no row for clip_id '190' \(1 annotated clips missing\)",
        "clips.csv": MANIFEST,  # a long path is a path
        "*": r"{file} line {line}: {id} '\d+xxxx.*' is not a whole number",
    },
    "NUL byte": {"*": r"{file} line \d+: NUL byte \(0x00\), so not a text file \(UTF-16\?\); re-save the file as UTF-8"},
    "Latin-1 byte": {"*": r"{file} line \d+: not UTF-8 text \(byte 0xe9\); re-save the file as UTF-8"},
    "empty file": {"*": r"{file} is empty or has no header line; expected \d header row\(s\)",
                   "lists/train.txt": MANIFEST},  # its clips are dropped and counted: not in split lists
    "header only": {
        "*": r"{file}: no clips found",
        "clip_info_final.csv": r"{file}: no row for clip_id '2' \(259 annotated clips missing\)",
        "genres.csv": r"{folder}/tracks.csv line 4: track.genres_all \[[\d, ]+\] names a genre that is not in genres.csv",
    },
}
assert set(EXPECTED) == set(FAULTS)


def expectation(fault: str, case: Case, spec: FileSpec) -> str:
    outcome = EXPECTED[fault].get(spec.name, EXPECTED[fault].get("*"))
    if outcome in (SAME, MANIFEST):
        return outcome
    records = case.records[spec.name]
    return outcome.format(
        file=re.escape(str(case.path(spec.name))), folder=re.escape(str(case.folder)), line=spec.header_rows + 2,
        needed=re.escape(spec.column_name(records, spec.needed)) if spec.header_rows else "", id=spec.id_name,
    )  # fmt: skip


FAULT_CASES = [
    pytest.param(file, fault, id=f"{fault}-{source_name}")
    for file, source_name in zip(FILES, FILE_IDS)
    for fault in FAULTS
    if file[0] != "gtzan" or fault not in NOT_TABLES
]


@pytest.mark.parametrize(("case_file", "fault"), FAULT_CASES, indirect=["case_file"])
def test_each_named_fault(case_file, fault):
    case, spec = case_file
    case.path(spec.name).write_bytes(FAULTS[fault](case.records[spec.name], spec))
    assert_outcome(case, expectation(fault, case, spec))


def assert_outcome(case, expected: str) -> None:
    """SAME: the clean file's manifest; MANIFEST: a correct one; otherwise a clear error matching `expected`."""
    if expected == SAME:
        assert_same(case.build(), case.clean)
    elif expected == MANIFEST:
        assert check(case) is not None
    else:
        with pytest.raises(UserError) as raised:
            case.build()
        message = assert_clear_error(raised.value, case.folder)
        assert re.search(expected, message), message[:500]


def _set(row: int, column: int | str, value: str):
    """Records with data row `row`'s `column` (index, or "free" / "needed") set to `value`."""

    def make(records, spec):
        records = [list(record) for record in records]
        records[spec.header_rows + row][getattr(spec, column) if isinstance(column, str) else column] = value
        return render(records, spec.delimiter, spec.dialect)

    return make


def _copy_field(row: int, source_row: int, column: str):
    def make(records, spec):
        value = records[spec.header_rows + source_row][getattr(spec, column)]
        return _set(row, column, value)(records, spec)

    return make


def _append_row(row: list[str]):
    return lambda records, spec: render([*records, row], spec.delimiter, spec.dialect)


def _huge_then_ragged(records, spec):
    records = [list(record) for record in records]
    records[spec.header_rows + 2][spec.free] += HUGE
    records[-1] = records[-1][:-1]
    return render(records, spec.delimiter, spec.dialect)


# Inputs that gave a traceback or a wrong manifest before this file's fixes (manifests/textio.py,
# errors.py, paths.py, adapters/fma.py, adapters/mtat.py), and what they give now.
FIXED = [
    # textio._line_offset counted only LF: after a header ending in a lone CR, rows were lost
    ("mtat", "annotations_final.csv", "CR-only line ends", _layout(ends=("\r",)), SAME),
    ("fma", "tracks.csv", "header rows end in CR, rows in LF", _layout(ends=("\r", "\r", "\r", "\n")), SAME),
    ("csv", "clips.csv", "header ends in CR, rows in LF", _layout(ends=("\r", "\n", "\n")), SAME),
    # textio: pyarrow refuses rows over twice its block of 1 MB ("straddling object"): valid rows, read now
    ("csv", "clips.csv", "4 MB group", _set(2, "free", HUGE * 4), MANIFEST),
    ("fma", "tracks.csv", "4 MB title", _set(2, "free", HUGE * 4), MANIFEST),
    # textio: a later error in a file with a 1 MB field was reported as the csv module's field limit
    ("mtat", "clip_info_final.csv", "1 MB field, then a short row", _huge_then_ragged,
     r"{file} line 260: expected 10 fields like the header, found 9"),
    # textio.check_utf8: a NUL byte went into clip ids and paths (UTF-16 without a BOM reads as such)
    ("csv", "clips.csv", "UTF-16 without a BOM",
     lambda records, spec: render(records, ",", spec.dialect).decode().encode("utf-16-le"),
     r"{file} line 1: NUL byte \(0x00\), so not a text file \(UTF-16\?\)"),
    # mtat._tag_matrix: no data rows made pc.all() null, then an IndexError
    ("mtat", "annotations_final.csv", "header only", _header_only, r"{file}: no clips found"),
    # mtat: an empty clip_id, and one audio file under two clip ids (it could sit in two splits)
    ("mtat", "annotations_final.csv", "empty clip_id", _set(1, 0, ""), r"{file} line 3: clip_id is empty"),
    ("mtat", "annotations_final.csv", "one mp3_path under two clip ids", _copy_field(1, 0, "needed"),
     r"{file} line 3: mp3_path '[^']+' appears twice"),
    # fma._read_tracks: '0002' beside '2' gave two clips with one path; a huge id an OverflowError
    ("fma", "tracks.csv", "track_id 0002 beside 2", _set(1, 0, "0002"), r"{file} line 5: track_id '0002' appears twice"),
    ("fma", "tracks.csv", "track_id with leading zeros", _set(1, 0, "00039"), SAME),  # track 39, as pandas reads it
    ("fma", "tracks.csv", "track_id over int64", _set(1, 0, "99999999999999999999"),
     r"{file} line 5: track_id '99999999999999999999' is not a whole number"),
    ("fma", "tracks.csv", "track_id in Arabic-Indic digits", _set(1, 0, "\u0663\u0669"),
     r"{file} line 5: track_id '\u0663\u0669' is not a whole number"),
    # fma.genre_roots: a repeated root title crashed labels="all" and doubled labels; '' became a label
    ("fma", "genres.csv", "two top-level genres with one title", _set(2, "free", "International"),
     r"{file} line 4: title 'International' names two top-level genres"),
    ("fma", "genres.csv", "a top-level genre without a title", _set(2, "free", ""),
     r"{file} line 4: top-level genre 3 has an empty title"),
    ("fma", "genres.csv", "genre_id 02 beside 2", _append_row(["02", "0", "0", "Other", "2"]),
     r"{file} line 165: genre_id '02' appears twice"),
    ("fma", "genres.csv", "genre_id over int64", _set(0, 0, "99999999999999999999"),
     r"{file} line 2: genre_id '99999999999999999999' is not a whole number"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case_file", "make", "expected"),
    [pytest.param((source, name), make, expected, id=what) for source, name, what, make, expected in FIXED],
    indirect=["case_file"],
)
def test_inputs_that_used_to_break_a_parser(case_file, make, expected):
    case, spec = case_file
    case.path(spec.name).write_bytes(make(case.records[spec.name], spec))
    assert_outcome(case, expected.format(file=re.escape(str(case.path(spec.name)))))


def test_labels_all_with_a_repeated_root_title(fma_case):
    """The crash (pandas InvalidIndexError) came with --labels all."""
    fma_case.reset()
    spec = fma_case.files["genres.csv"]
    fma_case.path("genres.csv").write_bytes(_set(2, "free", "International")(fma_case.records["genres.csv"], spec))
    with pytest.raises(UserError, match="title 'International' names two top-level genres"):
        fma(fma_case.folder, labels="all")
    fma_case.reset()


# ---------------------------------------------------------------------------------------------
# 5. Through the program: exit status 2 and one line naming the file, or the clean manifest


def run_cli(case: Case, out: Path, capsys) -> tuple[int, str]:
    code = main(["manifest", *case.cli, "--out", str(out)])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, case: Case, out: Path) -> None:
    assert code == 2 and not out.exists()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err[:500]
    assert err.startswith("featurestore manifest: error: ") and str(case.folder) in err


@pytest.mark.parametrize(
    ("case_file", "fault"),
    [
        pytest.param(("mtat", "annotations_final.csv"), "duplicate row", id="mtat-duplicate-id"),
        pytest.param(("mtat", "clip_info_final.csv"), "NUL byte", id="mtat-clip-info-NUL"),
        pytest.param(("csv", "clips.csv"), "unbalanced quote", id="csv-unbalanced-quote"),
        pytest.param(("fma", "tracks.csv"), "1 MB id", id="fma-1MB-track-id"),  # most of the megabyte left out
        pytest.param(("fma", "genres.csv"), "Latin-1 byte", id="fma-genres-latin1"),
        pytest.param(("gtzan", "lists/train.txt"), "1 MB field", id="gtzan-1MB-list-entry"),
    ],
    indirect=["case_file"],
)
def test_cli_reports_a_fault_in_one_line(case_file, fault, tmp_path, capsys):
    case, spec = case_file
    case.path(spec.name).write_bytes(FAULTS[fault](case.records[spec.name], spec))
    out = tmp_path / "m.parquet"
    assert_one_line_error(*run_cli(case, out, capsys), case, out)


@by_file
def test_cli_reads_cr_only_line_ends_like_the_clean_file(case_file, tmp_path, capsys):
    case, spec = case_file
    case.path(spec.name).write_bytes(FAULTS["CR-only line ends"](case.records[spec.name], spec))
    out = tmp_path / "m.parquet"
    assert run_cli(case, out, capsys)[0] == 0
    loaded = manifests.load(out)
    assert loaded.content_hash() == case.clean.content_hash() and loaded.meta == case.clean.meta


@by_file
@fuzz(8)
@given(body=st.binary(max_size=200), keep_header=st.booleans())
def test_cli_never_shows_a_traceback(case_file, tmp_path, capsys, body, keep_header):
    case, spec = case_file
    head = render(case.records[spec.name][: spec.header_rows], spec.delimiter, spec.dialect) if keep_header else b""
    case.path(spec.name).write_bytes(head + body)
    out = tmp_path / "m.parquet"
    out.unlink(missing_ok=True)
    code, err = run_cli(case, out, capsys)
    if code:
        assert_one_line_error(code, err, case, out)
    else:
        assert_valid(manifests.load(out))


# ---------------------------------------------------------------------------------------------
# 6. File names: the metadata of the folder adapter (and of the GTZAN tree)

LATIN1_NAME = b"caf\xe9.wav"  # a Latin-1 name from an old archive: not UTF-8


def _latin1_file(folder: Path) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(os.fsencode(folder), LATIN1_NAME), "wb") as handle:
        handle.write(b"RIFF")


def test_a_file_name_that_is_not_utf8_is_a_clear_error(tmp_path, capsys):
    write_tone(tmp_path / "tree" / "calm" / "ok.wav")
    _latin1_file(tmp_path / "tree" / "calm")
    with pytest.raises(UserError, match=r"tree/calm/caf\\xe9.wav: file or folder name is not UTF-8; rename it"):
        folder(tmp_path / "tree")
    write_gtzan(tmp_path / "gtzan", per_genre=2)
    _latin1_file(tmp_path / "gtzan" / "genres" / "jazz")
    with pytest.raises(UserError, match=r"genres/jazz/caf\\xe9.wav: file or folder name is not UTF-8"):
        gtzan(tmp_path / "gtzan")
    out = tmp_path / "m.parquet"
    code = main(["manifest", "folder", "--root", str(tmp_path / "tree"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and not out.exists()
    assert err.startswith("featurestore manifest: error: ") and "caf\\xe9.wav" in err


@pytest.mark.parametrize("label", ["~", "~user", "C:", "c:\\music"])
def test_a_folder_name_that_reads_as_absolute_is_a_clear_error(tmp_path, label):
    """Legal names on Linux, but `~/a.wav` or `C:/a.wav` in a manifest would leave the audio root."""
    write_tone(tmp_path / "calm" / "a.wav")
    write_tone(tmp_path / label / "a.wav")
    with pytest.raises(UserError, match=r"a path starting with '~' or a drive letter reads as absolute; rename"):
        folder(tmp_path)


names = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"), min_size=1, max_size=12)
names = names.filter(lambda name: not name.startswith(".") and len(name.encode()) < 100)


@fuzz(25)
@given(files=st.lists(st.tuples(names, names, st.sampled_from(["wav", "WAV", "flac", "mp3"])), min_size=1, max_size=8))
def test_any_file_names_give_a_clear_error_or_the_right_manifest(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("names")
    for label, stem, ext in files:
        (root / label).mkdir(exist_ok=True)
        (root / label / f"{stem}.{ext}").write_bytes(b"")  # the adapter lists names; it decodes no audio
    try:
        manifest = folder(root)
    except UserError as exc:
        message = assert_clear_error(exc, root)
        assert re.search(r"two audio files for clip|reads as absolute", message)  # a.wav beside a.WAV; ~/a.wav
        return
    assert_valid(manifest)
    expected = {f"{label}/{stem}": (f"{label}/{stem}.{ext}", [label]) for label, stem, ext in files}
    assert {c: (p, list(ls)) for c, p, ls in manifest.table[["clip_id", "path", "labels"]].itertuples(index=False)} == expected
