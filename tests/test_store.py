"""Store layout, codecs, commit records and statistics, without audio or a cluster."""

from __future__ import annotations


import numcodecs
import numpy as np
import pytest
import zarr

from featurestore import codecs
from featurestore.errors import StoreFormatError, UserError
from featurestore.locations import write_bytes
from featurestore.maths import statistics as stats
from featurestore.presets import preset
from featurestore.store import open_store
from featurestore.store.commits import CommitRecord, parse_record, read_documents, record_url, write_record
from featurestore.store.layout import CHUNK_CLIPS, Layout, default_shard_clips

LOGMEL, MFCC = preset("mtat-seed").feature("logmel"), preset("mtat-seed").feature("mfcc")


def test_default_shards_depend_on_the_manifest_size_only_and_keep_two_workers_busy():
    mtat = preset("mtat-seed")
    for n in (1, 7, 29, 100, 1000, 25_863):
        size = default_shard_clips(n, mtat)
        assert size % CHUNK_CLIPS == 0 and CHUNK_CLIPS <= size <= 512
    assert Layout(29, 8, default_shard_clips(29, mtat)).n_shards >= 2
    assert Layout(200, 8, default_shard_clips(200, mtat)).n_shards >= 8
    assert default_shard_clips(25_863, mtat) == 512  # 51 shards of ~25 MB of log-mel: tens of files
    # FMA's whole 30-s waveform is 2.6 MB a clip: shards stay near 64 MB instead of 1.3 GB.
    fma = preset("fma")
    assert default_shard_clips(25_000, fma) * fma.feature("waveform").clip_bytes <= 64 * 2**20


def test_layout_cuts_the_clip_axis_into_whole_shards_and_a_partial_last_one():
    layout = Layout(n_clips=29, chunk_clips=8, shard_clips=16)
    assert layout.n_shards == 2
    assert [layout.shard_range(i) for i in range(2)] == [(0, 16), (16, 29)]


@pytest.mark.parametrize("name", ["blosc-zstd:2", "blosc-zstd", "blosc-zstd:9", "zstd", "blosc-zstd-bitshuffle", "none"])
def test_lossless_codecs_round_trip_float16_exactly(tmp_path, name):
    rng = np.random.default_rng(0)
    x = rng.uniform(-100, 40, size=(16, 8, 32)).astype(np.float16)
    enc = codecs.parse(name).for_array(LOGMEL)
    a = zarr.create_array(tmp_path / name, shape=x.shape, dtype=enc.stored, chunks=(4, 8, 32), shards=(8, 8, 32),
                          compressors=enc.compressors, fill_value=0)
    a[:] = enc.encode(x)
    assert enc.attributes() == {} and a[:].tobytes() == x.tobytes()


def test_blosc_levels_are_named_and_the_unnamed_level_never_changes():
    # Stores built before levels were named recorded `blosc-zstd` and `quantized:STEP`: Blosc level 3.
    levels = {name: codecs.parse(name).for_array(LOGMEL).compressors[0].clevel
              for name in ("blosc-zstd", "blosc-zstd-bitshuffle", "quantized:0.0625", "blosc-zstd:2", "blosc-zstd:7")}
    assert levels == {"blosc-zstd": 3, "blosc-zstd-bitshuffle": 3, "quantized:0.0625": 3, "blosc-zstd:2": 2,
                      "blosc-zstd:7": 7}
    assert codecs.DEFAULT == "blosc-zstd:2" and preset("mtat-seed").codec == codecs.DEFAULT
    for bad in ("blosc-zstd:0", "blosc-zstd:10", "blosc-zstd:", "blosc-zstd:two"):
        with pytest.raises(UserError, match=f"bad codec '{bad}': write blosc-zstd:LEVEL"):
            codecs.parse(bad)


