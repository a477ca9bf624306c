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
