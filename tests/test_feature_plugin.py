"""A feature kind defined outside the package, installed through the `featurestore.features`
entry point group, goes through build, info, verify and train with the package unmodified:
real `featurestore` processes, Dask workers and loader workers, each finding the plug-in itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from featurestore.features import rediscover
from featurestore.spec import FeatureSpec
from featurestore.store import OK, open_store
from featurestore.testing import FeatureTests
from helpers_plugins import install_plugin
from plugin_chroma import Chroma, ChromaSettings

pytest_plugins = ["helpers_store"]

FEATURESTORE = Path(sys.executable).with_name("featurestore")


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """An installed distribution `featurestore-chroma` (its module and dist-info on PYTHONPATH)."""
    site = install_plugin(tmp_path_factory.mktemp("site"), "plugin_chroma.py", "featurestore_chroma", "chroma", "Chroma")
    sys.path.insert(0, str(site))  # installed in this test process too, to read the store back
    rediscover()
    yield {**os.environ, "PYTHONPATH": str(site)}
    sys.path.remove(str(site))
    rediscover()


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(FEATURESTORE), *args], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result


class TestChromaConformance(FeatureTests):
    """The plug-in passes the conformance suite, with a setting of its own."""

    feature_class = Chroma
    settings = ChromaSettings(n_chroma=24)


SPEC = """
[decoding]
sample_rate = 16000
duration = 1.0
[arrays.logmel]
kind = "logmel"
[arrays.chroma]
kind = "chroma"
n_chroma = 24
"""


def test_a_plugin_feature_builds_is_normalised_verified_and_trained_on(plugin_env, store_corpus, tmp_path):
    out, spec_file = tmp_path / "store.zarr", tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    _run(["build", str(store_corpus.manifest), "--audio-root", str(store_corpus.audio), "--out", str(out),
          "--spec", str(spec_file), "--workers", "2", "--quiet"], plugin_env)

    group = zarr.open_group(str(out), mode="r")
    store = open_store(out)
    frames = store.spec.feature("chroma").clip_shape()[1]
    chroma, status = group["chroma"][:], store.status
    assert chroma.shape == (store_corpus.n_rows, 24, frames) and chroma.dtype == np.float16
    assert group["chroma"].metadata.dimension_names == ("clip", "pitch_class", "frame")
    assert store.spec.arrays["chroma"].to_dict() == {"kind": "chroma", "n_fft": 2048, "hop": 1024, "n_chroma": 24}

    # the stored values are the plug-in's own computation on the decoded clip
    from featurestore.audio import decode

    first = int(np.flatnonzero(status == OK)[0])
    decoded = decode(store_corpus.audio / store.manifest["path"].iloc[first], store.spec.decoding)
    expected = store.spec.feature("chroma").compute(decoded.samples, {}).astype(np.float16)
    np.testing.assert_array_equal(chroma[first], expected)

    # normalised over the train split's ok clips like a built-in feature
    train = np.flatnonzero((status == OK) & (store.manifest["split"] == "train").to_numpy())
    values = chroma[train].astype(np.float64)
    np.testing.assert_allclose(group["chroma_mean"][:], values.mean(axis=(0, 2)), rtol=1e-5)
    np.testing.assert_allclose(group["chroma_std"][:], values.std(axis=(0, 2)), rtol=1e-4)
    assert group["chroma_mean"].metadata.dimension_names == ("pitch_class",)

    info = _run(["info", str(out)], plugin_env).stdout
    row = next(line.split("  ") for line in info.splitlines() if line.startswith("chroma ") and "float16" in line)
    assert [c.strip() for c in row if c.strip()][1:3] == [f"({store_corpus.n_rows}, 24, {frames})", "float16"]
    feature = next(line for line in info.splitlines() if line.startswith("chroma ") and "float16" not in line)
    assert "n_fft 2048, hop 1024, n_chroma 24" in feature and f"{store_corpus.n_rows} of {store_corpus.n_rows}" in feature
    assert _run(["verify", str(out)], plugin_env).stdout.startswith(f"{out}: ok")
    # the store's spec, printed as TOML, builds the same store again
    (tmp_path / "again.toml").write_text(_run(["info", str(out), "--spec"], plugin_env).stdout)
    assert FeatureSpec.load(tmp_path / "again.toml") == store.spec

    run = tmp_path / "run"
    _run(["train", str(out), "--model", "mlp", "--input", "chroma", "--out", str(run), "--epochs", "2",
          "--batch-size", "4", "--num-workers", "2", "--no-augment"], plugin_env)
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["input_shape"] == [1, 24, frames]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_clips"] == int(((status == OK) & (store.manifest["split"] == "test").to_numpy()).sum())
