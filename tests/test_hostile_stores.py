"""A store whose metadata was edited (wrong types, impossible sizes, paths leaving the store, another
length, JSON that is not JSON) is refused by every command and by the Python API in one line
naming the store and the field, within seconds, before anything is read from its arrays."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.cli import main
from featurestore.errors import StoreFormatError
from featurestore.store import open_store

pytestmark = pytest.mark.reliability
pytest_plugins = ["helpers_store"]

SECONDS = 10  # what a refusal may take, at most


def _root(store: Path, edit: Callable[[dict], None]) -> None:
    """Edit this package's root attributes (a JSON string inside the root zarr.json)."""
    document = json.loads((store / "zarr.json").read_text())
    attrs = json.loads(document["attributes"]["featurestore"])
    edit(attrs)
    document["attributes"]["featurestore"] = json.dumps(attrs)
    (store / "zarr.json").write_text(json.dumps(document))


def _document(path: Path, edit: Callable[[dict], None]) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def _record(store: Path, shard: int, edit: Callable[[dict], None]) -> None:
    _document(store / "commits" / f"shard-{shard:05d}" / "zarr.json", lambda d: edit(d["attributes"]["featurestore"]))


def _set(keys: tuple, value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for key in keys[:-1]:
            d = d[key]
        d[keys[-1]] = value
    return edit


def _not_json(store: Path) -> None:
    _document(store / "zarr.json", _set(("attributes", "featurestore"), '{"format_version": 4, "n_clips": '))


def _stats_of_another_length(store: Path) -> None:
    _record(store, 0, lambda r: r["arrays"]["logmel"]["stats"].update(sum=r["arrays"]["logmel"]["stats"]["sum"][:-1]))


# edit -> what the one line must say (besides the store's path)
EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    "n_clips 1e15": (lambda s: _root(s, _set(("n_clips",), 1e15)), "n_clips: input should be a valid integer"),
    "n_clips 10**15": (lambda s: _root(s, _set(("n_clips",), 10**15)), "n_clips: input should be less than or equal"),
    "n_clips more than the arrays hold": (lambda s: _root(s, _set(("n_clips",), 40)),
                                          "where the root attributes say n_clips 40"),
    "shard_clips 0": (lambda s: _root(s, _set(("shard_clips",), 0)), "shard_clips: input should be greater than"),
    "shard_clips not a multiple of chunks": (lambda s: _root(s, _set(("shard_clips",), 12)),
                                             "shard_clips 12 is not a multiple of chunk_clips 8"),
    "sample_rate fast": (lambda s: _root(s, _set(("spec", "decoding", "sample_rate"), "fast")),
                         "spec: decoding.sample_rate: input should be a valid integer"),
    "n_mels 1e9": (lambda s: _root(s, _set(("spec", "arrays", "logmel", "n_mels"), 10**9)),
                   "spec: arrays.logmel: n_mels: input should be less than or equal to 1024"),
    "n_mels other than stored": (lambda s: _root(s, _set(("spec", "arrays", "logmel", "n_mels"), 64)),
                                 "arrays.logmel.hash is not the hash of its settings"),
    "manifest_copy outside the store": (lambda s: _root(s, _set(("manifest_copy",), "../../../etc/passwd")),
                                        "manifest_copy: string should match pattern"),
    "labels 5": (lambda s: _root(s, _set(("labels",), 5)), "labels: input should be a valid"),
    "attributes not JSON": (_not_json, "the 'featurestore' attribute is not JSON"),
    "a record of another length": (lambda s: _record(s, 1, _set(("stop",), 24)), "rows 8-23 are not in shard-00001"),
    "a record's statistics of another length": (_stats_of_another_length,
                                                "arrays.logmel.stats has 79 sums where the array keeps 80"),
    "a record that is not JSON": (lambda s: (s / "commits" / "shard-00002" / "zarr.json").write_text('{"attr'),
                                  "commit record commits/shard-00002: not a commit record"),
    "consolidated metadata of the wrong type": (lambda s: _document(s / "zarr.json", _set(("consolidated_metadata",),
                                                                                       {"metadata": 5})),
                                                "consolidated metadata: not a mapping of node documents"),
    "consolidated metadata of other shapes": (
        lambda s: _document(s / "zarr.json", _set(("consolidated_metadata", "metadata", "logmel", "shape"),
                                                  [10**12, 80, 16])), "consolidated metadata: describes array logmel"),
    "array metadata of another shape": (lambda s: _document(s / "logmel" / "zarr.json",
                                                            _set(("shape",), [10**15, 80, 16])),
                                        "array logmel holds 1000000000000000 clips"),
    "manifest copy of another size": (
        lambda s: _document(next((s / "manifest").glob("parquet-*")) / "zarr.json", _set(("shape",), [10**12])),
        "does not describe the"),
}


@pytest.fixture(scope="module")
def run(built_store, tmp_path_factory) -> Path:
    """A run trained on the intact store, for `evaluate --store`."""
    out = tmp_path_factory.mktemp("hostile-run") / "run"
    assert main(["train", str(built_store[0]), "--model", "cnn3", "--out", str(out), "--epochs", "1",
                 "--crop-frames", "16", "--num-workers", "0"]) == 0
    return out


