"""A store is plain Zarr v3 for readers that know nothing of this package: a second
implementation (tensorstore) reads every numeric array bit for bit, xarray opens it with default
arguments and no warning (locally and over an S3 API) and labels it, CF tools accept it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numcodecs
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr

from helpers_store import build_store
from featurestore.cli import main
from featurestore.errors import UserError
from featurestore.store import OK, open_store
from featurestore.store.inspect import verify
from featurestore.maths.descriptors import DESCRIPTOR_NAMES
from featurestore.settings import dump
from featurestore.store.layout import clip_arrays
from helpers_store import SPEC

pytest_plugins = ["helpers_store"]

QUANTIZED = SPEC.select(["logmel", "mfcc", "handcrafted"], codec="quantized:0.0625:0.25", segment_seconds=0.5)
FAULTPOINTS = Path(__file__).with_name("faultpoints.py")


@pytest.fixture(scope="module")
def quantized_store(tmp_path_factory, store_corpus, dask_cluster) -> Path:
    out = tmp_path_factory.mktemp("quantized") / "store.zarr"
    build_store(store_corpus.manifest, store_corpus.audio, out, QUANTIZED,
                scheduler=dask_cluster.scheduler_address, progress=False)
    return out


def _arrays(url: Path) -> dict[str, zarr.Array]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no listing warning either
        group = zarr.open_group(str(url), mode="r")
        return {name: node for name, node in group.members(max_depth=None) if isinstance(node, zarr.Array)}


def _tensorstore(url: Path, name: str) -> np.ndarray:
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(url / name)}}
    return ts.open(spec, read=True).result().read().result()


@pytest.mark.parametrize("which", ["lossless", "quantized"])
def test_tensorstore_reads_every_numeric_array_bit_for_bit(which, built_store, quantized_store):
    url = built_store[0] if which == "lossless" else quantized_store
    store, arrays = open_store(url), _arrays(url)
    numeric = {n: a for n, a in arrays.items() if a.dtype.kind in "biuf"}
    # tensorstore 0.1 has no `string` data type: the clip, split, labels and descriptor
    # coordinates are the only arrays it cannot open (zarr-python, zarrs and xarray read them).
    assert set(arrays) - set(numeric) <= {"clip", "split", "labels", "descriptor"}
    assert set(clip_arrays(store.spec)) < set(numeric) and store.attrs.manifest_copy in numeric
    for name, array in numeric.items():
        theirs = _tensorstore(url, name)
        assert theirs.dtype == array.dtype and theirs.tobytes() == array[:].tobytes(), name
    if which == "quantized":
        for name, step in (("logmel", 0.0625), ("mfcc", 0.25)):
            attrs = arrays[name].attrs
            assert (attrs["scale_factor"], attrs["add_offset"], arrays[name].dtype) == (step, 0.0, np.int16)
            unpacked = (_tensorstore(url, name) * attrs["scale_factor"] + attrs["add_offset"]).astype(np.float32)
            assert unpacked.tobytes() == store.array(name)[:].tobytes(), "a CF reader gets this package's values"
    # only Zarr v3 core codecs, in every array
    core = {"bytes", "blosc", "zstd", "sharding_indexed", "crc32c", "vlen-utf8"}
    for name, array in arrays.items():
        used = {c["name"] for c in array.metadata.to_dict()["codecs"]}
        for c in array.metadata.to_dict()["codecs"]:
            used |= {inner["name"] for key in ("codecs", "index_codecs") for inner in c.get("configuration", {}).get(key, [])}
        assert used <= core, (name, used - core)


def test_quantized_store_reads_back_exactly_as_the_numcodecs_filter_did_and_costs_the_same(quantized_store):
    """The values equal a FixedScaleOffset round trip (format 2's encoding) of themselves, and
    the same values under that filter take as many bytes within 1 %."""
    store = open_store(quantized_store)
    values = store.array("logmel")[:]
    legacy = numcodecs.FixedScaleOffset(offset=0, scale=16, dtype="<f4", astype="<i2")
    assert legacy.decode(legacy.encode(values)).reshape(values.shape).tobytes() == values.tobytes()
    raw = store.array("logmel").raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numcodecs filters are outside the v3 core spec
        from zarr.codecs.numcodecs import FixedScaleOffset

        old = zarr.create_array(zarr.storage.MemoryStore(), shape=raw.shape, dtype="float32", chunks=raw.chunks,
                                shards=raw.shards, compressors=raw.compressors, fill_value=0,
                                filters=[FixedScaleOffset(offset=0, scale=16, dtype="<f4", astype="<i2")])
        old[:] = values
        assert old[:].tobytes() == values.tobytes()
    assert abs(raw.nbytes_stored() / old.nbytes_stored() - 1) < 0.01


def _open_xarray(url, **kw):
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(url, **kw)


def test_xarray_opens_with_defaults_labels_clips_and_decodes_like_this_package(quantized_store, tmp_path):
    import xarray as xr

    store = open_store(quantized_store)
    ds = _open_xarray(str(quantized_store))  # consolidated metadata: no fallback warning
    manifest = store.manifest
    assert ds["clip"].values.tolist() == manifest["clip_id"].tolist()
    assert ds["split"].values.tolist() == manifest["split"].tolist()
    assert ds["labels"].values.tolist() == [";".join(labels) for labels in manifest["labels"]]
    assert {"clip", "split", "labels"} <= set(ds.coords) and "descriptor" in ds.coords
    assert ds["descriptor"].values.tolist() == list(DESCRIPTOR_NAMES)
    clip = manifest["clip_id"].iat[5]
    np.testing.assert_array_equal(ds["logmel"].sel(clip=clip).values.astype(np.float32), store.array("logmel")[5])
    assert (ds["logmel"].values.astype(np.float32).tobytes() == store.array("logmel")[:].tobytes())
    assert (ds["handcrafted"].values.tobytes() == store.array("handcrafted")[:].tobytes())
    assert ds["logmel"].attrs["units"] == "dB" and "log-mel" in ds["logmel"].attrs["long_name"]
    assert ds["logmel_mean"].attrs["units"] == "dB" and ds["logmel_mean"].dims == ("mel",)
    assert ds["status"].attrs["flag_meanings"] == "pending ok failed" and ds["status"].attrs["flag_values"] == [0, 1, 2]
    assert int((ds["status"] == OK).sum()) == int((store.status == OK).sum())
    assert ds.attrs["Conventions"].startswith("CF-") and json.loads(ds.attrs["featurestore"]) == dump(store.attrs)

    # netCDF (the scipy engine, netCDF 3, has no float16: cast those) takes every attribute
    out = tmp_path / "store.nc"
    ds.assign({k: v.astype("float32") for k, v in ds.data_vars.items() if v.dtype == np.float16}).to_netcdf(out)
    back = xr.open_dataset(out)
    assert back["clip"].values.tolist() == manifest["clip_id"].tolist()
    assert back["logmel"].attrs["units"] == "dB" and back.attrs["featurestore"] == ds.attrs["featurestore"]
    np.testing.assert_array_equal(back["logmel"].values, ds["logmel"].values)


def test_no_zarr_listing_or_consolidation_warns(built_store, tmp_path):
    copy = tmp_path / "store.zarr"
    shutil.copytree(built_store[0], copy)
    names = set(_arrays(copy))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # zarr 3.1 warns about consolidated metadata itself (not in the v3 spec yet), about nothing in the store
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(copy))
        groups = {n for n, node in zarr.open_group(str(copy), mode="r", use_consolidated=False).members(max_depth=None)
                  if isinstance(node, zarr.Group)}
    assert {"commits", "manifest"} < groups and {f"commits/shard-{i:05d}" for i in range(4)} <= groups
    assert any(n.startswith("manifest/parquet-") for n in names)


def test_manifest_copy_has_the_manifest_schema_and_null_errors(built_store, store_corpus):
    store = open_store(built_store[0])
    raw = zarr.open_array(str(built_store[0]), path=store.attrs.manifest_copy, mode="r")
    table = pq.read_table(pa.BufferReader(raw[:].tobytes()))
    source = pq.read_schema(store_corpus.manifest)
    assert table.schema.remove(table.schema.get_field_index("error")).equals(source)  # types and metadata
    assert str(table.schema.field("error").type) == "string"
    errors = table.column("error").to_pylist()
    assert sum(e is None for e in errors) == int((store.status == OK).sum())
    assert all(e for e, s in zip(errors, store.status) if s != OK)


def test_xarray_opens_a_store_over_an_s3_api_without_a_warning(built_store):
    from benchmarks.s3 import moto_s3

    local = _open_xarray(str(built_store[0]))
    with moto_s3("stores") as fs:
        fs.put(str(built_store[0]), "stores/store.zarr", recursive=True)
        remote = _open_xarray("s3://stores/store.zarr")
        assert remote["clip"].values.tolist() == local["clip"].values.tolist()
        np.testing.assert_array_equal(remote["logmel"].values, local["logmel"].values)
        assert verify(open_store("s3://stores/store.zarr"))[1] == []


def _consolidated(url: Path) -> dict | None:
    return json.loads((url / "zarr.json").read_text()).get("consolidated_metadata")


@pytest.mark.reliability
def test_consolidated_metadata_is_dropped_while_a_store_grows_and_right_after_a_resume(built_store, store_corpus,
                                                                                        tmp_path):
    out, marker = tmp_path / "store.zarr", tmp_path / "reached"
    shutil.copytree(built_store[0], out)
    assert "logmel" in _consolidated(out)["metadata"]
    args = [str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
            "--features", "handcrafted", "--segment-seconds", "0.5", "--workers", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, str(FAULTPOINTS), "commit:2", str(marker), "--", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        # a reader must not trust a snapshot that lacks the array being added
        assert _consolidated(out) is None and "handcrafted" in _arrays(out)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert main(["build", *args]) == 0
    snapshot = _consolidated(out)["metadata"]
    live = {n for n, _ in zarr.open_group(str(out), mode="r", use_consolidated=False).members(max_depth=None)}
    assert set(snapshot) == {n for n in live if not n.startswith("commits/")}  # the records stay out
    assert (out / "zarr.json").stat().st_size < 64 * 1024
    assert snapshot["handcrafted"]["shape"] == list(open_store(out).array("handcrafted").shape)
    ds = _open_xarray(str(out))
    assert "handcrafted_mean" in ds and ds["handcrafted"].dims == ("clip", "segment", "descriptor")


def test_a_format_2_store_is_refused_with_one_line_saying_how_to_rebuild(built_store, store_corpus, tmp_path, capsys):
    old = tmp_path / "old.zarr"
    shutil.copytree(built_store[0], old)
    meta = json.loads((old / "zarr.json").read_text())
    attrs = json.loads(meta["attributes"]["featurestore"])
    meta["attributes"]["featurestore"] = {**attrs, "format_version": 2}  # format 2 kept a nested dict
    meta.pop("consolidated_metadata")
    (old / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"store format 2, from before the formats this version reads \(3, 4\): "
                                        r"rebuild it with .*--overwrite"):
        open_store(old)
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    assert main(["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(old),
                 "--duration", "1", "--crop-samples", "4096"]) == 2
    err = capsys.readouterr().err
    assert "has store format 2, from before the formats this version reads" in err and err.count("\n") == 1
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before
    assert main(["info", str(old)]) == 2
