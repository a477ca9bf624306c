"""The spec: decoding, codec and named arrays with settings of their own; TOML; what it refuses."""

from __future__ import annotations

import pytest

from featurestore.cli import main
from featurestore.errors import UserError
from featurestore.features.builtin import MelSettings, WaveformSettings
from featurestore.presets import PRESETS, preset
from featurestore.spec import ArraySpec, Decoding, FeatureSpec
from featurestore.store.commits import part_hashes

ISSUE_TOML = """
codec = "blosc-zstd:2"
[decoding]
sample_rate = 16000
duration = 20.0
[arrays.logmel]
kind = "logmel"
n_fft = 2048
hop = 1024
n_mels = 80
[arrays.logmel128]
kind = "logmel"
n_fft = 2048
hop = 512
n_mels = 128
[arrays.mfcc]
kind = "mfcc"
n_fft = 2048
hop = 1024
n_mels = 80
n_mfcc = 20
"""


def test_the_two_resolution_spec_reads_from_toml_and_round_trips():
    spec = FeatureSpec.from_toml(ISSUE_TOML)
    assert spec.names == ("logmel", "logmel128", "mfcc") and spec.codec == "blosc-zstd:2"
    assert spec.feature("logmel").clip_shape() == (80, 313) and spec.feature("logmel128").clip_shape() == (128, 626)
    assert spec.arrays["logmel128"] == ArraySpec("logmel", MelSettings(hop=512, n_mels=128))
    assert FeatureSpec.from_toml(spec.to_toml()) == spec and FeatureSpec.from_dict(spec.to_dict()) == spec
    hashes = part_hashes(spec)
    assert len(set(hashes.values())) == 4  # status and length, and each array its own settings hash
    assert hashes["logmel"] == part_hashes(preset("mtat-seed"))["logmel"]  # same settings, same hash


def test_settings_hashes_never_change_for_the_same_settings():
    """A store's commit records match these hashes: if they changed, every stored array would read as pending."""
    assert part_hashes(preset("mtat-seed")) == {
        "clips": "6bb7df5f3d57022f", "logmel": "525a256b3b1c501c", "mfcc": "61ec198246c78909",
        "waveform": "87f66a6b035cd624"}
    assert preset("mtat-seed").hash() == "2cda6ed08227c8f9"


def test_replace_sets_a_setting_in_every_array_that_has_it_and_refuses_one_none_has():
    spec = preset("mtat-seed").replace(duration=10.0, n_mels=96, crop_samples=4096)
    assert spec.decoding.duration == 10.0
    assert [spec.arrays[n].settings.n_mels for n in ("logmel", "mfcc")] == [96, 96]
    assert spec.arrays["waveform"].settings == WaveformSettings(crop_samples=4096)
    with pytest.raises(UserError, match="no array of this spec .* has the setting 'segment_seconds'"):
        spec.replace(segment_seconds=1.0)
    added = spec.select(["logmel", "handcrafted"], segment_seconds=1.0)
    assert added.names == ("logmel", "handcrafted") and added.feature("handcrafted").clip_shape() == (10, 57)


@pytest.mark.parametrize("name, says", [
    ("status", "taken by the store's own nodes"), ("clip", "taken by the store's own nodes"),
    ("labels", "taken by the store's own nodes"), ("commits", "taken by the store's own nodes"),
    ("frame", "is a dimension name"), ("mel", "is a dimension name"), ("logmel_mean", "ends like the store's"),
    ("Log-Mel", "use lower-case letters"), ("", "use lower-case letters"),
])
def test_array_names_that_would_collide_with_the_store_are_refused(name, says):
    with pytest.raises(UserError, match=says):
        FeatureSpec(Decoding(), {name: ArraySpec("logmel")})


@pytest.mark.parametrize("document, says", [
    ('[arrays.x]\nkind = "logmel"\nn_mels = 1e9', "arrays.x: n_mels: input should be a valid integer"),
    ('[arrays.x]\nkind = "logmel"\nn_mels = 5000', "arrays.x: n_mels: input should be less than or equal to 1024"),
    ('[decoding]\nsample_rate = "fast"\n[arrays.x]\nkind = "logmel"', "decoding.sample_rate: input should be a valid "
                                                                       "integer"),
    ('[arrays.x]\nkind = "mfcc"\nn_mfcc = 90', "array x: n_mfcc 90 exceeds n_mels 80"),
    ('[arrays.x]\nkind = "waveform"\ncrop_samples = 400000', "array x: crop_samples 400000 is longer than the clip"),
    ('[arrays.x]\nkind = "chroma"', "arrays.x.kind: unknown feature kind 'chroma'"),
    ('[arrays.x]\nn_mels = 40', "arrays.x.kind: a feature kind is required"),
    ('[arrays.x]\nkind = "logmel"\nbands = 40', "arrays.x: bands: unknown field"),
    ('[arrays]', "a spec needs at least one array"),
    ('codec = "gzip"\n[arrays.x]\nkind = "logmel"', "unknown codec 'gzip'"),
    ('[decoding]\nduration = 86400.0\nsample_rate = 384000\n[arrays.x]\nkind = "logmel"', "more than 268,435,456"),
    ('[arrays.x]\nkind = "logmel"\nhop = 1\n[decoding]\nduration = 3600.0', "choose smaller settings"),
    ('arrays = 3', "arrays: input should be an object"),
    ('[arrays.x', "not TOML"),
])
def test_a_spec_file_is_checked_field_by_field_in_one_line(document, says, tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(document)
    with pytest.raises(UserError) as refused:
        FeatureSpec.load(path)
    assert says in str(refused.value) and str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_the_flat_spec_of_format_3_reads_as_named_arrays():
    flat = {"features": ["logmel", "waveform"], "sample_rate": 22050, "duration": 3.0, "offset": 0.0,
            "max_channels": 16, "max_input_rate": 384000, "n_fft": 1024, "hop": 256, "n_mels": 64, "f_min": 0.0,
            "f_max": None, "n_mfcc": 20, "crop_samples": 4096, "crops": 2, "segment_seconds": 3.0, "codec": "zstd"}
    spec = FeatureSpec.from_dict(flat)
    assert spec.names == ("logmel", "waveform") and spec.codec == "zstd"
    assert spec.decoding == Decoding(sample_rate=22050, duration=3.0, min_samples=1024)  # too short below n_fft
    assert spec.arrays["logmel"].settings == MelSettings(n_fft=1024, hop=256, n_mels=64)
    assert spec.arrays["waveform"].settings == WaveformSettings(crop_samples=4096, crops=2)


def test_presets_print_as_specs_that_build_the_same_store(capsys, tmp_path):
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out
    for name, p in PRESETS.items():  # every setting listed, and the one-line descriptions true to the spec
        section = listed[listed.index(f"{name}: "):]
        document = p.spec.to_dict()
        assert f"decoding: sample_rate {p.spec.decoding.sample_rate}, duration {p.spec.decoding.duration}" in section
        said = {"logmel": ("hop {hop}", "{n_mels}-band"), "mfcc": ("{n_mfcc} MFCCs",),
                "handcrafted": ("{segment_seconds:g}-s segment",)}
        for array, settings in document["arrays"].items():
            assert f"{array}: " + ", ".join(f"{k} {v}" for k, v in settings.items()) in section
            for words in said.get(settings["kind"], ()):
                assert words.format(**settings) in p.description, (name, array, words)
    for name in PRESETS:
        assert main(["presets", name]) == 0
        (tmp_path / f"{name}.toml").write_text(capsys.readouterr().out)
        assert FeatureSpec.load(tmp_path / f"{name}.toml") == preset(name)
