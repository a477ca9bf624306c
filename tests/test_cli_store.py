"""`featurestore build / info / verify / export-features` from the command line, in-process."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.register_assert_rewrite("helpers_store")

from featurestore.cli import main
from featurestore.progress import EVERY_ENV
from featurestore.store import OK, open_store
from featurestore.store.inspect import footprint
from helpers_store import SPEC, assert_same_arrays, read_arrays

pytest_plugins = ["helpers_store"]


def test_build_with_one_local_worker_equals_the_two_worker_external_build(built_store, store_corpus, tmp_path, capsys,
                                                                           monkeypatch):
    out = tmp_path / "cli.zarr"
    monkeypatch.setenv(EVERY_ENV, "0.05")  # stderr is not a terminal here: progress lines, as in a cluster job's log
    code = main(["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
                 "--duration", "1", "--crop-samples", "4096", "--workers", "1", "--profile"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0
    assert re.search(r"^build: \d+/\d+ shards \(\d+ %\), .*\(\d+:\d\d elapsed\)$", captured.err, re.M), captured.err
    assert "\r" not in captured.err
    assert f"spec {SPEC.hash()}:" in printed  # the resolved spec: preset mtat-seed plus the overrides
    assert '"n_mels": 80' in printed and '"duration": 1.0' in printed
    assert "ok 24, failed 5, pending 0" in printed and "first failures:" in printed and "empty file" in printed
    # --profile: every stage in ms per clip of one worker's time, adding up to the wall time
    profile = printed[printed.index("where the time went"):].splitlines()
    header = re.search(r"\((\d+) workers, (\d+) clips, ([\d.]+) s\)", profile[0])
    assert header and header.group(1, 2) == ("1", "29")
    rows = {" ".join(line.split(maxsplit=3)[2:]): float(line.split()[0]) for line in profile[1:]}
    assert {"task decode", "task STFT", "task compress and write", "driver finish"} <= set(rows)
    assert sum(rows.values()) == pytest.approx(float(header.group(3)) * 1e3 / 29, rel=0.1)
    assert_same_arrays(read_arrays(out), read_arrays(built_store[0]))
    assert [r.content_hash() for r in open_store(out).records.values()] == [
        r.content_hash() for r in open_store(built_store[0]).records.values()
    ]


def test_info_prints_counts_and_the_footprint_of_every_array(built_store, capsys):
    url = built_store[0]
    assert main(["info", str(url), "--scale-to", "25863"]) == 0
    out = capsys.readouterr().out
    assert "ok 24, failed 5, pending 0" in out and "state      complete" in out and SPEC.hash() in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "x 25863 clips" in lines["array"]
    rows = {r.name: r for r in footprint(open_store(url))}
    for name, dtype in (("logmel", "float16"), ("mfcc", "float16"), ("waveform", "float16"), ("status", "uint8"),
                        ("length", "int64")):
        r = rows[name]
        assert dtype in lines[name] and "blosc-zstd2-shuffle" in lines[name]  # the default, Blosc level 2
        assert r.stored == open_store(url).array(name).nbytes_stored()
        assert f"{r.bytes_per_clip:,.0f}" in lines[name]
    assert rows["logmel"].chunks == (8, 80, 16) and rows["logmel"].shards == (8, 80, 16)
    assert rows["logmel"].ratio > 1  # float16 log-mel does compress, a little
    assert rows["total"].stored == sum(r.stored for n, r in rows.items() if n != "total")
    scaled = rows["total"].bytes_per_clip * 25863 / 1e6
    assert f"{scaled:.2f} MB" in lines["total"]


def test_verify_passes_a_good_store_and_names_a_corrupted_shard(built_store, tmp_path, capsys):
    store = tmp_path / "copy.zarr"
    shutil.copytree(built_store[0], store)
    assert main(["verify", str(store)]) == 0
    assert "ok (4 shards, 29 clips" in capsys.readouterr().out

    shard = store / "logmel" / "c" / "2" / "0" / "0"
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    shard.write_bytes(bytes(data))
    assert main(["verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "shard-00002 (clips 16-23)" in out
    assert "shard-00000" not in out and "shard-00001" not in out and "shard-00003" not in out


def test_verify_reports_an_unfinished_build(built_store, tmp_path, capsys):
    store = tmp_path / "unfinished.zarr"
    shutil.copytree(built_store[0], store)
    shutil.rmtree(store / "commits" / "shard-00001")
    assert main(["verify", str(store)]) == 1
    assert "shard-00001 (clips 8-15): not committed" in capsys.readouterr().out


def test_export_features_writes_the_gtzan_features_3_sec_table(store_corpus, dask_cluster, tmp_path, capsys):
    from helpers_store import build_store
    from featurestore.maths.descriptors import DESCRIPTOR_NAMES
    from featurestore.presets import preset

    spec = preset("handcrafted").replace(duration=1.0, segment_seconds=0.5)
    out = tmp_path / "hc.zarr"
    build_store(store_corpus.few_manifest, store_corpus.audio, out, spec,
                scheduler=dask_cluster.scheduler_address, progress=False)
    csv = tmp_path / "features_3_sec.csv"
    assert main(["export-features", str(out), "--csv", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert list(table.columns) == ["filename", "length", *DESCRIPTOR_NAMES, "label"]

    store = open_store(out)
    ok = np.flatnonzero(store.status == OK)
    assert len(ok) == 7 and len(table) == len(ok) * 2  # two 0.5-s segments per clip
    first = store.manifest.iloc[ok[0]]
    stem, ext = first["path"].rsplit("/", 1)[1].rsplit(".", 1)
    assert list(table["filename"][:2]) == [f"{stem}.0.{ext}", f"{stem}.1.{ext}"]  # blues.00000.0.wav style
    assert (table["length"] == spec.feature("handcrafted").segment_samples).all()
    assert list(table["label"][:2]) == first["labels"][:1] * 2
    stored = store.array("handcrafted")[:][ok].reshape(-1, len(DESCRIPTOR_NAMES))
    np.testing.assert_array_equal(table[list(DESCRIPTOR_NAMES)].to_numpy(np.float32), stored)
    mean, std = store.stats("handcrafted")
    assert mean.shape == std.shape == (len(DESCRIPTOR_NAMES),) and np.isfinite(std).all()


def test_store_commands_fail_in_one_line(built_store, store_corpus, tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a feature store" in err
    assert main(["export-features", str(built_store[0]), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "has no handcrafted array" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
    assert main(["build", "m.parquet", "--audio-root", ".", "--out", str(tmp_path / "s"), "--codec", "lzma"]) == 2
    assert "unknown codec 'lzma'" in capsys.readouterr().err
    assert main(["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out",
                 str(tmp_path / "s"), "--features", "logmel,chroma"]) == 2
    assert "'chroma' is neither an array of this spec" in capsys.readouterr().err and not (tmp_path / "s").exists()
    spec = tmp_path / "spec.toml"
    spec.write_text('[arrays.logmel]\nkind = "logmel"\nn_mels = 1e9\n')
    assert main(["build", "m.parquet", "--audio-root", ".", "--out", str(tmp_path / "s"), "--spec", str(spec)]) == 2
    assert capsys.readouterr().err == (f"featurestore build: error: {spec}: arrays.logmel: n_mels: input should be a "
                                       "valid integer (got 1000000000.0)\n")


def test_every_store_command_has_help(capsys):
    for command in ("build", "info", "verify", "upgrade", "presets", "export-features"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: featurestore {command}")


def test_overwrite_refuses_a_folder_that_is_not_a_store(store_corpus, tmp_path, capsys):
    out = tmp_path / "results"
    (out / "plots").mkdir(parents=True)
    (out / "notes.txt").write_text("a month of work")
    args = ["build", str(store_corpus.few_manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
            "--duration", "1", "--crop-samples", "4096", "--workers", "1", "--quiet", "--overwrite"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"featurestore build: error: {out} holds files that are not a feature store (notes.txt, plots): "
                   "choose a new or empty --out (--overwrite replaces only a feature store, and nothing here was "
                   "deleted)\n")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "plots"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args[:5], str(empty), *args[6:]]) == 0, "an empty folder is fine to build into"
    assert main([*args[:5], str(empty), *args[6:]]) == 0, "and a store is replaced by --overwrite"
    assert "(1 built now, 0 already committed)" in capsys.readouterr().out


def test_a_store_resumed_with_its_preset_keeps_the_codec_it_was_started_with(store_corpus, tmp_path, capsys):
    """A store started under the old default (`blosc-zstd`, Blosc level 3) is resumed by the same
    command line after the default became `blosc-zstd:2`; only an explicit other --codec is refused."""
    out = tmp_path / "old.zarr"
    base = ["build", str(store_corpus.few_manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
            "--preset", "mtat-seed", "--duration", "1", "--crop-samples", "4096", "--workers", "1", "--quiet"]
    assert main([*base, "--codec", "blosc-zstd"]) == 0
    capsys.readouterr()
    assert main(base) == 0
    assert '"codec": "blosc-zstd"' in capsys.readouterr().out
    assert open_store(str(out)).spec.codec == "blosc-zstd"
    assert main([*base, "--codec", "blosc-zstd:2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "codec blosc-zstd (this build: blosc-zstd:2)" in err


def test_a_wrong_audio_root_is_refused_before_the_build_starts(store_corpus, tmp_path, capsys):
    out = tmp_path / "store.zarr"
    base = ["build", str(store_corpus.manifest), "--out", str(out), "--duration", "1", "--crop-samples", "4096",
            "--workers", "1", "--quiet", "--audio-root"]
    assert main([*base, str(tmp_path / "nonexistent")]) == 2
    assert capsys.readouterr().err == (f"featurestore build: error: --audio-root {tmp_path / 'nonexistent'} is not a "
                                       "folder: give the folder the manifest paths are relative to\n")
    assert main([*base, str(store_corpus.audio.parent)]) == 2  # one level too high: no path resolves
    err = capsys.readouterr().err
    assert "none of 16 manifest paths sampled from first to last is under --audio-root" in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_a_store_of_two_log_mel_resolutions_builds_from_toml_and_its_spec_builds_it_again(
        store_corpus, dask_cluster, tmp_path, capsys):
    from test_spec import ISSUE_TOML

    spec = tmp_path / "spec.toml"
    spec.write_text(ISSUE_TOML)
    first, again = tmp_path / "first.zarr", tmp_path / "again.zarr"
    common = ["--audio-root", str(store_corpus.audio), "--scheduler", dask_cluster.scheduler_address, "--quiet"]
    assert main(["build", str(store_corpus.few_manifest), "--out", str(first), "--spec", str(spec), *common]) == 0
    capsys.readouterr()
    assert main(["info", str(first), "--spec"]) == 0
    printed = tmp_path / "printed.toml"
    printed.write_text(capsys.readouterr().out)
    assert main(["build", str(store_corpus.few_manifest), "--out", str(again), "--spec", str(printed), *common]) == 0
    stored = open_store(first)
    assert stored.spec.names == ("logmel", "logmel128", "mfcc") and stored.spec == open_store(again).spec
    assert stored.array("logmel").shape == (8, 80, 313) and stored.array("logmel128").shape == (8, 128, 626)
    assert_same_arrays(read_arrays(first), read_arrays(again))