def test_quantized_codec_error_is_at_most_float16_rounding_over_minus_100_to_40_db(tmp_path):
    # Every float32 between -100 and +40 dB on a fine grid, plus exact half-steps (the worst case).
    half_steps = (np.linspace(-1600, 639, 1024).round() + 0.5) / 16
    x = np.concatenate([np.linspace(-100, 40, 2**16 - 1024), half_steps]).astype(np.float32).reshape(16, 64, 64)
    codec = codecs.parse("quantized:0.0625")
    enc = codec.for_array(LOGMEL)
    assert (enc.dtype, enc.stored, enc.step) == ("float32", "int16", 0.0625)
    a = zarr.create_array(tmp_path / "q", shape=x.shape, dtype=enc.stored, chunks=(4, *x.shape[1:]),
                          shards=(8, *x.shape[1:]), compressors=enc.compressors, fill_value=0,
                          attributes=enc.attributes())
    assert all(c.to_dict()["name"] in ("sharding_indexed", "bytes", "blosc", "crc32c") for c in a.metadata.codecs +
               a.metadata.codecs[0].codecs + a.metadata.codecs[0].index_codecs)  # Zarr v3 core codecs only
    a[:] = enc.encode(x)
    back = codecs.decode(a[:], dict(a.attrs))
    float16_error = np.abs(x.astype(np.float16).astype(np.float32) - x).max()
    assert float16_error == 1 / 32  # float16 spacing is 1/16 between 64 and 128 dB in magnitude
    assert back.dtype == np.float32 and np.abs(back - x).max() <= float16_error
    # Bit for bit what numcodecs' FixedScaleOffset filter (format 2 stores) gave back.
    legacy = numcodecs.FixedScaleOffset(offset=0, scale=16, dtype="<f4", astype="<i2")
    assert back.tobytes() == legacy.decode(legacy.encode(x)).reshape(x.shape).tobytes()
    # The one integer never written is CF's _FillValue: xarray masks nothing.
    assert a.attrs["_FillValue"] == -32768 and a[:].min() > -32768
    # MFCCs are left alone unless a second step is given.
    assert codec.for_array(MFCC).step is None
    both = codecs.parse("quantized:0.0625:0.25")
    assert both.for_array(MFCC).step == 0.25


def test_codec_names_are_checked():
    for bad in ("lzma", "quantized:", "quantized:abc", "quantized:-1", "quantized:0.1:0.1:0.1:0.1:0.1"):
        with pytest.raises(UserError):
            codecs.parse(bad)
    # a step no feature kind takes (the built-ins take two: log-mel, then MFCC) is refused by the spec
    with pytest.raises(UserError, match="no feature kind takes step 3"):
        preset("mtat-seed").replace(codec="quantized:0.1:0.1:0.1")


def test_commit_records_are_zarr_groups_and_a_torn_one_is_refused_naming_it(tmp_path):
    url = str(tmp_path / "s.zarr")
    record = CommitRecord(3, "ab" * 16, 24, 32, "0123456789abcdef")
    write_record(url, record)
    assert parse_record(read_documents(url)[3], 3, "here") == record
    # a record is a Zarr group's attributes: any Zarr reader finds it
    assert zarr.open_group(url + "/commits/shard-00003", mode="r").attrs["featurestore"]["start"] == 24
    write_bytes(record_url(url, 4), b'{"zarr_format": 3, "node_type": "gr')  # a torn write, or an edit
    with pytest.raises(StoreFormatError, match=r"s\.zarr: commit record commits/shard-00004: not a commit record"):
        read_documents(url)


def test_statistics_combine_per_shard_sums_into_the_whole_data_mean_and_std():
    rng = np.random.default_rng(1)
    x = rng.normal(-40, 12, size=(20, 5, 7)).astype(np.float16)
    include = rng.random(20) < 0.6
    shards = [stats.partial_sums({"logmel": x[i : i + 8]}, include[i : i + 8], {"logmel": 1}) for i in range(0, 20, 8)]
    mean, std, n = stats.combine(shards)["logmel"]
    kept = x[include].astype(np.float64)
    assert n == kept.shape[0] * 7
    np.testing.assert_allclose(mean, kept.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, kept.std(axis=(0, 2)), rtol=1e-5)
    mean, std, n = stats.combine([stats.partial_sums({"logmel": x}, np.zeros(20, bool), {"logmel": 1})])["logmel"]
    assert n == 0 and (mean == 0).all() and (std == 1).all()  # no train clip: normalising is a no-op


def test_open_store_refuses_what_is_not_a_store(tmp_path):
    with pytest.raises(UserError, match="not a feature store"):
        open_store(tmp_path)
    zarr.create_group(tmp_path / "plain.zarr")
    with pytest.raises(UserError, match="not a feature store"):
        open_store(tmp_path / "plain.zarr")


def test_atomic_path_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    from featurestore.locations import TEMPORARY_GLOB, atomic_path

    with atomic_path(tmp_path / "a" / "x.png") as tmp:
        assert tmp.suffix == ".png" and tmp.match(TEMPORARY_GLOB)
        tmp.write_bytes(b"ok")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a" / "y.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.png"]
    assert (tmp_path / "a" / "x.png").stat().st_mode & 0o044, "umask permissions, not mkstemp's 0600"