def _commands(store: Path, run: Path, corpus) -> dict[str, list[str]]:
    return {
        "info": ["info", str(store)],
        "verify": ["verify", str(store)],
        "build": ["build", str(corpus.manifest), "--audio-root", str(corpus.audio), "--out", str(store), "--quiet"],
        "train": ["train", str(store), "--model", "cnn3", "--out", str(store.parent / "run"), "--epochs", "1",
                  "--crop-frames", "16", "--num-workers", "0"],
        "evaluate": ["evaluate", str(run), "--store", str(store), "--out", str(store.parent / "eval")],
    }


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_command_refuses_an_edited_store_in_one_line_naming_the_field(edit, built_store, store_corpus, run,
                                                                          tmp_path, capsys):
    change, says = EDITS[edit]
    store = tmp_path / "store.zarr"
    shutil.copytree(built_store[0], store)
    change(store)
    before = sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*") if p.is_file())
    started = time.monotonic()
    with pytest.raises(StoreFormatError) as refused:
        open_store(store)
    assert says in str(refused.value) and str(store) in str(refused.value)
    for name, command in _commands(store, run, store_corpus).items():
        capsys.readouterr()
        code = main(command)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, f"{name}: {err}"
        assert says in err and str(store) in err and "Traceback" not in err, f"{name}: {err}"
    assert time.monotonic() - started < SECONDS * 6, "six refusals, each within seconds"
    assert sorted((p.relative_to(store), p.stat().st_size) for p in store.rglob("*") if p.is_file()) == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "eval").exists()


# --- generated edits -------------------------------------------------------------------------------

def _documents(store: Path) -> dict[str, tuple[Path, tuple]]:
    """The JSON documents a store is described by: file, and where this package's part sits in it
    (a key path; the root attributes are a JSON string inside the root zarr.json)."""
    return {
        "root attributes": (store / "zarr.json", ("attributes", "featurestore")),
        "commit record": (store / "commits" / "shard-00001" / "zarr.json", ("attributes", "featurestore")),
        "consolidated metadata": (store / "zarr.json", ("consolidated_metadata",)),
        "array metadata": (store / "logmel" / "zarr.json", ()),
        "manifest copy": (next((store / "manifest").glob("parquet-*")) / "zarr.json", ()),
    }


def _key_paths(value, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a JSON value, containers and leaves alike."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            paths += _key_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            paths += _key_paths(v, (*prefix, i))
    return paths


HOSTILE_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.lists(st.integers(min_value=-(2**40), max_value=2**40), max_size=4),
    st.sampled_from([None, True, False, [], {}, "", "../../../etc/passwd", "/etc/passwd", 10**15, 1e15, -1, 0,
                     [10**12, 80, 16], {"metadata": 5}]),
)


@pytest.mark.parametrize("name", ["root attributes", "commit record", "consolidated metadata", "array metadata",
                                  "manifest copy"])
@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_edits_end_every_command_in_one_line_within_seconds(name, data, built_store, store_corpus,
                                                                      tmp_path_factory, dask_cluster, capsys):
    """Hypothesis edits one value (or truncates) one document of a copy of a store; `info`,
    `verify`, `train` and `build` each either work or refuse in one line naming the store, within
    10 s, with no traceback."""
    base = tmp_path_factory.mktemp("generated")
    store = base / "store.zarr"
    shutil.copytree(built_store[0], store)
    path, inside = _documents(store)[name]
    text = path.read_text()
    if data.draw(st.booleans(), label="truncate"):
        path.write_text(text[: data.draw(st.integers(min_value=0, max_value=len(text) - 1), label="cut at")])
    else:
        document = json.loads(text)
        holder, part = document, document
        for key in inside:
            holder, part = part, part[key]
        as_string = isinstance(part, str)
        value = json.loads(part) if as_string else part
        target = data.draw(st.sampled_from(_key_paths(value)), label="key path")
        edit = _set(target, data.draw(HOSTILE_VALUES, label="value"))
        edit(value)
        if inside:
            holder[inside[-1]] = json.dumps(value) if as_string else value
        path.write_text(json.dumps(document if inside else value))
    commands = {
        "info": ["info", str(store)],
        "verify": ["verify", str(store)],
        "train": ["train", str(store), "--model", "mlp", "--out", str(base / "run"), "--epochs", "1",
                  "--num-workers", "0"],
        "build": ["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(store),
                  "--scheduler", dask_cluster.scheduler_address, "--quiet"],
    }
    for command, argv in commands.items():
        capsys.readouterr()
        started = time.monotonic()
        code = main(argv)
        seconds = time.monotonic() - started
        err = capsys.readouterr().err
        assert seconds < SECONDS, f"{command} took {seconds:.1f} s"
        assert "Traceback" not in err, f"{command}: {err}"
        assert code in (0, 1, 2), f"{command} exited {code}: {err}"
        if code == 2:
            assert err.count("\n") == 1 and str(store) in err, f"{command}: {err}"
